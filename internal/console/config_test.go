package console

import (
	"strings"
	"testing"
)

func TestConsoleRedactHidesSecretValues(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"admin:\n  token: s3cret\n", "admin:\n  token: <redacted>\n"},
		{"  password: \"p a;ss\" # the old one\n", "  password: <redacted> # the old one\n"},
		{"  secret: ab#cd,e}f\n", "  secret: <redacted>\n"},
		{"admin: {listen: \"127.0.0.1:0\", token: s3cret}\n", "admin: {listen: \"127.0.0.1:0\", token: <redacted>}\n"},
		{"redis: {addr: x, password: 'pw', db: 1}\n", "redis: {addr: x, password: <redacted>, db: 1}\n"},
		{"    - secret: ${JWT_SECRET}\n", "    - secret: <redacted>\n"},
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
