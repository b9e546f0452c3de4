package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sluice-gw/sluice/internal/config"
)

// An API keys file lists keys by name and SHA-256 (SPEC section 2,
// keys_file), never the keys themselves: a copy of the file, a backup or a
// ConfigMap dump lets no one call the gateway. A presented key is hashed
// and the digest looked up, so checking one costs one SHA-256 whatever the
// number of keys.
//
//	keys:
//	  - name: team-a
//	    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	    routes: [iris]                      # optional
//	    tags: [public-api]                  # optional
//	    rate_limit: {rate: 10/s, burst: 5}  # optional

// Keys file limits.
const (
	// keysMaxPresented bounds a presented key: longer values are refused
	// before hashing, so a client cannot make the gateway hash megabytes
	// of header per request. NewKey's keys are 46 bytes.
	keysMaxPresented = 512
	keysMaxRate      = 1e6 // per second, as for route rate limits
	keysMaxBurst     = 1000000
	keysPrefix       = "sk_" // marks NewKey's keys, so a leaked one is recognisable in a scan
)

var keysNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$`)

// keysEmptyDigest is the SHA-256 of the empty string. Lookup refuses an
// empty key, so a file listing this digest has made a mistake.
var keysEmptyDigest = sha256.Sum256(nil)

// Key is one entry of a keys file. Never holds the key itself. A Key is
// shared by every request that presents it: read it, never change it.
type Key struct {
	Name string
	// Routes and Tags say what the key may call (see Allows). Zero: every
	// route that uses the keys file.
	Routes []string
	Tags   []string
	// PerSecond and Burst are the key's own rate limit; PerSecond 0: none.
	PerSecond float64
	Burst     int

	digest   [sha256.Size]byte
	identity *Identity // built once, so that authenticating allocates nothing
}

// Identity is who the key says the caller is. It is shared by every
// request that presents the key: read it, never change it.
func (k *Key) Identity() *Identity { return k.identity }

// Allows reports whether the key may call the route with this name and
// tags: true when the key lists neither routes nor tags, else when routes
// holds the name or tags shares a tag.
func (k *Key) Allows(route string, tags []string) bool {
	if len(k.Routes) == 0 && len(k.Tags) == 0 {
		return true
	}
	if slices.Contains(k.Routes, route) {
		return true
	}
	for _, t := range tags {
		if slices.Contains(k.Tags, t) {
			return true
		}
	}
	return false
}

// KeySet is a parsed keys file. Immutable; safe for concurrent use. A nil
// *KeySet holds no keys.
type KeySet struct {
	byDigest map[[sha256.Size]byte]*Key
	byName   []*Key // sorted by name
}

// Lookup finds the key whose SHA-256 digest matches presented (the raw
// header value); nil when none. It allocates nothing.
//
// The map finds the digest with an ordinary comparison, which may return
// early; that is harmless, since what it compares is a SHA-256 the caller
// cannot steer byte by byte. The constant-time comparison after it is
// defence in depth: the answer never depends on a comparison that exits
// early on the first differing byte.
func (s *KeySet) Lookup(presented []byte) *Key {
	if s == nil || len(presented) == 0 || len(presented) > keysMaxPresented {
		return nil
	}
	digest := sha256.Sum256(presented)
	k := s.byDigest[digest]
	if k == nil || subtle.ConstantTimeCompare(digest[:], k.digest[:]) != 1 {
		return nil
	}
	return k
}

// Keys lists the keys sorted by name (for the admin API, which shows
// names, routes, tags and limits, never digests). The slice is the
// caller's; the keys are shared.
func (s *KeySet) Keys() []*Key {
	if s == nil {
		return nil
	}
	return slices.Clone(s.byName)
}

// Len is the number of keys.
func (s *KeySet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.byName)
}

// NewKey returns a new random key, 32 bytes from crypto/rand written as
// "sk_" and unpadded base64url, and the hex SHA-256 to put in the file.
func NewKey() (key, sha256Hex string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("new key: %w", err)
	}
	key = keysPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return key, Digest(key), nil
}

// Digest is the hex SHA-256 of a key, as the file stores it.
func Digest(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:])
}

// keysFile and its parts are the file as written.
type keysFile struct {
	Keys []keysEntry `yaml:"keys"`
}

type keysEntry struct {
	Name      string         `yaml:"name"`
	SHA256    string         `yaml:"sha256"`
	Routes    []string       `yaml:"routes"`
	Tags      []string       `yaml:"tags"`
	RateLimit *keysRateLimit `yaml:"rate_limit"`
}

type keysRateLimit struct {
	Rate  config.Rate `yaml:"rate"`
	Burst keysBurst   `yaml:"burst"`
}

// keysBurst is a whole number written as one. yaml.v3 would truncate
// "burst: 2.5" into an int without a word.
type keysBurst int

func (b *keysBurst) UnmarshalYAML(n *yaml.Node) error {
	v, err := strconv.Atoi(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: burst %q is not a whole number", n.Line, n.Value)}}
	}
	*b = keysBurst(v)
	return nil
}

var (
	keysTopFields       = []string{"keys"}
	keysEntryFields     = []string{"name", "sha256", "routes", "tags", "rate_limit"}
	keysRateLimitFields = []string{"rate", "burst"}
)

// ParseKeys parses a keys file. On failure the error is config.Problems
// holding every problem found, each with its line, sorted by line. An
// empty file or "keys: []" is valid: a set without keys, which refuses
// every request.
func ParseKeys(data []byte) (*KeySet, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), &root); err != nil {
		return nil, config.Problems{keysYAMLProblem(err.Error())}
	}
	if len(root.Content) == 0 {
		return &KeySet{byDigest: map[[sha256.Size]byte]*Key{}}, nil
	}
	doc := root.Content[0]
	if doc.Kind == yaml.ScalarNode && doc.ShortTag() == "!!null" {
		return &KeySet{byDigest: map[[sha256.Size]byte]*Key{}}, nil // only comments
	}
	if doc.Kind != yaml.MappingNode {
		return nil, config.Problems{{Line: doc.Line, Msg: "a keys file is a mapping with one key, keys: the list of keys"}}
	}

	problems := keysUnknown(doc, "", keysTopFields)
	var file keysFile
	if err := doc.Decode(&file); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, config.Problems{keysYAMLProblem(err.Error())}
		}
		for _, msg := range te.Errors {
			problems = append(problems, keysYAMLProblem(msg))
		}
	}
	var entries []*yaml.Node
	if list := keysField(doc, "keys"); list != nil && list.Kind == yaml.SequenceNode {
		entries = list.Content
	}
	for i, n := range entries {
		n = keysDeref(n)
		path := fmt.Sprintf("keys[%d]", i)
		problems = append(problems, keysUnknown(n, path, keysEntryFields)...)
		if rl := keysField(n, "rate_limit"); rl != nil {
			problems = append(problems, keysUnknown(rl, path+".rate_limit", keysRateLimitFields)...)
		}
	}

	set := &KeySet{byDigest: make(map[[sha256.Size]byte]*Key, len(file.Keys))}
	firstName := map[string]int{} // name -> line
	firstDigest := map[[sha256.Size]byte]*Key{}
	for i, e := range file.Keys {
		if i >= len(entries) {
			break // cannot happen: Decode fills one entry per node
		}
		n := keysDeref(entries[i])
		path := fmt.Sprintf("keys[%d]", i)
		add := func(field, format string, args ...any) {
			problems = append(problems, config.Problem{Line: keysLine(n, field), Path: path + "." + field, Msg: fmt.Sprintf(format, args...)})
		}
		k := &Key{Name: e.Name, Routes: e.Routes, Tags: e.Tags}
		ok := true
		switch {
		case e.Name == "":
			add("name", "is required")
			ok = false
		case !keysNameRE.MatchString(e.Name):
			add("name", "%q must start with a letter or digit, then letters, digits, '_', '.', '@' or '-' (at most 128)", e.Name)
			ok = false
		case firstName[e.Name] != 0:
			add("name", "%q is already the name of the key at line %d", e.Name, firstName[e.Name])
			ok = false
		default:
			firstName[e.Name] = keysLine(n, "name")
		}
		// The value is never echoed: it may be the key itself, pasted
		// by mistake, and problems are logged and shown by the admin API.
		if e.SHA256 == "" {
			add("sha256", "is required: the 64 hex digits of the key's SHA-256 (gateway keys add makes a key and prints its line)")
			ok = false
		} else if d, err := hex.DecodeString(e.SHA256); err != nil || len(d) != sha256.Size {
			add("sha256", "sha256 must be the 64 hex digits of the key's SHA-256, never the key itself (got %d characters)", len(e.SHA256))
			ok = false
		} else {
			copy(k.digest[:], d)
			if k.digest == keysEmptyDigest {
				add("sha256", "is the SHA-256 of an empty key, which is never accepted")
				ok = false
			} else if other := firstDigest[k.digest]; other != nil {
				add("sha256", "is the same key as %q: each key needs its own secret", other.Name)
				ok = false
			} else {
				firstDigest[k.digest] = k
			}
		}
		for _, list := range []struct {
			field string
			names []string
		}{{"routes", e.Routes}, {"tags", e.Tags}} {
			// Written but empty reads as "nothing", yet a key with
			// neither list may call every route: refuse it rather than
			// open the key up.
			if f := keysField(n, list.field); f != nil && len(list.names) == 0 &&
				(f.Kind == yaml.SequenceNode || f.ShortTag() == "!!null") {
				add(list.field, "is empty, which would let the key call every route (as leaving %s out does); to revoke the key, remove its entry", list.field)
				ok = false
			}
			for j, v := range list.names {
				if strings.TrimSpace(v) == "" {
					add(list.field, "entry %d is empty", j)
					ok = false
				}
			}
		}
		if rl := e.RateLimit; rl != nil {
			if !keysRateLimitInto(k, rl, func(field, format string, args ...any) { add("rate_limit."+field, format, args...) }) {
				ok = false
			}
		}
		if ok {
			k.identity = &Identity{Name: k.Name, Kind: KindAPIKey}
			set.byDigest[k.digest] = k
			set.byName = append(set.byName, k)
		}
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
		return nil, problems
	}
	sort.Slice(set.byName, func(i, j int) bool { return set.byName[i].Name < set.byName[j].Name })
	return set, nil
}

// keysRateLimitInto checks a key's rate_limit and sets its limit, with
// the defaults of a route's rate_limit: burst is the rate per second
// rounded up, at least 1.
func keysRateLimitInto(k *Key, rl *keysRateLimit, add func(field, format string, args ...any)) bool {
	perSecond := rl.Rate.PerSecond()
	switch {
	case perSecond == 0:
		add("rate", "is required: requests per s, m or h, such as 10/s")
		return false
	case perSecond > keysMaxRate:
		add("rate", "must be at most 1000000/s, got %v", rl.Rate)
		return false
	}
	burst := int(rl.Burst)
	if burst == 0 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	if burst < 1 || burst > keysMaxBurst {
		add("burst", "must be 1 to %d, got %d", keysMaxBurst, burst)
		return false
	}
	k.PerSecond, k.Burst = perSecond, burst
	return true
}

// keysUnknown reports every key of mapping n that is not one of known.
// An inline merge ("<<: {...}") is checked as part of n; a merged alias
// is checked where its anchor is written.
func keysUnknown(n *yaml.Node, path string, known []string) config.Problems {
	if n.Kind != yaml.MappingNode {
		return nil // a wrong type is reported by Decode
	}
	var out config.Problems
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.ShortTag() == "!!merge":
			out = append(out, keysUnknown(v, path, known)...)
		case !slices.Contains(known, k.Value):
			out = append(out, config.Problem{Line: k.Line, Path: path, Msg: fmt.Sprintf("unknown key %q (known here: %s)", k.Value, strings.Join(known, ", "))})
		}
	}
	return out
}

// keysField is the value of key in mapping n; nil when absent.
func keysField(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return keysDeref(n.Content[i+1])
		}
	}
	return nil
}

// keysLine is the line of a field of entry n ("rate_limit.burst"), or of
// the entry when the field is not written in it.
func keysLine(n *yaml.Node, field string) int {
	line := n.Line
	for name := range strings.SplitSeq(field, ".") {
		if n.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				line, n, found = n.Content[i].Line, keysDeref(n.Content[i+1]), true
				break
			}
		}
		if !found {
			return line
		}
	}
	return line
}

func keysDeref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

var keysLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// keysYAMLProblem turns yaml.v3's "line N: msg" into a Problem, rewording
// the messages that name Go types, which mean nothing to an operator.
func keysYAMLProblem(msg string) config.Problem {
	p := config.Problem{Line: 1, Msg: strings.TrimPrefix(msg, "yaml: ")}
	if m := keysLineRE.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Msg = m[2]
	}
	if rest, ok := strings.CutPrefix(p.Msg, "cannot unmarshal "); ok {
		if found, into, ok := strings.Cut(rest, " into "); ok {
			p.Msg = "wrong type: " + keysYAMLWord(found) + " where " + keysGoWord(into) + " is expected"
		}
	}
	return p
}

func keysYAMLWord(s string) string {
	return strings.NewReplacer("!!str", "text", "!!int", "number", "!!float", "number", "!!bool", "boolean",
		"!!map", "mapping", "!!seq", "list", "!!null", "nothing").Replace(s)
}

func keysGoWord(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case t == "int":
		return "a whole number"
	case t == "string":
		return "text"
	}
	return "a mapping"
}
