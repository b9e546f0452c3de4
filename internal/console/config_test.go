package console

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestConsoleRedactHidesSecretValues(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"admin:\n  token: s3cret\n", "admin:\n  token: <redacted>\n"},
		{"  password: \"p a;ss\" # the old one\n", "  password: <redacted> # the old one\n"},
		{"  secret: ab#cd,e}f\n", "  secret: <redacted>\n"},
		{"admin: {listen: \"127.0.0.1:0\", token: s3cret}\n", "admin: {listen: \"127.0.0.1:0\", token: <redacted>}\n"},
		{"redis: {addr: x, password: 'pw', db: 1}\n", "redis: {addr: x, password: <redacted>, db: 1}\n"},
		{"    - secret: ${JWT_SECRET}\n", "    - secret: <redacted>\n"},
		// A flow mapping over two lines keeps its closing brace.
		{"admin: {listen: a,\n  token: s3cret}\nroutes: []\n", "admin: {listen: a,\n  token: <redacted>}\nroutes: []\n"},
		// Quotes hold a '#', a comma, a brace and an escaped quote.
		{"a: {token: \"x #1, \\\" }\", b: 2}\n", "a: {token: <redacted>, b: 2}\n"},
		{"a:\n  token: 'it''s # here' # note\n", "a:\n  token: <redacted> # note\n"},
		// A block scalar loses its lines, and the key after it stays.
		{"auth:\n  - secret: |\n      line one\n      line two\n    issuer: me\n", "auth:\n  - secret: <redacted>\n    issuer: me\n"},
		// Columns count characters, not bytes.
		{"é: {token: s3cret}\n", "é: {token: <redacted>}\n"},
		// A source that does not parse loses each secret line's value.
		{"admin: {token: s3cret\n  password: pw\n", "admin: {token: <redacted>\n  password: <redacted>\n"},
		// Keys that only contain the words are left alone.
		{"  token_header: X-Token\n  secret_file: /etc/k\n", "  token_header: X-Token\n  secret_file: /etc/k\n"},
	} {
		if got := redact(tc.in); got != tc.want {
			t.Errorf("redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestConsoleConfigDiffIsUnified(t *testing.T) {
	old := "admin: {token: one}\npools:\n  p: {backends: [a]}\nroutes: []\n"
	new := "admin: {token: two}\npools:\n  p: {backends: [a, b]}\nroutes: []\n"
	lines := configDiff([]byte(old), []byte(new), "generation 1", "generation 2")
	var text []string
	kinds := map[string]int{}
	for _, l := range lines {
		text = append(text, l.Text)
		kinds[l.Kind]++
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{"--- generation 1", "+++ generation 2", "-  p: {backends: [a]}", "+  p: {backends: [a, b]}"} {
		if !strings.Contains(all, want) {
			t.Errorf("diff lacks %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "one") || strings.Contains(all, "two") {
		t.Errorf("diff shows a token:\n%s", all)
	}
	if kinds["add"] != 1 || kinds["del"] != 1 || kinds["hunk"] != 1 || kinds["file"] != 2 {
		t.Errorf("line kinds %v, want one add, one del, one hunk, two file lines", kinds)
	}
	if got := configDiff([]byte(old), []byte(strings.Replace(old, "one", "three", 1)), "a", "b"); got != nil {
		t.Errorf("a change of secrets alone shows %v", got)
	}
}

// FuzzRedact: whatever YAML a config holds, the redacted text still
// parses, and every secret key's value in it reads <redacted> (or stays
// empty when nothing was written).
func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		"admin:\n  token: s3cret\n",
		"admin: {listen: a,\n  token: s3cret}\n",
		"a: {token: \"x #1, \\\" }\", b: 2}\n",
		"auth:\n  - secret: |\n      one\n    issuer: me\n",
		"redis: {addr: x, password: 'pw', db: 1}\n",
		"a:\n  password: >-\n    folded\n    text\n  b: 1\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		var before yaml.Node
		if yaml.Unmarshal([]byte(src), &before) != nil {
			return
		}
		var want []secret
		secretValues(&before, false, &want)
		out := redact(src)
		var after yaml.Node
		if err := yaml.Unmarshal([]byte(out), &after); err != nil {
			t.Fatalf("redact(%q) = %q, which does not parse: %v", src, out, err)
		}
		var got []secret
		secretValues(&after, false, &got)
		if len(got) != len(want) {
			t.Fatalf("redact(%q) = %q: %d secret values, want %d", src, out, len(got), len(want))
		}
		for i, s := range got {
			w := redacted
			if v := want[i].value; v.Style == 0 && v.Value == "" {
				w = "" // nothing written, nothing to hide
			}
			if s.value.Value != w {
				t.Fatalf("redact(%q) = %q: %s is %q, want %q", src, out, s.key.Value, s.value.Value, w)
			}
		}
	})
}
