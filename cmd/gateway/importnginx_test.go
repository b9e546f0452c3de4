package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// The importer's golden inputs.
const nginxTestdata = "../../internal/nginximport/testdata"

// `gateway import-nginx FILE` prints the config on stdout and every
// directive it did not translate on stderr as FILE:LINE: directive: why,
// and exits 0.
func TestImportNginxPrintsConfigAndUntranslatedLines(t *testing.T) {
	file := filepath.Join(nginxTestdata, "15-limit-req.conf")
	stdout, stderr, code := runGateway("import-nginx", file)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q; want 0", code, stderr)
	}
	if !strings.HasPrefix(stdout, "# Translated from "+file+" by gateway import-nginx.\n") {
		t.Errorf("stdout does not start with the header naming the source:\n%s", stdout)
	}
	if _, err := config.Parse([]byte(stdout)); err != nil {
		t.Errorf("stdout does not pass config.Parse: %v\n%s", err, stdout)
	}
	golden, err := os.ReadFile(filepath.Join(nginxTestdata, "15-limit-req.untranslated"))
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `:\d+: [^:]+.*: .+$`)
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	for _, l := range lines {
		if !line.MatchString(l) {
			t.Errorf("stderr line %q is not FILE:LINE: directive: why", l)
		}
	}
	if want := strings.Count(string(golden), "\n"); len(lines) != want {
		t.Errorf("%d stderr lines, want %d (the golden file's):\n%s", len(lines), want, stderr)
	}
	if !strings.Contains(stderr, file+":18: limit_req zone=perkey burst=5: requests over the rate are refused (429), not delayed\n") {
		t.Errorf("stderr lacks the limit_req note:\n%s", stderr)
	}
}

// -o writes the file instead of stdout, before or after the file name.
func TestImportNginxWritesOutputFile(t *testing.T) {
	file := filepath.Join(nginxTestdata, "01-basic.conf")
	want, _, code := runGateway("import-nginx", file)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for i, args := range [][]string{
		{"import-nginx", "-o", "OUT", file},
		{"import-nginx", file, "-o", "OUT"},
	} {
		out := filepath.Join(t.TempDir(), "gateway.yaml")
		for j := range args {
			if args[j] == "OUT" {
				args[j] = out
			}
		}
		stdout, stderr, code := runGateway(args...)
		if code != 0 || stdout != "" || stderr != "" {
			t.Errorf("case %d: exit %d, stdout %q, stderr %q; want 0 and nothing printed", i, code, stdout, stderr)
		}
		got, err := os.ReadFile(out)
		if err != nil || string(got) != want {
			t.Errorf("case %d: -o file %q (%v), want what stdout has", i, got, err)
		}
		// What it wrote is a config the gateway accepts.
		if stdout, stderr, code := runGateway("check", "-config", out); code != 0 {
			t.Errorf("case %d: gateway check: exit %d: %s%s", i, code, stdout, stderr)
		}
	}
}

func TestImportNginxExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unbalanced := write("unbalanced.conf", "events {}\nhttp {\n  server {\n    location / { proxy_pass http://a }\n  }\n}\n")
	static := write("static.conf", "events {}\nhttp { server { listen 80; root /srv; } }\n")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no file", []string{"import-nginx"}, 2, "usage: gateway import-nginx"},
		{"two files", []string{"import-nginx", static, static}, 2, "usage: gateway import-nginx"},
		{"unknown flag", []string{"import-nginx", "-x", static}, 2, "flag provided but not defined"},
		{"missing file", []string{"import-nginx", filepath.Join(dir, "nope.conf")}, 1, "no such file"},
		{"syntax error", []string{"import-nginx", unbalanced}, 1, unbalanced + `:4: unexpected "}": the directive "proxy_pass" (line 4) has no ";"`},
		{"nothing proxies", []string{"import-nginx", static}, 1, "no server block has a location with proxy_pass"},
		{"unwritable -o", []string{"import-nginx", "-o", filepath.Join(dir, "no", "such", "dir.yaml"), filepath.Join(nginxTestdata, "01-basic.conf")}, 1, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runGateway(tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d, stderr %q; want %d with %q", code, stderr, tc.code, tc.stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}

// A translation that names certificate files this machine lacks is still
// written (exit 0), with a warning that gateway check will refuse it here.
func TestImportNginxWarnsWhenTheResultDoesNotValidateHere(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nginx.conf")
	conf := "events {}\nhttp { server { listen 443 ssl; ssl_certificate /nonexistent/a.crt; ssl_certificate_key /nonexistent/a.key;\n" +
		"location / { proxy_pass http://127.0.0.1:9101; } } }\n"
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runGateway("import-nginx", file)
	if code != 0 || !strings.Contains(stdout, "cert: /nonexistent/a.crt") {
		t.Fatalf("exit %d, stdout %q; want 0 and the config", code, stdout)
	}
	if !strings.Contains(stderr, "does not pass gateway check yet") || !strings.Contains(stderr, "/nonexistent/a.crt") {
		t.Errorf("stderr %q lacks the warning", stderr)
	}
}
