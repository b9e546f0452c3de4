package nginximport

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// d builds an expected directive (file and line are checked separately).
func d(name string, args ...string) *Directive { return &Directive{Name: name, Args: args} }

func block(name string, args []string, children ...*Directive) *Directive {
	return &Directive{Name: name, Args: args, IsBlock: true, Block: children}
}

// shape drops files and lines, for comparing trees.
func shape(list []*Directive) []*Directive {
	var out []*Directive
	for _, x := range list {
		c := &Directive{Name: x.Name, Args: x.Args, IsBlock: x.IsBlock}
		if len(c.Args) == 0 {
			c.Args = nil
		}
		c.Block = shape(x.Block)
		out = append(out, c)
	}
	return out
}

func TestParseWords(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []*Directive
	}{
		{"statement", "listen 80;", []*Directive{d("listen", "80")}},
		{"no space before the semicolon", "a b;c;", []*Directive{d("a", "b"), d("c")}},
		{"blocks", "http { server { listen 80; } }",
			[]*Directive{block("http", nil, block("server", nil, d("listen", "80")))}},
		{"empty block", "events {}", []*Directive{block("events", nil)}},
		{"comment", "# all of it\na 1; # the rest\n#b;\n", []*Directive{d("a", "1")}},
		{"hash inside a word", "a b#c;", []*Directive{d("a", "b#c")}},
		{"double quotes keep separators", `add_header X "a ; b { c } # d";`, []*Directive{d("add_header", "X", "a ; b { c } # d")}},
		{"single quotes", `a 'it\'s' "x'y";`, []*Directive{d("a", "it's", "x'y")}},
		{"escapes", `a "t\tn\nr\rq\"s\'b\\" "\d";`, []*Directive{d("a", "t\tn\nr\rq\"s'b\\", `\d`)}},
		{"empty quoted", `proxy_set_header Connection "";`, []*Directive{d("proxy_set_header", "Connection", "")}},
		{"variable braces stay in the word", `split_clients "${remote_addr}AAA" $v {}`, []*Directive{block("split_clients", []string{"${remote_addr}AAA", "$v"})}},
		{"unquoted variable braces", `set $a ${b}c;`, []*Directive{d("set", "$a", "${b}c")}},
		{"a brace inside a word", `a b}c;`, []*Directive{d("a", "b}c")}},
		{"quote inside a word", `a b"c;`, []*Directive{d("a", `b"c`)}},
		{"paren after a quote", `if ($a = "x") { return 403; }`, []*Directive{block("if", []string{"($a", "=", "x", ")"}, d("return", "403"))}},
		{"escaped space", `a b\ c;`, []*Directive{d("a", `b\ c`)}},
		{"words across lines", "listen\n  8080\n  ;", []*Directive{d("listen", "8080")}},
		{"nothing", "  \n# only a comment", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse("t.conf", []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(shape(got), shape(tc.want)) {
				t.Errorf("got\n%s\nwant\n%s", Format(got), Format(tc.want))
			}
		})
	}
}

func TestParseLines(t *testing.T) {
	src := "events {}\n\nhttp {\n  upstream u {\n    server a:1;\n  }\n  add_header X \"multi\nline\";\n  listen\n    80;\n}\n"
	tree, err := Parse("t.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var walk func([]*Directive)
	walk = func(list []*Directive) {
		for _, x := range list {
			lines = append(lines, x.Name+":"+itoa(x.Line))
			walk(x.Block)
		}
	}
	walk(tree)
	want := "events:1 http:3 upstream:4 server:5 add_header:7 listen:9"
	if got := strings.Join(lines, " "); got != want {
		t.Errorf("lines %s, want %s", got, want)
	}
}

var itoa = strconv.Itoa

// Errors name the file and the line where nginx would stop, and say what
// is missing.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		msg       string
	}{
		{"unclosed block", "http {\n  server {\n    listen 80;\n  }\n", 5, `the block "http" opened at line 1 is not closed`},
		{"extra closing brace", "events {}\n}\n", 2, `unexpected "}": no block is open`},
		{"missing semicolon before a brace", "http {\n  location / {\n    proxy_pass http://a\n  }\n}\n", 4, `the directive "proxy_pass" (line 3) has no ";"`},
		{"missing semicolon at the end", "worker_processes 1;\npid /run/nginx.pid", 2, `the directive "pid" (line 2) has no ";"`},
		{"unterminated double quote", "a 1;\nb \"open;\nc 2;\n", 2, "unterminated quoted string: the double quote opened here is never closed"},
		{"unterminated single quote", "a 'x;", 1, "single quote"},
		{"word right after a quote", `a "b"c;`, 1, `unexpected "c" after the quoted string`},
		{"semicolon alone", "a;\n;\n", 2, `unexpected ";"`},
		{"block without a name", "{ a; }", 1, `unexpected "{"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.conf", []byte(tc.src))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T), want a *ParseError", err, err)
			}
			if pe.File != "x.conf" || pe.Line != tc.line || !strings.Contains(pe.Msg, tc.msg) {
				t.Errorf("got %q, want x.conf:%d: ...%s...", err, tc.line, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "x.conf:"+itoa(tc.line)+": ") {
				t.Errorf("error %q does not start with FILE:LINE:", err)
			}
		})
	}
}

func TestParseDepthBound(t *testing.T) {
	src := strings.Repeat("a {", maxDepth+5) + strings.Repeat("}", maxDepth+5)
	if _, err := Parse("deep.conf", []byte(src)); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("got %v, want the nesting bound", err)
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Includes are spliced in where they stand, relative to the including
// file's directory, globs in name order and without dot files (as glob(3)
// gives them to nginx); each directive keeps its own file and line.
func TestLoadIncludes(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"nginx.conf":         "http {\n    include sites/*.conf;\n    include extra/more.conf;\n    include none-*.conf;\n}\n",
		"sites/b.conf":       "server { listen 2; }\n",
		"sites/a.conf":       "server { listen 1; }\n",
		"extra/more.conf":    "\n\ninclude deeper.conf;\n",
		"extra/deeper.conf":  "gzip on;\n",
		"sites/ignored.txt":  "not included;\n",
		"elsewhere/x.conf":   "nope;\n",
		"extra/unused.conf":  "nope;\n",
		"sites/sub/c.conf":   "nope;\n",
		"sites/.hidden.conf": "hidden_files_are_left_out;\n",
	})
	tree, err := Load(filepath.Join(dir, "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	http := tree[0]
	var got []string
	for _, x := range http.Block {
		got = append(got, x.Name+" "+strings.Join(x.Args, " ")+" @"+filepath.ToSlash(strings.TrimPrefix(x.File, dir))+":"+itoa(x.Line))
	}
	want := []string{
		"server  @/sites/a.conf:1",
		"server  @/sites/b.conf:1",
		"gzip on @/extra/deeper.conf:1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadIncludeErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"a cycle", map[string]string{
			"nginx.conf": "http {\n  include a.conf;\n}\n",
			"a.conf":     "include b.conf;\n",
			"b.conf":     "\ninclude a.conf;\n",
		}, "b.conf:2: include cycle: "},
		{"a file that includes itself", map[string]string{
			"nginx.conf": "include nginx.conf;\n",
		}, "nginx.conf:1: include cycle: "},
		{"a cycle through a glob", map[string]string{
			"nginx.conf":    "include conf.d/*.conf;\n",
			"conf.d/x.conf": "include ../nginx.conf;\n",
		}, "x.conf:1: include cycle: "},
		{"an error in an included file", map[string]string{
			"nginx.conf": "include bad.conf;\n",
			"bad.conf":   "a {\n",
		}, "bad.conf:2: unexpected end of file"},
		{"include with two arguments", map[string]string{
			"nginx.conf": "include a b;\n",
		}, "nginx.conf:1: include takes exactly one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			_, err := Load(filepath.Join(dir, "nginx.conf"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ...%s...", err, tc.want)
			}
			if strings.Contains(tc.want, "cycle") && !strings.Contains(err.Error(), " includes ") {
				t.Errorf("the cycle error %q does not name the chain", err)
			}
		})
	}
}

// A missing named include stays in the tree, for the translation to list.
func TestLoadMissingIncludeIsKept(t *testing.T) {
	dir := writeFiles(t, map[string]string{"nginx.conf": "include /nonexistent/mime.types;\nevents {}\n"})
	tree, err := Load(filepath.Join(dir, "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tree) != 2 || tree[0].Name != "include" {
		t.Errorf("tree %s", Format(tree))
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.conf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want a not-exist error", err)
	}
}

// Format writes what Parse reads back unchanged.
func TestFormatRoundTrip(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/*.conf")
	inputs = append(inputs, "../../deploy/nginx-compat/nginx.conf")
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			continue
		}
		tree, err := Parse(in, data)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		again, err := Parse("formatted", []byte(Format(tree)))
		if err != nil {
			t.Fatalf("%s: formatted text does not parse: %v\n%s", in, err, Format(tree))
		}
		if !reflect.DeepEqual(shape(tree), shape(again)) {
			t.Errorf("%s: the formatted tree differs:\n%s\n---\n%s", in, Format(tree), Format(again))
		}
	}
}
