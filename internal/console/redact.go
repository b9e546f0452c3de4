package console

import (
	"slices"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// secretKeys are the config keys whose values are secrets: admin.token,
// redis.password and a JWT auth's secret (the fields /admin/config never
// shows), wherever they appear.
var secretKeys = map[string]bool{"token": true, "password": true, "secret": true}

const redacted = "<redacted>"

// redact replaces the value of every secret key with <redacted> and
// leaves the rest of the source as written, comments included: the diff
// shows that a secret changed only by what else changed with it. The
// values are found by parsing the YAML, so a flow mapping over several
// lines, a '#' inside quotes or a block scalar is no trap; a source that
// does not parse (never an applied config) loses the rest of every line
// naming a secret key.
func redact(source string) string {
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(source), &root); err != nil {
		return redactLines(source)
	}
	var secrets []secret
	secretValues(&root, false, &secrets)
	lineStart := []int{0}
	for i := range len(source) {
		if source[i] == '\n' {
			lineStart = append(lineStart, i+1)
		}
	}
	// Last first, so that earlier offsets stay where the parser saw them.
	slices.Reverse(secrets)
	for _, s := range secrets {
		v := s.value
		if v.Style == 0 && v.Value == "" || v.Line < 1 || v.Line > len(lineStart) {
			continue // nothing written: nothing to hide
		}
		start := lineStart[v.Line-1]
		start += byteOffset(source[start:], v.Column-1)
		end := start + scalarLen(source[start:], s)
		source = source[:start] + redacted + source[end:]
	}
	return source
}

// secret is a secret key and its scalar value; flow says whether they
// stand in a flow collection ({...} or [...]).
type secret struct {
	key, value *yaml.Node
	flow       bool
}

// secretValues appends the secret keys with a scalar value under n, in
// document order.
func secretValues(n *yaml.Node, flow bool, out *[]secret) {
	flow = flow || n.Style&yaml.FlowStyle != 0
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			secretValues(c, flow, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && secretKeys[k.Value] && v.Kind == yaml.ScalarNode {
				*out = append(*out, secret{k, v, flow})
				continue
			}
			secretValues(v, flow, out)
		}
	}
}

// scalarLen is the length of the source of s's value, which rest starts
// with: to its closing quote, or to where a plain or block scalar stops
// (YAML 1.2 sections 7.3 and 8.1), trailing space left out.
func scalarLen(rest string, s secret) int {
	v := s.value
	switch {
	case v.Style&yaml.DoubleQuotedStyle != 0:
		for i := 1; i < len(rest); i++ {
			switch rest[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
		return len(rest)
	case v.Style&yaml.SingleQuotedStyle != 0:
		for i := 1; i < len(rest); i++ {
			if rest[i] == '\'' {
				if i+1 < len(rest) && rest[i+1] == '\'' {
					i++
					continue
				}
				return i + 1
			}
		}
		return len(rest)
	}
	block := v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0
	indent := s.key.Column - 1 // continuation lines are indented further
	end := 0                   // past the last byte of the value seen so far
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		switch {
		case c == '\n':
			if !s.flow && !continues(rest[i+1:], indent) {
				return end
			}
		case c == '#' && !block && (i == 0 || rest[i-1] == ' ' || rest[i-1] == '\t' || rest[i-1] == '\n'):
			return end // a comment
		case s.flow && !block && (c == ',' || c == ']' || c == '}' ||
			c == ':' && (i+1 == len(rest) || strings.IndexByte(" \t\r\n,]}", rest[i+1]) >= 0)):
			return end
		case c != ' ' && c != '\t' && c != '\r':
			end = i + 1
		}
	}
	return end
}

// continues reports whether the line that starts next continues a block
// scalar or a plain one whose key starts at column indent: blank, or
// indented further (and, for a plain one, not a comment).
func continues(next string, indent int) bool {
	line, _, _ := strings.Cut(next, "\n")
	body := strings.TrimLeft(line, " ")
	return strings.TrimSpace(body) == "" || len(line)-len(body) > indent && body[0] != '#'
}

// byteOffset is the byte offset of the col-th character of s (the parser
// counts characters).
func byteOffset(s string, col int) int {
	off := 0
	for range col {
		if off >= len(s) {
			break
		}
		_, size := utf8.DecodeRuneInString(s[off:])
		off += size
	}
	return off
}

// redactLines drops the text after a secret key's colon on every line
// that names one, for a source that does not parse.
func redactLines(source string) string {
	lines := strings.SplitAfter(source, "\n")
	for i, line := range lines {
		for key := range secretKeys {
			if j := strings.Index(line, key+":"); j >= 0 {
				eol := line[len(strings.TrimRight(line, "\r\n")):]
				lines[i] = line[:j+len(key)+1] + " " + redacted + eol
				break
			}
		}
	}
	return strings.Join(lines, "")
}
