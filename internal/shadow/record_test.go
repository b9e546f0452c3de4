package shadow

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustRecorder(t *testing.T, file string, maxBytes int64, perSecond float64) *Recorder {
	t.Helper()
	rec, err := NewRecorder(file, maxBytes, perSecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() })
	return rec
}

func exampleRecord(t *testing.T) Record {
	t.Helper()
	r, _ := fakeClock()
	c := mustComparer(t, nil, 0, 0, "")
	rt := r.Route("iris", irisIdentity(), c)
	p := comparedPair(c, 200, `{"prediction":"setosa","p":[0.9, 0.1]}`, 200, `{"prediction":"virginica","p":[0.2,0.8]}`)
	return rt.Record(1, p, rt.Pair(1, p).Outcome)
}

// readLines parses every line of a record file as JSON.
func readLines(t *testing.T, file string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line is not JSON: %v\n%s", err, sc.Bytes())
		}
		out = append(out, m)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatal("file does not end with a newline")
	}
	return out
}

func TestRecorderWritesJSONLines(t *testing.T) {
	file := filepath.Join(t.TempDir(), "diffs.jsonl")
	rec := mustRecorder(t, file, 1<<20, math.Inf(1))
	if rec.Path() != file {
		t.Errorf("Path() = %q", rec.Path())
	}
	first := exampleRecord(t)
	notJSON := first
	notJSON.Outcome = NotJSON
	notJSON.ShadowBody = []byte("<html>\nupstream\tdown</html>")
	for _, r := range []Record{first, notJSON} {
		if !rec.Write(r) {
			t.Fatal("Write refused a record without a rate limit")
		}
	}
	lines := readLines(t, file)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	l := lines[0]
	for key, want := range map[string]any{
		"route": "iris", "variant": "treatment", "primary_pool": "iris-v2", "shadow_pool": "iris-v3",
		"outcome": "mismatched", "time": "2026-03-01T12:00:00Z",
	} {
		if l[key] != want {
			t.Errorf("%s = %v, want %v", key, l[key], want)
		}
	}
	req := l["request"].(map[string]any)
	if req["id"] != "req-1" || req["method"] != "POST" || req["uri"] != "/v1/models/iris:predict" {
		t.Errorf("request %v", req)
	}
	// A JSON body is embedded as JSON, not as a string holding JSON.
	if body, ok := req["body"].(map[string]any); !ok || body["instances"] == nil {
		t.Errorf("request body %#v, want an object", req["body"])
	}
	primary, shadow := l["primary"].(map[string]any), l["shadow"].(map[string]any)
	if primary["status"] != 200.0 || primary["latency_ms"] != 10.0 || shadow["latency_ms"] != 12.0 {
		t.Errorf("primary %v shadow %v", primary, shadow)
	}
	if body, ok := shadow["body"].(map[string]any); !ok || body["prediction"] != "virginica" {
		t.Errorf("shadow body %#v, want an object", shadow["body"])
	}
	if diffs := l["diffs"].([]any); len(diffs) != 3 || diffs[0].(map[string]any)["path"] != "p[0]" {
		t.Errorf("diffs %v", diffs)
	}
	// Anything else is a string.
	if body := lines[1]["shadow"].(map[string]any)["body"]; body != "<html>\nupstream\tdown</html>" {
		t.Errorf("non-JSON body %#v, want the string", body)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("file mode %v, want at most 0640", perm)
	}
}

func TestRecorderRateLimit(t *testing.T) {
	file := filepath.Join(t.TempDir(), "diffs.jsonl")
	rec := mustRecorder(t, file, 1<<20, 5)
	r := exampleRecord(t)
	start := time.Now()
	written := 0
	for range 200 {
		if rec.Write(r) {
			written++
		}
	}
	// A burst of 5, then 5 a second.
	if allowed := 5 + int(time.Since(start).Seconds()*5) + 1; written < 5 || written > allowed {
		t.Fatalf("%d of 200 written, want 5 to %d", written, allowed)
	}
	if n := len(readLines(t, file)); n != written {
		t.Fatalf("%d lines for %d writes", n, written)
	}
}

func TestRecorderRotatesWithinTheCap(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "diffs.jsonl")
	const maxBytes = 8 << 10
	rec := mustRecorder(t, file, maxBytes, math.Inf(1))
	r := exampleRecord(t)
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	written := 0
	for range 500 {
		if rec.Write(r) {
			written++
		}
		if total := size(file) + size(file+".1"); total > maxBytes {
			t.Fatalf("%d bytes on disk, cap %d", total, maxBytes)
		}
	}
	if written != 500 {
		t.Fatalf("%d of 500 records written", written)
	}
	if size(file+".1") == 0 || size(file+".1") > maxBytes/2 {
		t.Fatalf("FILE.1 is %d bytes, want some, at most %d", size(file+".1"), maxBytes/2)
	}
	// Both files hold whole lines.
	readLines(t, file)
	readLines(t, file+".1")
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%d files in the directory, want FILE and FILE.1", len(entries))
	}
}

func TestRecorderSkipsOversizedRecord(t *testing.T) {
	file := filepath.Join(t.TempDir(), "diffs.jsonl")
	rec := mustRecorder(t, file, 4<<10, math.Inf(1))
	r := exampleRecord(t)
	if !rec.Write(r) {
		t.Fatal("a small record was refused")
	}
	before, _ := os.ReadFile(file)
	big := r
	big.ShadowBody = []byte(strings.Repeat("x", 3<<10)) // over 2 KiB alone
	if rec.Write(big) {
		t.Fatal("a record over maxBytes/2 was written")
	}
	after, _ := os.ReadFile(file)
	if !bytes.Equal(before, after) {
		t.Fatal("the oversized record changed the file")
	}
	if _, err := os.Stat(file + ".1"); err == nil {
		t.Fatal("the oversized record rotated the file")
	}
	if !rec.Write(r) {
		t.Fatal("the recorder stopped after an oversized record")
	}
}

func TestNewRecorderChecks(t *testing.T) {
	dir := t.TempDir()
	_, err := NewRecorder(filepath.Join(dir, "missing", "diffs.jsonl"), 1<<20, 1)
	if err == nil || !strings.Contains(err.Error(), "directory") || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing directory: %v", err)
	}
	for _, tc := range []struct {
		file      string
		maxBytes  int64
		perSecond float64
	}{
		{"", 1 << 20, 1},
		{filepath.Join(dir, "a"), 0, 1},
		{filepath.Join(dir, "a"), 1 << 20, 0},
		{filepath.Join(dir, "a"), 1 << 20, math.NaN()},
	} {
		if rec, err := NewRecorder(tc.file, tc.maxBytes, tc.perSecond); err == nil {
			rec.Close()
			t.Errorf("%+v accepted", tc)
		}
	}
	// Files left over under a larger cap are not kept over the new one.
	file := filepath.Join(dir, "old.jsonl")
	if err := os.WriteFile(file, bytes.Repeat([]byte("{}\n"), 1000), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file+".1", bytes.Repeat([]byte("{}\n"), 1000), 0o640); err != nil {
		t.Fatal(err)
	}
	mustRecorder(t, file, 1<<10, 1)
	for _, p := range []string{file, file + ".1"} {
		if fi, err := os.Stat(p); err == nil && fi.Size() > 512 {
			t.Errorf("%s kept at %d bytes over a 1 KiB cap", p, fi.Size())
		}
	}
	// A file under the cap is appended to.
	small := filepath.Join(dir, "small.jsonl")
	if err := os.WriteFile(small, []byte("{\"old\":1}\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	rec := mustRecorder(t, small, 1<<20, 1)
	rec.Write(exampleRecord(t))
	if lines := readLines(t, small); len(lines) != 2 || lines[0]["old"] != 1.0 {
		t.Errorf("existing file not appended to: %v", lines)
	}
}

func TestRecorderConcurrentWritesAndClose(t *testing.T) {
	file := filepath.Join(t.TempDir(), "diffs.jsonl")
	rec := mustRecorder(t, file, 64<<10, math.Inf(1))
	r := exampleRecord(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				rec.Write(r)
			}
		})
	}
	wg.Wait()
	lines := len(readLines(t, file))
	if _, err := os.Stat(file + ".1"); err == nil {
		lines += len(readLines(t, file+".1"))
	}
	if lines == 0 {
		t.Fatal("nothing written")
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	if rec.Write(r) {
		t.Fatal("Write after Close returned true")
	}
	if err := rec.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestRegistryOwnsRecorders(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "iris.jsonl")
	r, _ := fakeClock()
	rec, err := r.Recorder("iris", file, 1<<20, 10)
	if err != nil {
		t.Fatal(err)
	}
	// A reload with the same settings keeps the open recorder.
	if again, err := r.Recorder("iris", file, 1<<20, 10); err != nil || again != rec {
		t.Fatalf("same settings: %p, %v; want the same recorder", again, err)
	}
	// Two routes cannot share a file.
	if _, err := r.Recorder("bert", filepath.Join(dir, ".", "iris.jsonl"), 1<<20, 10); err == nil {
		t.Fatal("a second route recording to the same file was accepted")
	}
	// New settings: a new recorder, the old one closed.
	changed, err := r.Recorder("iris", file, 2<<20, 10)
	if err != nil || changed == rec {
		t.Fatalf("new settings: %p, %v; want a new recorder", changed, err)
	}
	if rec.Write(exampleRecord(t)) {
		t.Error("the replaced recorder still writes")
	}
	if !changed.Write(exampleRecord(t)) {
		t.Error("the new recorder does not write")
	}
	// No file: the route records nothing.
	if none, err := r.Recorder("iris", "", 0, 0); none != nil || err != nil {
		t.Fatalf("no file: %v, %v", none, err)
	}
	if changed.Write(exampleRecord(t)) {
		t.Error("a recorder closed by file \"\" still writes")
	}

	bert, err := r.Recorder("bert", filepath.Join(dir, "bert.jsonl"), 1<<20, 10)
	if err != nil {
		t.Fatal(err)
	}
	iris, err := r.Recorder("iris", file, 1<<20, 10)
	if err != nil {
		t.Fatal(err)
	}
	r.Retain(map[string]bool{"iris": true})
	if bert.Write(exampleRecord(t)) {
		t.Error("the recorder of a route dropped by Retain still writes")
	}
	if !iris.Write(exampleRecord(t)) {
		t.Error("Retain closed a kept route's recorder")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if iris.Write(exampleRecord(t)) {
		t.Error("Registry.Close left a recorder open")
	}
}
