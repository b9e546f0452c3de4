package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// keysDigestOf is what an operator writes in the file for key.
func keysDigestOf(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:])
}

// mustParseKeys parses src, which must be valid.
func mustParseKeys(t *testing.T, src string) *KeySet {
	t.Helper()
	set, err := ParseKeys([]byte(src))
	if err != nil {
		t.Fatalf("ParseKeys: %v\nfile:\n%s", err, src)
	}
	return set
}

// keysProblems parses src, which must fail, and returns the problems.
func keysProblems(t *testing.T, src string) config.Problems {
	t.Helper()
	set, err := ParseKeys([]byte(src))
	if err == nil {
		t.Fatalf("ParseKeys accepted (%d keys):\n%s", set.Len(), src)
	}
	if set != nil {
		t.Errorf("ParseKeys returned a set with its error")
	}
	var ps config.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("ParseKeys error is %T (%v), want config.Problems", err, err)
	}
	if len(ps) == 0 {
		t.Fatal("ParseKeys failed with an empty Problems")
	}
	return ps
}

func TestParseKeysReadsEveryField(t *testing.T) {
	src := `# API keys: hashes only
keys:
  - name: team-a
    sha256: ` + keysDigestOf("key-a") + `
    routes: [iris, iris-v2]
    tags: [public-api]
    rate_limit: {rate: 10/s, burst: 5}
  - name: svc@example.com
    sha256: ` + strings.ToUpper(keysDigestOf("key-b")) + `
    rate_limit: {rate: 150/m}
  - {name: batch.1, sha256: ` + keysDigestOf("key-c") + `}
`
	set := mustParseKeys(t, src)
	if set.Len() != 3 {
		t.Fatalf("Len = %d, want 3", set.Len())
	}
	var names []string
	for _, k := range set.Keys() {
		names = append(names, k.Name)
	}
	if want := []string{"batch.1", "svc@example.com", "team-a"}; !slices.Equal(names, want) {
		t.Errorf("Keys() names = %v, want %v (sorted)", names, want)
	}

	a := set.Lookup([]byte("key-a"))
	if a == nil {
		t.Fatal("Lookup(key-a) = nil")
	}
	if a.Name != "team-a" || !slices.Equal(a.Routes, []string{"iris", "iris-v2"}) || !slices.Equal(a.Tags, []string{"public-api"}) {
		t.Errorf("team-a = %+v", a)
	}
	if a.PerSecond != 10 || a.Burst != 5 {
		t.Errorf("team-a limit = %v/s burst %d, want 10/s burst 5", a.PerSecond, a.Burst)
	}
	if id := a.Identity(); id == nil || id.Name != "team-a" || id.Kind != KindAPIKey || id.Claims != nil {
		t.Errorf("team-a Identity() = %+v, want {team-a api_key nil}", id)
	}

	// Upper-case hex is the same digest; burst defaults to the rate per
	// second rounded up (150/m = 2.5/s -> 3), as for route rate limits.
	b := set.Lookup([]byte("key-b"))
	if b == nil || b.Name != "svc@example.com" {
		t.Fatalf("Lookup(key-b) = %+v, want svc@example.com", b)
	}
	if b.PerSecond != 2.5 || b.Burst != 3 {
		t.Errorf("svc limit = %v/s burst %d, want 2.5/s burst 3", b.PerSecond, b.Burst)
	}

	c := set.Lookup([]byte("key-c"))
	if c == nil || c.PerSecond != 0 || c.Burst != 0 || c.Routes != nil || c.Tags != nil {
		t.Errorf("batch.1 = %+v, want no limit, no routes, no tags", c)
	}
}

func TestParseKeysBurstDefaultIsAtLeastOne(t *testing.T) {
	set := mustParseKeys(t, "keys:\n  - {name: slow, sha256: "+keysDigestOf("k")+", rate_limit: {rate: 1/h}}\n")
	if k := set.Lookup([]byte("k")); k == nil || k.Burst != 1 {
		t.Errorf("key = %+v, want burst 1", k)
	}
}

// A file without keys is valid: every request is refused.
func TestParseKeysWithoutKeys(t *testing.T) {
	for name, src := range map[string]string{
		"empty":         "",
		"comments only": "# nobody yet\n",
		"empty list":    "keys: []\n",
		"null list":     "keys:\n",
	} {
		t.Run(name, func(t *testing.T) {
			set := mustParseKeys(t, src)
			if set.Len() != 0 || len(set.Keys()) != 0 {
				t.Errorf("Len = %d, Keys = %v; want none", set.Len(), set.Keys())
			}
			if k := set.Lookup([]byte("anything")); k != nil {
				t.Errorf("Lookup found %+v in an empty set", k)
			}
		})
	}
}

func TestParseKeysProblemsHaveTheirLine(t *testing.T) {
	a, b := keysDigestOf("key-a"), keysDigestOf("key-b")
	for _, tc := range []struct {
		name    string
		src     string
		line    int
		problem string
	}{
		{"sha256 not hex", "keys:\n  - name: a\n    sha256: " + strings.Repeat("zz", 32) + "\n", 3,
			"sha256 must be the 64 hex digits of the key's SHA-256, never the key itself"},
		{"sha256 too short", "keys:\n  - name: a\n    sha256: " + a[:63] + "\n", 3,
			"sha256 must be the 64 hex digits of the key's SHA-256, never the key itself"},
		{"sha256 too long", "keys:\n  - name: a\n    sha256: " + a + "00\n", 3,
			"sha256 must be the 64 hex digits of the key's SHA-256, never the key itself"},
		{"sha256 missing", "keys:\n  - name: a\n    routes: [iris]\n", 2, "sha256: is required"},
		{"sha256 of the empty key", "keys:\n  - name: a\n    sha256: " + keysDigestOf("") + "\n", 3, "empty key"},
		{"duplicate name", "keys:\n  - name: a\n    sha256: " + a + "\n  - name: a\n    sha256: " + b + "\n", 4,
			`"a" is already the name of the key at line 2`},
		{"duplicate sha256", "keys:\n  - name: a\n    sha256: " + a + "\n  - name: b\n    sha256: " + strings.ToUpper(a) + "\n", 5,
			`is the same key as "a"`},
		{"empty name", "keys:\n  - sha256: " + a + "\n    name: \"\"\n", 3, "name: is required"},
		{"missing name", "keys:\n  - sha256: " + a + "\n", 2, "name: is required"},
		{"name with a space", "keys:\n  - name: team a\n    sha256: " + a + "\n", 2, `"team a" must start with a letter or digit`},
		{"name starting with a dash", "keys:\n  - name: -a\n    sha256: " + a + "\n", 2, `"-a" must start with a letter or digit`},
		{"name too long", "keys:\n  - name: " + strings.Repeat("n", 129) + "\n    sha256: " + a + "\n", 2, "at most 128"},
		{"name not text", "keys:\n  - name: [a]\n    sha256: " + a + "\n", 2, "wrong type: list where text is expected"},
		{"rate invalid", "keys:\n  - name: a\n    sha256: " + a + "\n    rate_limit:\n      rate: 10 per second\n", 5, "invalid rate"},
		{"rate zero", "keys:\n  - name: a\n    sha256: " + a + "\n    rate_limit: {rate: 0/s}\n", 4, "invalid rate"},
		{"rate missing", "keys:\n  - name: a\n    sha256: " + a + "\n    rate_limit: {burst: 5}\n", 4, "rate_limit.rate: is required"},
		{"rate too high", "keys:\n  - name: a\n    sha256: " + a + "\n    rate_limit:\n      rate: 2000000/s\n", 5, "at most 1000000/s"},
		{"burst too big", "keys:\n  - name: a\n    sha256: " + a + "\n    rate_limit:\n      rate: 10/s\n      burst: 1000001\n", 6, "must be 1 to 1000000"},
		{"burst negative", "keys:\n  - name: a\n    sha256: " + a + "\n    rate_limit:\n      rate: 10/s\n      burst: -1\n", 6, "must be 1 to 1000000"},
		{"empty route", "keys:\n  - name: a\n    sha256: " + a + "\n    routes: [iris, \"\"]\n", 4, "entry 1 is empty"},
		{"routes written empty", "keys:\n  - name: a\n    sha256: " + a + "\n    routes: []\n", 4, "routes: is empty, which would let the key call every route"},
		{"tags written without a value", "keys:\n  - name: a\n    sha256: " + a + "\n    tags:\n", 4, "tags: is empty, which would let the key call every route"},
		{"unknown key in an entry", "keys:\n  - name: a\n    sha256: " + a + "\n    key: sk_abc\n", 4, `unknown key "key"`},
		{"unknown key at the top", "key:\n  - name: a\n", 1, `unknown key "key" (known here: keys)`},
		{"unknown key in rate_limit", "keys:\n  - name: a\n    sha256: " + a + "\n    rate_limit:\n      rate: 1/s\n      brust: 2\n", 6, `unknown key "brust"`},
		{"keys not a list", "keys:\n  name: a\n", 2, "wrong type: mapping where a list is expected"},
		{"not a mapping", "- name: a\n", 1, "a keys file is a mapping"},
		{"syntax error", "keys:\n  - name: a\n    sha256: x: y\n", 3, "mapping values are not allowed"},
		{"field given twice", "keys:\n  - name: a\n    sha256: " + a + "\n    name: b\n", 4, `"name" already defined at line 2`},
		{"burst not whole", "keys:\n  - name: a\n    sha256: " + a + "\n    rate_limit: {rate: 10/s, burst: 2.5}\n", 4, `burst "2.5" is not a whole number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := keysProblems(t, tc.src)
			if !slices.ContainsFunc(ps, func(p config.Problem) bool {
				return p.Line == tc.line && strings.Contains(p.Error(), tc.problem)
			}) {
				t.Errorf("problems:\n%v\nwant one at line %d with %q", ps, tc.line, tc.problem)
			}
			for _, p := range ps {
				if strings.Contains(p.Msg, "auth.") || strings.Contains(p.Msg, "[]") {
					t.Errorf("problem names a Go type: %v", p)
				}
			}
		})
	}
}

// A key pasted where its hash belongs must not be repeated by the error,
// which is logged and shown by the admin API.
func TestParseKeysNeverEchoesABadSHA256(t *testing.T) {
	key, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ps := keysProblems(t, "keys:\n  - name: a\n    sha256: "+key+"\n")
	if strings.Contains(ps.Error(), key) || strings.Contains(ps.Error(), key[3:12]) {
		t.Errorf("the problem repeats the key: %v", ps)
	}
}

// Every problem comes out at once, sorted by line, so an operator fixes
// the file in one pass.
func TestParseKeysReportsEveryProblem(t *testing.T) {
	src := `keys:
  - name: a
    sha256: nothex
  - name: b c
    sha256: ` + keysDigestOf("b") + `
    colour: blue
  - name: d
    sha256: ` + keysDigestOf("d") + `
    rate_limit: {rate: 10/s, burst: 0.5}
`
	ps := keysProblems(t, src)
	var lines []int
	for _, p := range ps {
		lines = append(lines, p.Line)
	}
	if want := []int{3, 4, 6, 9}; !slices.Equal(lines, want) {
		t.Errorf("problem lines = %v, want %v:\n%v", lines, want, ps)
	}
}

func TestKeysLookup(t *testing.T) {
	key := "sk_" + strings.Repeat("A", 43)
	set := mustParseKeys(t, "keys:\n  - {name: a, sha256: "+Digest(key)+"}\n  - {name: b, sha256: "+Digest("other")+"}\n")
	changed := []byte(key)
	changed[len(changed)-1] = 'B'
	for _, tc := range []struct {
		name      string
		presented []byte
		want      string // key name, "" for none
	}{
		{"the key", []byte(key), "a"},
		{"another key", []byte("other"), "b"},
		{"a wrong key", []byte("sk_wrong"), ""},
		{"one byte changed", changed, ""},
		{"a prefix", []byte(key[:len(key)-1]), ""},
		{"the digest itself", []byte(Digest(key)), ""},
		{"empty", []byte{}, ""},
		{"nil", nil, ""},
		{"overlong", []byte(strings.Repeat("x", 513)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := set.Lookup(tc.presented)
			switch {
			case tc.want == "" && got != nil:
				t.Errorf("Lookup = %q, want nil", got.Name)
			case tc.want != "" && (got == nil || got.Name != tc.want):
				t.Errorf("Lookup = %+v, want %q", got, tc.want)
			}
		})
	}
}

// A key of exactly 512 bytes is still looked up; the limit refuses only
// longer values.
func TestKeysLookupLongestKey(t *testing.T) {
	key := strings.Repeat("k", 512)
	set := mustParseKeys(t, "keys:\n  - {name: long, sha256: "+Digest(key)+"}\n")
	if set.Lookup([]byte(key)) == nil {
		t.Error("a 512-byte key was refused")
	}
	overlong := strings.Repeat("k", 513)
	set = mustParseKeys(t, "keys:\n  - {name: long, sha256: "+Digest(overlong)+"}\n")
	if set.Lookup([]byte(overlong)) != nil {
		t.Error("a 513-byte key was accepted")
	}
}

func TestKeysLookupOnNilSet(t *testing.T) {
	var set *KeySet
	if set.Lookup([]byte("k")) != nil || set.Len() != 0 || set.Keys() != nil {
		t.Error("a nil KeySet is not empty")
	}
}

// Authenticating runs on every request: it must not allocate.
func TestKeysLookupAllocatesNothing(t *testing.T) {
	key, sum, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	set := mustParseKeys(t, "keys:\n  - {name: a, sha256: "+sum+"}\n")
	presented, wrong := []byte(key), []byte("sk_wrong")
	for name, in := range map[string][]byte{"hit": presented, "miss": wrong} {
		if n := testing.AllocsPerRun(100, func() {
			if k := set.Lookup(in); k != nil {
				_ = k.Identity()
			}
		}); n != 0 {
			t.Errorf("%s: Lookup allocates %v times per call, want 0", name, n)
		}
	}
}

func TestKeyAllows(t *testing.T) {
	for _, tc := range []struct {
		name   string
		key    Key
		route  string
		tags   []string
		allows bool
	}{
		{"no lists: any route", Key{}, "iris", nil, true},
		{"no lists: any route with tags", Key{}, "iris", []string{"x"}, true},
		{"routes: listed", Key{Routes: []string{"iris", "mnist"}}, "mnist", nil, true},
		{"routes: not listed", Key{Routes: []string{"iris"}}, "mnist", []string{"public"}, false},
		{"tags: shared", Key{Tags: []string{"public"}}, "iris", []string{"beta", "public"}, true},
		{"tags: none shared", Key{Tags: []string{"public"}}, "iris", []string{"beta"}, false},
		{"tags: route without tags", Key{Tags: []string{"public"}}, "iris", nil, false},
		{"both: by route", Key{Routes: []string{"iris"}, Tags: []string{"public"}}, "iris", nil, true},
		{"both: by tag", Key{Routes: []string{"iris"}, Tags: []string{"public"}}, "mnist", []string{"public"}, true},
		{"both: neither", Key{Routes: []string{"iris"}, Tags: []string{"public"}}, "mnist", []string{"beta"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.key.Allows(tc.route, tc.tags); got != tc.allows {
				t.Errorf("Allows(%q, %v) = %v, want %v", tc.route, tc.tags, got, tc.allows)
			}
		})
	}
}

func TestNewKey(t *testing.T) {
	key, sum, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	key2, sum2, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if key == key2 || sum == sum2 {
		t.Errorf("two calls returned the same key or hash: %q %q", key, key2)
	}
	if !strings.HasPrefix(key, "sk_") || len(key) != 3+43 {
		t.Errorf("key %q: want sk_ and 43 base64url characters", key)
	}
	if Digest(key) != sum {
		t.Errorf("Digest(key) = %s, NewKey said %s", Digest(key), sum)
	}
	if sum != keysDigestOf(key) {
		t.Errorf("sha256Hex = %s, want the hex SHA-256 of the key %s", sum, keysDigestOf(key))
	}

	// The entry `gateway keys add` prints goes under keys: as it is.
	entry := fmt.Sprintf("  - {name: team-a, sha256: %s, routes: [iris]}\n", sum)
	if strings.Contains(entry, key) {
		t.Fatalf("the entry holds the key: %s", entry)
	}
	set := mustParseKeys(t, "keys:\n"+entry)
	if k := set.Lookup([]byte(key)); k == nil || k.Name != "team-a" || !k.Allows("iris", nil) || k.Allows("mnist", nil) {
		t.Errorf("Lookup(new key) = %+v, want team-a for iris only", k)
	}
	if set.Lookup([]byte(key2)) != nil {
		t.Error("the other new key was accepted")
	}
}

func BenchmarkKeysLookup(b *testing.B) {
	var src strings.Builder
	src.WriteString("keys:\n")
	keys := make([][]byte, 1000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "%043d", i) // 43 characters, as NewKey's base64 part
		fmt.Fprintf(&src, "  - {name: key-%d, sha256: %s}\n", i, Digest(string(keys[i])))
	}
	set, err := ParseKeys([]byte(src.String()))
	if err != nil {
		b.Fatal(err)
	}
	presented := keys[500]
	b.ReportAllocs()
	for b.Loop() {
		if set.Lookup(presented) == nil {
			b.Fatal("not found")
		}
	}
}
