package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// runGateway runs the command line as the binary would and returns what it
// printed and its exit status.
func runGateway(args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// `gateway check` prints every problem as FILE:LINE: message, the way
// compilers do, so an editor can jump to each; and exits 1.
func TestCheckReportsEveryProblemWithFileAndLine(t *testing.T) {
	file := filepath.Join("testdata", "three-mistakes.yaml")
	stdout, stderr, code := runGateway("check", "-config", file)
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if stdout != "" {
		t.Errorf("printed %q on stdout, want nothing", stdout)
	}
	lineRE := regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `:(\d+): (.+)$`)
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if m := lineRE.FindStringSubmatch(l); m != nil {
			got = append(got, m[1]+" "+m[2])
		}
	}
	want := []struct{ line, msg string }{
		{"4", `unknown key "read_timout"`},
		{"5", `invalid duration "30 seconds"`},
		{"11", `unknown pool "iris-v9"`},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d FILE:LINE lines, want %d; stderr:\n%s", len(got), len(want), stderr)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w.line+" ") || !strings.Contains(got[i], w.msg) {
			t.Errorf("problem %d = %q, want line %s with %q", i, got[i], w.line, w.msg)
		}
	}
	if !strings.Contains(stderr, "3 problem(s) in "+file) {
		t.Errorf("stderr does not sum up the count:\n%s", stderr)
	}
}

func TestCheck(t *testing.T) {
	shipped := filepath.Join("..", "..", "config", "gateway.yaml")
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	dir := t.TempDir()
	brokenKeys := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(brokenKeys, []byte("keys:\n  - {name: a, sha256: 1234}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withKeys := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(withKeys, []byte("pools: {p: {backends: [127.0.0.1:9]}}\nroutes:\n  - {name: iris, pool: p, auth: {api_keys: {keys_file: "+brokenKeys+"}}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string // substring; "" means must be empty
		stderr string // substring; "" means must be empty
	}{
		{"the shipped config is valid", []string{"check", "-config", shipped}, 0, shipped + ": ok (", ""},
		{"a missing file", []string{"check", "-config", missing}, 1, "", missing + ": read config:"},
		{"an unknown flag", []string{"check", "-conf", shipped}, 2, "", "flag provided but not defined: -conf"},
		{"a broken keys file", []string{"check", "-config", withKeys}, 1, "", "routes iris: auth.api_keys.keys_file " + brokenKeys + ": line 2: keys[0].sha256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runGateway(tc.args...)
			if code != tc.code {
				t.Errorf("exit status %d, want %d (stderr: %s)", code, tc.code, stderr)
			}
			for _, s := range []struct{ name, got, want string }{{"stdout", stdout, tc.stdout}, {"stderr", stderr, tc.stderr}} {
				if s.want == "" && s.got != "" || !strings.Contains(s.got, s.want) {
					t.Errorf("%s = %q, want it to contain %q", s.name, s.got, s.want)
				}
			}
		})
	}
}

func TestVersionPrintsTheGoVersion(t *testing.T) {
	stdout, stderr, code := runGateway("version")
	if code != 0 || stderr != "" {
		t.Errorf("exit status %d, stderr %q; want 0 and nothing", code, stderr)
	}
	want := fmt.Sprintf("sluice gateway %s (commit %s, %s, %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if stdout != want {
		t.Errorf("version printed %q, want %q", stdout, want)
	}
}

// A typo in the command must not start a gateway: it prints usage to
// stderr and exits 2, as flag parsing errors do.
func TestUnknownCommandExits2(t *testing.T) {
	stdout, stderr, code := runGateway("chekc", "-config", "x.yaml")
	if code != 2 {
		t.Errorf("exit status %d, want 2", code)
	}
	if stdout != "" {
		t.Errorf("printed %q on stdout, want nothing", stdout)
	}
	if !strings.Contains(stderr, `unknown command "chekc"`) || !strings.Contains(stderr, "usage:") {
		t.Errorf("stderr = %q, want the unknown command named and the usage", stderr)
	}
}

// Regression: "gateway -h" was taken for "run" with flags, so it printed
// only the serve flags and exited 2 instead of the usage and 0.
func TestHelpFlagPrintsUsageAndExits0(t *testing.T) {
	for _, arg := range []string{"help", "-h", "--help"} {
		stdout, _, code := runGateway(arg)
		if code != 0 || !strings.Contains(stdout, "gateway check -config FILE") {
			t.Errorf("%s: exit %d, stdout %q; want 0 and the usage", arg, code, stdout)
		}
	}
}

// gateway report reads the admin API and prints the report as tables,
// with the admin token when one is given.
func TestReportPrintsTheAdminReport(t *testing.T) {
	var gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/admin/shadow":
			fmt.Fprint(w, `{"shadow":[{"route":"iris","shadow_pool":"iris-v3","variants":[{"variant":"control","pool":"iris-v1",
				"counters":{"mirrored":10,"compared":9,"matched":7,"mismatched":2,"timeout":1},
				"fields":[{"field":"prediction","mismatches":2,"verdict":"difference"}]}]}]}`)
		case "/admin/experiments":
			fmt.Fprint(w, `{"experiments":[]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	out, errOut, code := runGateway("report", "shadow", "-admin", srv.URL, "-token", "s3cret")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"route iris", "iris-v3", "control", "prediction", "difference"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if gotAuth != "Bearer s3cret" {
		t.Errorf("Authorization %q, want the token", gotAuth)
	}
	if out, _, code := runGateway("report", "experiments", "-admin", srv.URL); code != 0 || !strings.Contains(out, "no split routes") {
		t.Errorf("report experiments: exit %d, %q", code, out)
	}
	if _, errOut, code := runGateway("report", "nonsense"); code != 2 || !strings.Contains(errOut, "shadow|experiments") {
		t.Errorf("unknown report: exit %d, %q", code, errOut)
	}
}
