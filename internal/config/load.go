package config

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a config file, at a line.
type Problem struct {
	Line int    `json:"line"`
	Path string `json:"path,omitempty"`
	Msg  string `json:"message"`
}

func (p Problem) Error() string {
	if p.Path == "" {
		return fmt.Sprintf("line %d: %s", p.Line, p.Msg)
	}
	return fmt.Sprintf("line %d: %s: %s", p.Line, p.Path, p.Msg)
}

// Problems is every problem found in one file, sorted by line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Loaded is a parsed, validated file with what identifies it.
type Loaded struct {
	Config *Config
	Source []byte
	SHA256 string
}

// Load reads and parses the file at path.
func Load(path string) (*Loaded, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, err
	}
	return &Loaded{Config: cfg, Source: data, SHA256: Sum(data)}, nil
}

// Sum is the hex SHA-256 of a file's bytes: what tells an edited file from
// a touched one.
func Sum(data []byte) string {
	h := sha256.Sum256(data)
	return fmt.Sprintf("%x", h[:])
}

// AdminListen reads only admin.listen from a config file, leniently: a
// file that would not pass validation (being edited, say) still names
// where the running gateway's admin API is. Absent: the default.
func AdminListen(data []byte) (string, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(trimBOM(data), &root); err != nil {
		return "", syntaxProblem(err)
	}
	if len(root.Content) == 0 {
		return DefaultAdminListen, nil
	}
	doc := root.Content[0]
	expandEnv(doc)
	var part struct {
		Admin struct {
			Listen string `yaml:"listen"`
		} `yaml:"admin"`
	}
	_ = doc.Decode(&part) // other keys' types do not matter here
	if part.Admin.Listen == "" {
		return DefaultAdminListen, nil
	}
	return part.Admin.Listen, nil
}

// Parse decodes, expands, applies defaults and validates. On failure the
// error is Problems holding everything found, each with its line.
func Parse(data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(trimBOM(data), &root); err != nil {
		return nil, Problems{syntaxProblem(err)}
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, Problems{{Line: max(root.Line, 1), Msg: "the file must be a YAML mapping with at least pools and routes"}}
	}
	doc := root.Content[0]
	expandEnv(doc)

	var problems Problems
	problems = append(problems, unknownKeys(doc, reflect.TypeOf(Config{}), "")...)

	cfg := &Config{}
	if err := doc.Decode(cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, Problems{syntaxProblem(err)}
		}
		for _, msg := range te.Errors {
			problems = append(problems, typeProblem(msg))
		}
	}
	applyDefaults(cfg)
	problems = append(problems, validate(cfg, doc)...)
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
		return nil, problems
	}
	return cfg, nil
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func syntaxProblem(err error) Problem {
	return typeProblem(err.Error())
}

// typeProblem turns yaml.v3's "line N: msg" into a Problem, rewording the
// messages that name Go types, which mean nothing to an operator.
func typeProblem(msg string) Problem {
	p := Problem{Line: 1, Msg: msg}
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Msg = m[2]
	}
	p.Msg = strings.NewReplacer("!!str", "text", "!!int", "number", "!!map", "mapping", "!!seq", "list",
		"!!bool", "boolean", "!!float", "number").Replace(p.Msg)
	if i := strings.Index(p.Msg, " into "); i > 0 && strings.HasPrefix(p.Msg, "cannot unmarshal") {
		p.Msg = "wrong type: " + strings.TrimPrefix(p.Msg[:i], "cannot unmarshal ") + " where " + goTypeWord(p.Msg[i+6:]) + " is expected"
	}
	return p
}

func goTypeWord(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.HasPrefix(t, "config."), strings.HasPrefix(t, "*config."):
		return "a mapping"
	case strings.HasPrefix(t, "int"):
		return "a whole number"
	case t == "bool":
		return "true or false"
	}
	return "text"
}

// unknownKeys walks the mapping nodes alongside the Go types they decode
// into and reports every key no field claims. yaml.v3's KnownFields does
// this too, but only when decoding from bytes; the env expansion has to
// happen on the node tree, so the check is done here.
func unknownKeys(n *yaml.Node, t reflect.Type, path string) Problems {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out Problems
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := map[string]reflect.Type{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			if tag != "" && tag != "-" {
				fields[tag] = t.Field(i).Type
				names = append(names, tag)
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == "!!merge" {
				// "<<: *base" merges another mapping into this one, as
				// yaml.v3 decodes it (and KnownFields allows); an inline
				// mapping is checked here, an alias where it is written.
				out = append(out, unknownKeys(v, t, path)...)
				continue
			}
			ft, ok := fields[k.Value]
			if !ok {
				out = append(out, Problem{Line: k.Line, Path: path, Msg: fmt.Sprintf("unknown key %q (known here: %s)", k.Value, strings.Join(names, ", "))})
				continue
			}
			out = append(out, unknownKeys(v, ft, join(path, k.Value))...)
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			out = append(out, unknownKeys(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))...)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			out = append(out, unknownKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var envRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

// expandEnv replaces ${NAME} and ${NAME:-default} in every scalar value.
// It works on the node tree, not the text, so a value holding YAML
// punctuation ("a: b #c") cannot change the file's structure.
func expandEnv(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode {
		if strings.Contains(n.Value, "${") {
			n.Value = envRE.ReplaceAllStringFunc(n.Value, func(m string) string {
				sub := envRE.FindStringSubmatch(m)
				if v, ok := os.LookupEnv(sub[1]); ok && v != "" {
					return v
				}
				return sub[2]
			})
			// A plain scalar's type is resolved again from what it now
			// holds, so "max_conns: ${N}" decodes as a number. A variable
			// holding "null" or "~" stays that text: a token must never
			// turn into "no token".
			if n.Style == 0 {
				n.Tag = ""
				if v := n.Value; v == "~" || strings.EqualFold(v, "null") {
					n.Tag = "!!str"
				}
			}
		}
		return
	}
	for _, c := range n.Content {
		expandEnv(c)
	}
}

// nodeAt follows a path of keys and indexes from a mapping node and
// returns the line of the deepest node it reaches, so a problem found
// after decoding can still name its line.
func nodeAt(n *yaml.Node, path ...any) int {
	line := n.Line
	for _, step := range path {
		var next *yaml.Node
		switch s := step.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == s {
						next = n.Content[i+1]
						line = n.Content[i].Line
						break
					}
				}
			}
		case int:
			switch {
			case n.Kind == yaml.SequenceNode && s < len(n.Content):
				next = n.Content[s]
				line = next.Line
			case n.Kind == yaml.MappingNode && s == 0:
				next = n // a list of one written as its only entry (rate_limit)
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

// trimBOM tolerates files saved by editors that add a byte-order mark.
func trimBOM(b []byte) []byte { return bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) }
