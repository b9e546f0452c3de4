package auth

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func storeTestStore(t *testing.T) (*Store, *[2]atomic.Int64) {
	t.Helper()
	var loads [2]atomic.Int64 // failures, successes
	s := NewStore(slog.New(slog.NewTextHandler(io.Discard, nil)), func(ok bool) {
		if ok {
			loads[1].Add(1)
		} else {
			loads[0].Add(1)
		}
	})
	t.Cleanup(s.Close)
	return s, &loads
}

func storeWrite(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func storeEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 2s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A keys file is watched: an edit applies without anyone asking, a
// broken edit keeps the keys in force, and a key whose limit did not
// change keeps its bucket (and what it has taken) across the edits.
func TestStoreKeysFollowTheFile(t *testing.T) {
	s, loads := storeTestStore(t)
	path := filepath.Join(t.TempDir(), "keys.yaml")
	a, b := "sk_test_a_0123456789", "sk_test_b_0123456789"
	storeWrite(t, path, "keys:\n  - {name: a, sha256: "+Digest(a)+", rate_limit: {rate: 1/h, burst: 2}}\n")
	h := s.Keys(path)
	if h2 := s.Keys(path); h2.w != h.w {
		t.Error("the same file was loaded twice")
	}
	keys := h.Current()
	if keys == nil || keys.Set.Lookup([]byte(a)) == nil || keys.Set.Lookup([]byte(b)) != nil {
		t.Fatalf("first load: %+v", keys)
	}
	lim := keys.Limiter(keys.Set.Lookup([]byte(a)))
	if lim == nil {
		t.Fatal("key a has no limiter")
	}
	lim.Take(0, time.Now()) // one of its two tokens

	storeWrite(t, path, "keys:\n  - {name: a, sha256: "+Digest(a)+", rate_limit: {rate: 1/h, burst: 2}}\n  - {name: b, sha256: "+Digest(b)+"}\n")
	storeEventually(t, "key b added", func() bool { return h.Current().Set.Lookup([]byte(b)) != nil })
	now := h.Current()
	if now.Limiter(now.Set.Lookup([]byte(a))) != lim {
		t.Error("key a lost its bucket when another key was added")
	}
	if now.Limiter(now.Set.Lookup([]byte(b))) != nil {
		t.Error("key b without rate_limit got a limiter")
	}

	storeWrite(t, path, "keys: [{name: c, sha256: nothex}]\n")
	storeEventually(t, "the broken file reported", func() bool { return s.Status()[0].LastError != "" })
	if h.Current().Set.Lookup([]byte(a)) == nil || loads[0].Load() != 1 {
		t.Errorf("a broken file dropped the keys (failures counted %d)", loads[0].Load())
	}
	st := s.Status()[0]
	if st.Kind != "keys" || len(st.Keys) != 2 || st.Keys[0].Name != "a" || st.Keys[0].Burst != 2 || st.SHA256 == "" {
		t.Errorf("status %+v", st)
	}

	s.Retain(nil)
	if len(s.Status()) != 0 {
		t.Error("Retain(nil) kept a file")
	}
}

// A keys file that does not exist yet refuses everything until it does.
func TestStoreMissingFileRefusesEverything(t *testing.T) {
	s, _ := storeTestStore(t)
	path := filepath.Join(t.TempDir(), "keys.yaml")
	h := s.Keys(path)
	if h.Current() != nil {
		t.Fatal("a missing file has keys")
	}
	if st := s.Status(); len(st) != 1 || st[0].LastError == "" {
		t.Errorf("status %+v, want the missing file's error", st)
	}
	storeWrite(t, path, "keys: []\n")
	storeEventually(t, "the new file loaded", func() bool { return h.Current() != nil })
}
