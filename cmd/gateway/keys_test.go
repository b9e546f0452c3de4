package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/auth"
)

// keysAddOutput runs `gateway keys add` and splits what it printed into
// the key and the entry for the keys file.
func keysAddOutput(t *testing.T, args ...string) (key, entry string) {
	t.Helper()
	stdout, stderr, code := runGateway(append([]string{"keys", "add"}, args...)...)
	if code != 0 || stderr != "" {
		t.Fatalf("exit status %d, stderr %q; want 0 and nothing", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "#") || !strings.Contains(lines[0], "shown once") ||
		!strings.HasPrefix(lines[2], "# add to the keys file") {
		t.Fatalf("printed:\n%s\nwant a comment, the key, a comment, the entry", stdout)
	}
	return lines[1], lines[3] + "\n"
}

// The key is printed once, on a line of its own; the entry holds its
// SHA-256 only and, pasted under keys:, admits exactly that key.
func TestKeysAddPrintsTheKeyOnceAndItsEntry(t *testing.T) {
	key, entry := keysAddOutput(t, "team-a", "-routes", "iris")
	if !strings.HasPrefix(key, "sk_") || len(key) != 46 {
		t.Errorf("key %q: want sk_ and 43 base64url characters", key)
	}
	if strings.Contains(entry, key) || strings.Contains(entry, key[3:]) {
		t.Fatalf("the entry holds the key: %s", entry)
	}
	if want := "  - {name: team-a, sha256: " + auth.Digest(key) + ", routes: [iris]}\n"; entry != want {
		t.Errorf("entry = %q, want %q", entry, want)
	}
	set, err := auth.ParseKeys([]byte("keys:\n" + entry))
	if err != nil {
		t.Fatalf("the printed entry does not parse: %v", err)
	}
	k := set.Lookup([]byte(key))
	if k == nil || k.Name != "team-a" || !k.Allows("iris", nil) || k.Allows("mnist", nil) {
		t.Errorf("Lookup(printed key) = %+v, want team-a for iris only", k)
	}

	key2, _ := keysAddOutput(t, "team-a")
	if key2 == key {
		t.Error("two runs printed the same key")
	}
}

// Flags go before or after the name; a name or tag YAML would read as
// something else is quoted, so the entry means what was asked.
func TestKeysAddEntryParsesAsWritten(t *testing.T) {
	for _, args := range [][]string{
		{"-tags", "null,public-api", "-routes", "iris,mnist", "1e3"},
		{"1e3", "-routes", "iris,mnist", "-tags", "null,public-api"},
	} {
		key, entry := keysAddOutput(t, args...)
		set, err := auth.ParseKeys([]byte("keys:\n" + entry))
		if err != nil {
			t.Fatalf("%v: the printed entry does not parse: %v\n%s", args, err, entry)
		}
		k := set.Lookup([]byte(key))
		if k == nil || k.Name != "1e3" || strings.Join(k.Routes, ",") != "iris,mnist" || strings.Join(k.Tags, ",") != "null,public-api" {
			t.Errorf("%v: entry %q reads as %+v", args, entry, k)
		}
	}
}

// Bad arguments print no key, and the usage with exit status 2.
func TestKeysBadArgumentsExit2(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		says string
	}{
		{"no subcommand", []string{"keys"}, "usage: gateway keys add"},
		{"unknown subcommand", []string{"keys", "list"}, `unknown command "list"`},
		{"no name", []string{"keys", "add"}, "usage: gateway keys add"},
		{"two names", []string{"keys", "add", "a", "b"}, "usage: gateway keys add"},
		{"bad name", []string{"keys", "add", "team a"}, `"team a" must start with a letter or digit`},
		{"name too long", []string{"keys", "add", strings.Repeat("n", 129)}, "at most 128"},
		{"empty route", []string{"keys", "add", "a", "-routes", "iris,"}, "has an empty item"},
		{"unknown flag", []string{"keys", "add", "a", "-route", "iris"}, "flag provided but not defined"},
		{"hash with an argument", []string{"keys", "hash", "sk_abc"}, "usage: gateway keys hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runGateway(tc.args...)
			if code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			if stdout != "" {
				t.Errorf("printed %q on stdout, want nothing", stdout)
			}
			if !strings.Contains(stderr, tc.says) || !strings.Contains(stderr, "usage:") {
				t.Errorf("stderr = %q, want %q and the usage", stderr, tc.says)
			}
		})
	}
}

func TestKeysHash(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stdin string
		code  int
		out   string // stdout, or what stderr says when code is not 0
	}{
		{"with a newline", "test\n", 0, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"},
		{"without", "test", 0, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"},
		{"CRLF", "test\r\n", 0, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"},
		{"empty", "\n", 1, "no key on stdin"},
		{"two keys", "k1\nk2\n", 1, "more than one word"},
		{"overlong", strings.Repeat("k", 513), 1, "longer than 512 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := keysCommand([]string{"hash"}, strings.NewReader(tc.stdin), &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit status %d, want %d (stderr %q)", code, tc.code, stderr.String())
			}
			got := stdout.String()
			if tc.code != 0 {
				got = stderr.String()
				if stdout.Len() != 0 {
					t.Errorf("printed %q on stdout, want nothing", stdout.String())
				}
			}
			if !strings.Contains(got, tc.out) {
				t.Errorf("printed %q, want %q", got, tc.out)
			}
		})
	}
}

func TestUsageListsKeys(t *testing.T) {
	stdout, _, _ := runGateway("help")
	if !strings.Contains(stdout, "gateway keys add NAME") || !strings.Contains(stdout, "gateway keys hash") {
		t.Errorf("usage does not list the keys commands:\n%s", stdout)
	}
}
