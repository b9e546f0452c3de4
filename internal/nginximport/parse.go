package nginximport

import (
	"fmt"
	"strings"
)

// Directive is one nginx statement: a name, its arguments, and for a block
// directive (http, server, location...) the directives between its braces.
type Directive struct {
	Name string
	Args []string
	// Block holds the directives inside { }; IsBlock tells "events {}"
	// (a block with nothing in it) from "events;".
	Block   []*Directive
	IsBlock bool
	// File and Line are where the directive's name is written. Line is
	// always 1 or more.
	File string
	Line int
}

// Text is the directive as an operator would recognise it: the name and
// its arguments on one line, shortened when long.
func (d *Directive) Text() string {
	words := append([]string{d.Name}, d.Args...)
	for i, w := range words {
		if w == "" || strings.ContainsAny(w, " \t\r\n;{}\"'\\") {
			words[i] = quote(w)
		}
	}
	s := strings.Join(words, " ")
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}

// ParseError is a file nginx would refuse to read, at a line.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// maxDepth bounds block nesting. nginx has no such bound, but no real
// config comes near it, and it keeps a hostile file from costing more than
// its size.
const maxDepth = 100

// Parse reads one file's text into directives, without following include
// (Load does that). The rules are nginx's (ngx_conf_read_token), so that
// whatever nginx reads as one word reads as one word here:
//
//   - words are separated by whitespace and ended by ';' (a statement) or
//     '{' (a block); '}' alone closes a block;
//   - '#' at the start of a word comments out the rest of the line (inside
//     a word it is an ordinary character: "a#b" is one word);
//   - a word that starts with '"' or '\” runs to the matching quote and
//     may hold whitespace, ';', braces and newlines; right after the
//     closing quote must come whitespace, ';', '{' or ')';
//   - a backslash takes the next character into the word; in the word's
//     value \" \' and \\ become the character, \t \r \n a tab, carriage
//     return and newline, and any other pair stays as written;
//   - "${" keeps '{' inside the word ("${remote_addr}AAA" is one word).
func Parse(file string, data []byte) ([]*Directive, error) {
	lx := &lexer{file: file, data: data, line: 1}
	var root []*Directive
	type open struct {
		d    *Directive
		list *[]*Directive
	}
	stack := []open{{list: &root}}
	var words []token
	for {
		tok, err := lx.next()
		if err != nil {
			return nil, err
		}
		top := stack[len(stack)-1]
		switch tok.kind {
		case tokWord:
			words = append(words, tok)
		case tokSemicolon, tokOpen:
			if len(words) == 0 {
				return nil, lx.errorf(tok.line, "unexpected %q", tok.text)
			}
			d := &Directive{Name: words[0].text, File: file, Line: words[0].line}
			for _, w := range words[1:] {
				d.Args = append(d.Args, w.text)
			}
			words = nil
			*top.list = append(*top.list, d)
			if tok.kind == tokOpen {
				if len(stack) > maxDepth {
					return nil, lx.errorf(tok.line, "blocks nested deeper than %d", maxDepth)
				}
				d.IsBlock = true
				stack = append(stack, open{d: d, list: &d.Block})
			}
		case tokClose:
			if len(words) > 0 {
				return nil, lx.errorf(tok.line, "unexpected \"}\": the directive %q (line %d) has no \";\"", words[0].text, words[0].line)
			}
			if len(stack) == 1 {
				return nil, lx.errorf(tok.line, "unexpected \"}\": no block is open")
			}
			stack = stack[:len(stack)-1]
		case tokEOF:
			if len(words) > 0 {
				return nil, lx.errorf(tok.line, "unexpected end of file, expecting \";\" or \"}\": the directive %q (line %d) has no \";\"", words[0].text, words[0].line)
			}
			if len(stack) > 1 {
				d := top.d
				return nil, lx.errorf(tok.line, "unexpected end of file, expecting \"}\": the block %q opened at line %d is not closed", d.Name, d.Line)
			}
			return root, nil
		}
	}
}

type tokenKind int

const (
	tokWord tokenKind = iota
	tokSemicolon
	tokOpen
	tokClose
	tokEOF
)

type token struct {
	kind tokenKind
	text string // the word's value, escapes resolved; the character for ; { }
	line int
}

type lexer struct {
	file string
	data []byte
	pos  int
	line int
}

func (lx *lexer) errorf(line int, format string, args ...any) error {
	return &ParseError{File: lx.file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// next returns the next token, skipping whitespace and comments.
func (lx *lexer) next() (token, error) {
	for lx.pos < len(lx.data) {
		c := lx.data[lx.pos]
		switch {
		case isSpace(c):
			if c == '\n' {
				lx.line++
			}
			lx.pos++
		case c == '#':
			for lx.pos < len(lx.data) && lx.data[lx.pos] != '\n' {
				lx.pos++
			}
		case c == ';' || c == '{' || c == '}':
			lx.pos++
			kind := tokSemicolon
			if c == '{' {
				kind = tokOpen
			} else if c == '}' {
				kind = tokClose
			}
			return token{kind: kind, text: string(c), line: lx.line}, nil
		case c == '"' || c == '\'':
			return lx.quoted(c)
		default:
			return lx.word(), nil
		}
	}
	return token{kind: tokEOF, line: lx.line}, nil
}

// quoted reads a word in quotes; lx.pos is at the opening quote.
func (lx *lexer) quoted(q byte) (token, error) {
	line := lx.line
	lx.pos++
	start := lx.pos
	for lx.pos < len(lx.data) {
		c := lx.data[lx.pos]
		switch {
		case c == '\\' && lx.pos+1 < len(lx.data):
			if lx.data[lx.pos+1] == '\n' {
				lx.line++
			}
			lx.pos += 2
			continue
		case c == '\n':
			lx.line++
		case c == q:
			raw := lx.data[start:lx.pos]
			lx.pos++
			// nginx's need_space: a quoted word must end where a word can.
			if lx.pos < len(lx.data) {
				switch n := lx.data[lx.pos]; {
				case isSpace(n), n == ';', n == '{', n == ')':
				default:
					return token{}, lx.errorf(lx.line, "unexpected %q after the quoted string", string(n))
				}
			}
			return token{kind: tokWord, text: unescape(raw), line: line}, nil
		}
		lx.pos++
	}
	name := "double"
	if q == '\'' {
		name = "single"
	}
	return token{}, lx.errorf(line, "unterminated quoted string: the %s quote opened here is never closed", name)
}

// word reads an unquoted word; lx.pos is at its first character.
func (lx *lexer) word() token {
	line := lx.line
	start := lx.pos
	for lx.pos < len(lx.data) {
		c := lx.data[lx.pos]
		switch {
		case c == '\\' && lx.pos+1 < len(lx.data):
			if lx.data[lx.pos+1] == '\n' {
				lx.line++
			}
			lx.pos += 2
			continue
		case c == '$' && lx.pos+1 < len(lx.data) && lx.data[lx.pos+1] == '{':
			lx.pos += 2 // "${name}": the brace belongs to the variable
			continue
		case isSpace(c) || c == ';' || c == '{':
			return token{kind: tokWord, text: unescape(lx.data[start:lx.pos]), line: line}
		}
		lx.pos++
	}
	return token{kind: tokWord, text: unescape(lx.data[start:lx.pos]), line: line}
}

// unescape resolves a word's backslash escapes as nginx does when it copies
// the word (ngx_conf_read_token): \" \' \\ are the character, \t \r \n
// control characters, anything else stays as written.
func unescape(raw []byte) string {
	if !strings.Contains(string(raw), `\`) {
		return string(raw)
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' && i+1 < len(raw) {
			switch raw[i+1] {
			case '"', '\'', '\\':
				b.WriteByte(raw[i+1])
				i++
				continue
			case 't':
				b.WriteByte('\t')
				i++
				continue
			case 'r':
				b.WriteByte('\r')
				i++
				continue
			case 'n':
				b.WriteByte('\n')
				i++
				continue
			}
		}
		b.WriteByte(raw[i])
	}
	return b.String()
}
