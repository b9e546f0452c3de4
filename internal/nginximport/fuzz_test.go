package nginximport

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// maxFuzzInput bounds what the fuzz targets read: nginx configs are small,
// and the parser is linear in its input, so a larger one finds nothing new.
const maxFuzzInput = 64 << 10

func fuzzSeeds(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/*.conf")
	inputs = append(inputs, "../../deploy/nginx-compat/nginx.conf")
	for _, in := range inputs {
		if data, err := os.ReadFile(in); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		"", ";", "{", "}", "a", "a;", "a {", "a }", `"`, `'`, `a "b`, `a "b"c;`, "#", "a #b\n;",
		`a "\\";`, `a \`, `a "\`, "a ${b", "a ${", "$", "a b}c;", `if ($a = "x") { }`,
		"http { server { location / { proxy_pass http://$v; } } }",
		"http { split_clients \"$x\" $v { 50% a; * b; } server { location / { proxy_pass http://$v; } } }",
		"http { upstream u { server a backup; } server { listen 443 ssl; location / { proxy_pass http://u; mirror /m; } location = /m { internal; proxy_pass http://u; } } }",
		"http { limit_req_zone $x zone=z:1k rate=1r/m; server { location / { limit_req zone=z burst=999999; proxy_pass http://a:1/; } } }",
		"http { server { location \"\" { proxy_pass http://a; } location /${x} { proxy_pass http://b; } } }",
		"a \"\t\n\r\";",
		"http { server { listen 443 ssl; ssl_certificate \"\xff\"; ssl_certificate_key k; server_name \"\x01\"; location /\xff { proxy_pass http://\x00; } location /a { proxy_pass http://$v; } } split_clients \"$remote_addr\x02\" $v { * a; } }",
	} {
		f.Add([]byte(s))
	}
}

// withDeadline fails the test when fn has not returned in time: the
// parser and translator must never loop.
func withDeadline(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return within 10s", what)
	}
}

// FuzzParse: whatever the bytes, Parse returns (no panic, no endless
// loop) either a *ParseError at a real line, or directives that all have a
// line; and writing those back with Format and parsing them again gives
// the same tree.
func FuzzParse(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			t.Skip()
		}
		var tree []*Directive
		var err error
		withDeadline(t, "Parse", func() { tree, err = Parse("fuzz.conf", data) })
		lines := strings.Count(string(data), "\n") + 1
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ParseError: %v", err, err)
			}
			if pe.Line < 1 || pe.Line > lines || pe.File != "fuzz.conf" {
				t.Fatalf("error at %s:%d, outside the file's %d lines: %v", pe.File, pe.Line, lines, err)
			}
			return
		}
		var check func([]*Directive)
		check = func(list []*Directive) {
			for _, x := range list {
				if x.Line < 1 || x.Line > lines {
					t.Fatalf("directive %q at line %d, outside the file's %d lines", x.Name, x.Line, lines)
				}
				if !x.IsBlock && len(x.Block) > 0 {
					t.Fatalf("directive %q has a block but is not one", x.Name)
				}
				check(x.Block)
			}
		}
		check(tree)
		text := Format(tree)
		again, err := Parse("formatted.conf", []byte(text))
		if err != nil {
			t.Fatalf("the formatted tree does not parse: %v\n%s", err, text)
		}
		if !reflect.DeepEqual(shape(tree), shape(again)) {
			t.Fatalf("formatting changed the tree:\n%s\n---\n%s", text, Format(again))
		}
	})
}

// FuzzTranslate: whatever the tree, Translate does not panic or loop, and
// a config it writes passes the gateway's validation (certificate files,
// which may not exist here, aside).
func FuzzTranslate(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			t.Skip()
		}
		tree, err := Parse("fuzz.conf", data)
		if err != nil {
			return
		}
		var res *Result
		withDeadline(t, "Translate", func() { res, err = Translate("fuzz.conf", tree) })
		if err != nil {
			if !errors.Is(err, ErrNothingToTranslate) {
				t.Fatalf("error %v is not ErrNothingToTranslate", err)
			}
			return
		}
		if !strings.HasPrefix(string(res.YAML), "# Translated from fuzz.conf") {
			t.Fatalf("no header comment:\n%s", res.YAML)
		}
		if _, err := config.Parse(res.YAML); err != nil {
			var ps config.Problems
			if !errors.As(err, &ps) {
				t.Fatalf("config.Parse: %v\n%s", err, res.YAML)
			}
			for _, p := range ps {
				if !strings.HasPrefix(p.Path, "server.tls.") {
					t.Fatalf("the translated config does not validate: %v\n%s\nfrom\n%s", err, res.YAML, data)
				}
			}
		}
		for _, n := range res.Notes {
			if n.Line < 1 || n.File == "" || n.Why == "" {
				t.Fatalf("note without a place or a reason: %+v", n)
			}
		}
	})
}
