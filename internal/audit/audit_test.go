package audit

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func readLines(t *testing.T, path string) []Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line is not JSON: %v: %q", err, sc.Text())
		}
		out = append(out, e)
	}
	return out
}

// Every entry written before Close is in the file, one JSON line each,
// in order; the file is private to the gateway's user.
func TestLogWritesEveryEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var dropped atomic.Int64
	l, err := Open(path, 0, func() { dropped.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		l.Write(Entry{Time: time.Unix(int64(i), 0), RequestID: "r" + string(rune('a'+i%26)), Route: "iris", Decision: "unauthorized", Status: 401, ClientIP: "10.0.0.1", Reason: "unknown API key"})
	}
	l.Close()
	l.Close() // twice is harmless
	got := readLines(t, path)
	if len(got) != 100 || dropped.Load() != 0 {
		t.Fatalf("%d lines, %d dropped; want 100 and 0", len(got), dropped.Load())
	}
	if got[99].Time.Unix() != 99 || got[0].Reason != "unknown API key" || got[0].Identity != "" {
		t.Errorf("lines out of order or wrong: first %+v last %+v", got[0], got[99])
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", st.Mode().Perm())
	}
	l.Write(Entry{Route: "late"})
	if dropped.Load() != 1 {
		t.Errorf("a write after Close was not counted as dropped")
	}
}

// After logrotate moves the file away, Reopen makes a new one under the
// name, and the moved file keeps what it had.
func TestLogReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	l, err := Open(path, 0, func() {})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Write(Entry{Route: "before"})
	waitLines(t, path, 1)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Write(Entry{Route: "after"})
	waitLines(t, path, 1)
	if old := readLines(t, path+".1"); len(old) != 1 || old[0].Route != "before" {
		t.Errorf("rotated file: %+v", old)
	}
	if cur := readLines(t, path); cur[0].Route != "after" {
		t.Errorf("new file: %+v", cur)
	}
}

func waitLines(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if data, _ := os.ReadFile(path); strings.Count(string(data), "\n") >= n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: fewer than %d lines after 2s", path, n)
}

func TestSampleAllowed(t *testing.T) {
	for _, tc := range []struct {
		share    float64
		min, max int
	}{{0, 0, 0}, {1, 10000, 10000}, {0.1, 800, 1200}} {
		l := &Log{sample: tc.share}
		n := 0
		for range 10000 {
			if l.SampleAllowed() {
				n++
			}
		}
		if n < tc.min || n > tc.max {
			t.Errorf("share %v: %d of 10000 sampled, want %d to %d", tc.share, n, tc.min, tc.max)
		}
	}
}

func TestOpenRefusesAnUnwritablePath(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing-dir", "audit.jsonl"), 0, func() {}); err == nil {
		t.Fatal("opened a file in a directory that does not exist")
	}
}
