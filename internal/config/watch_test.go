package config

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const (
	testDebounce = 20 * time.Millisecond
	// eventually bounds every wait for a reload that must happen: long
	// enough that a loaded CI machine never trips it, and only ever spent
	// when the test is failing.
	eventually = 5 * time.Second
	// quietWindow is how long a reload that must not happen is given to
	// show up: many debounce intervals.
	quietWindow = 10 * testDebounce
)

// watchedConfig watches path for the test's lifetime. Each time onChange
// fires it reads the file the way the reloader does (following symlinks)
// and reports what it read, so a test waits for the reload that sees the
// new content rather than for any event at all.
type watchedConfig struct {
	t        *testing.T
	path     string
	debounce time.Duration
	reloads  chan string
}

func newWatchedConfig(t *testing.T, path string, debounce time.Duration) *watchedConfig {
	return &watchedConfig{t: t, path: path, debounce: debounce, reloads: make(chan string, 256)}
}

// onChange is the callback handed to the watcher.
func (w *watchedConfig) onChange() {
	data, err := os.ReadFile(w.path)
	seen := string(data)
	if err != nil {
		seen = "read error: " + err.Error()
	}
	select {
	case w.reloads <- seen:
	default: // the test has stopped listening
	}
}

// startWatch builds a Watcher and runs it until the test ends. NewWatcher
// promises that events from the moment it returns are seen, so a test may
// change the file right away.
func startWatch(t *testing.T, path string, debounce time.Duration) *watchedConfig {
	t.Helper()
	w := newWatchedConfig(t, path, debounce)
	watcher, err := NewWatcher(path, debounce, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("NewWatcher: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watcher.Run(ctx, w.onChange)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(eventually):
			t.Errorf("Run did not return within %v of its context ending", eventually)
		}
	})
	return w
}

// waitUntilWatching rewrites the file with its own content until a reload
// is seen: for Watch, which gives no sign of when its watches are in
// place. Rewrites are spaced wider than the debounce, which restarts on
// every event. Late reloads are drained.
func (w *watchedConfig) waitUntilWatching() {
	w.t.Helper()
	data, err := os.ReadFile(w.path)
	if err != nil {
		w.t.Fatal(err)
	}
	deadline := time.Now().Add(eventually)
	for primed := false; !primed; {
		if time.Now().After(deadline) {
			w.t.Fatalf("no reload within %v of rewriting %s: the watch never started", eventually, w.path)
		}
		if err := os.WriteFile(w.path, data, 0o644); err != nil {
			w.t.Fatal(err)
		}
		select {
		case <-w.reloads:
			primed = true
		case <-time.After(max(100*time.Millisecond, 3*w.debounce)):
		}
	}
	w.drain()
}

// drain discards reloads until none has come for a quiet window.
func (w *watchedConfig) drain() {
	for {
		select {
		case <-w.reloads:
		case <-time.After(max(quietWindow, 2*w.debounce)):
			return
		}
	}
}

// waitForReload fails the test unless a reload sees want.
func (w *watchedConfig) waitForReload(want string) {
	w.t.Helper()
	timeout := time.After(eventually)
	last := "(no reload at all)"
	for {
		select {
		case got := <-w.reloads:
			if got == want {
				return
			}
			last = got
		case <-timeout:
			w.t.Fatalf("no reload saw %q within %v; last reload saw %q", want, eventually, last)
		}
	}
}

// expectNoReload fails the test if a reload comes within the quiet window.
func (w *watchedConfig) expectNoReload(why string) {
	w.t.Helper()
	select {
	case got := <-w.reloads:
		w.t.Errorf("%s: onChange fired (read %q), want no reload", why, got)
	case <-time.After(quietWindow):
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func rename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// Every way editors, deploy tools and Kubernetes replace a config file
// must reach the reloader, and the reload must see the new content.
func TestWatchReloadsAfter(t *testing.T) {
	const v1, v2 = "# v1\n", "# v2\n"
	cases := []struct {
		name string
		// setup lays out dir and returns the path the gateway is given.
		setup func(t *testing.T, dir string) string
		// change replaces the config's content with v2.
		change func(t *testing.T, dir, path string)
	}{
		{
			name:   "write in place",
			setup:  plainFile(v1),
			change: func(t *testing.T, _, path string) { write(t, path, v2) },
		},
		{
			name:  "write to a temporary file and rename it over (vim, most editors)",
			setup: plainFile(v1),
			change: func(t *testing.T, dir, path string) {
				tmp := filepath.Join(dir, ".gateway.yaml.swp")
				write(t, tmp, v2)
				rename(t, tmp, path)
			},
		},
		{
			name:  "delete then create",
			setup: plainFile(v1),
			change: func(t *testing.T, _, path string) {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				write(t, path, v2)
			},
		},
		{
			name: "symlink swapped by rename",
			setup: func(t *testing.T, dir string) string {
				write(t, filepath.Join(dir, "v1.yaml"), v1)
				write(t, filepath.Join(dir, "v2.yaml"), v2)
				path := filepath.Join(dir, "gateway.yaml")
				symlink(t, "v1.yaml", path)
				return path
			},
			change: func(t *testing.T, dir, path string) {
				next := filepath.Join(dir, "gateway.yaml.next")
				symlink(t, "v2.yaml", next)
				rename(t, next, path)
			},
		},
		{
			name:  "Kubernetes ConfigMap update (..data swapped by rename)",
			setup: configMapVolume(v1),
			change: func(t *testing.T, dir, _ string) {
				// What the kubelet's atomic writer does: write the new
				// version into a fresh timestamped directory, point a new
				// ..data_tmp link at it, rename that over ..data, then
				// remove the old version.
				old, err := os.Readlink(filepath.Join(dir, "..data"))
				if err != nil {
					t.Fatal(err)
				}
				write(t, filepath.Join(dir, "..2024_05_01_10_00_01.000000002", "gateway.yaml"), v2)
				symlink(t, "..2024_05_01_10_00_01.000000002", filepath.Join(dir, "..data_tmp"))
				rename(t, filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data"))
				if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "symlink target in another directory edited in place",
			setup: func(t *testing.T, dir string) string {
				write(t, filepath.Join(dir, "releases", "r1", "gateway.yaml"), v1)
				path := filepath.Join(dir, "etc", "gateway.yaml")
				write(t, filepath.Join(dir, "etc", "README"), "the config lives in releases/\n")
				symlink(t, "../releases/r1/gateway.yaml", path)
				return path
			},
			change: func(t *testing.T, dir, _ string) {
				write(t, filepath.Join(dir, "releases", "r1", "gateway.yaml"), v2)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := tc.setup(t, dir)
			w := startWatch(t, path, testDebounce)
			tc.change(t, dir, path)
			w.waitForReload(v2)
		})
	}
}

// plainFile lays out dir/gateway.yaml as a regular file.
func plainFile(content string) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string {
		path := filepath.Join(dir, "gateway.yaml")
		write(t, path, content)
		return path
	}
}

// configMapVolume lays dir out the way the kubelet mounts a ConfigMap:
//
//	gateway.yaml -> ..data/gateway.yaml
//	..data -> ..2024_05_01_10_00_00.000000001
//	..2024_05_01_10_00_00.000000001/gateway.yaml
func configMapVolume(content string) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string {
		const version = "..2024_05_01_10_00_00.000000001"
		write(t, filepath.Join(dir, version, "gateway.yaml"), content)
		symlink(t, version, filepath.Join(dir, "..data"))
		path := filepath.Join(dir, "gateway.yaml")
		symlink(t, filepath.Join("..data", "gateway.yaml"), path)
		return path
	}
}

// Regression guard for the watch set: after a symlink is retargeted to a
// file in a directory that was not watched before, edits to that new
// target must still reload.
func TestWatchFollowsARetargetedSymlink(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "releases", "r1", "gateway.yaml"), "# r1\n")
	write(t, filepath.Join(dir, "releases", "r2", "gateway.yaml"), "# r2\n")
	path := filepath.Join(dir, "gateway.yaml")
	symlink(t, "releases/r1/gateway.yaml", path)
	w := startWatch(t, path, testDebounce)

	symlink(t, "releases/r2/gateway.yaml", path+".next")
	rename(t, path+".next", path)
	w.waitForReload("# r2\n")

	write(t, filepath.Join(dir, "releases", "r2", "gateway.yaml"), "# r2, edited\n")
	w.waitForReload("# r2, edited\n")
}

// Other files share the config's directory (keys files, certificates,
// editor swap files); touching them must not reload the gateway.
func TestWatchIgnoresOtherFilesInTheDirectory(t *testing.T) {
	for _, layout := range []struct {
		name  string
		setup func(t *testing.T, dir string) string
	}{
		{"plain file", plainFile("# v1\n")},
		{"ConfigMap volume", configMapVolume("# v1\n")},
	} {
		t.Run(layout.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := layout.setup(t, dir)
			w := startWatch(t, path, testDebounce)

			other := filepath.Join(dir, "keys.yaml")
			write(t, other, "keys: []\n")
			write(t, other, "keys: [a]\n")
			rename(t, other, other+".bak")
			if err := os.Remove(other + ".bak"); err != nil {
				t.Fatal(err)
			}
			w.expectNoReload("another file in the directory changed")

			// The watch is still alive: the config itself still reloads.
			write(t, path, "# v2\n")
			w.waitForReload("# v2\n")
		})
	}
}

// A burst of saves (an editor writing in chunks, a deploy tool touching
// the file repeatedly) is one reload, not one per event.
func TestWatchDebouncesABurstOfWrites(t *testing.T) {
	const debounce = 500 * time.Millisecond
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	write(t, path, "# v0\n")
	w := startWatch(t, path, debounce)

	const writes = 20
	for i := range writes {
		write(t, path, "# burst "+string(rune('a'+i))+"\n")
	}
	last := "# burst " + string(rune('a'+writes-1)) + "\n"
	w.waitForReload(last)

	// Count what else arrives; a reload per write would be 20.
	extra := 0
	for done := false; !done; {
		select {
		case <-w.reloads:
			extra++
		case <-time.After(2 * debounce):
			done = true
		}
	}
	if got := 1 + extra; got >= writes/2 {
		t.Errorf("%d writes gave %d reloads, want them coalesced", writes, got)
	}
}

// Regression: each event restarted the debounce timer, so a file
// rewritten more often than the debounce interval was never read.
func TestWatchDeliversWhileTheFileKeepsChanging(t *testing.T) {
	const debounce = 200 * time.Millisecond
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	write(t, path, "# v0\n")
	w := startWatch(t, path, debounce)

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				write(t, path, fmt.Sprintf("# rewrite %d\n", i))
			}
		}
	}()
	defer func() { close(stop); <-done }()
	select {
	case <-w.reloads:
	case <-time.After(5 * time.Second):
		t.Fatal("no reload while the file kept changing every 50ms")
	}
}

// Watch is NewWatcher and Run in one call: it reloads like the Watcher and
// returns nil once its context ends.
func TestWatchRunsUntilItsContextEnds(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	write(t, path, "# v1\n")
	w := newWatchedConfig(t, path, testDebounce)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, path, testDebounce, slog.New(slog.DiscardHandler), w.onChange) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v after its context ended, want nil", err)
			}
		case <-time.After(eventually):
			t.Errorf("Watch did not return within %v of its context ending", eventually)
		}
	}()
	w.waitUntilWatching()

	tmp := filepath.Join(dir, "gateway.yaml.tmp")
	write(t, tmp, "# v2\n")
	rename(t, tmp, path)
	w.waitForReload("# v2\n")
}

func TestWatchFailsWhenTheDirectoryIsMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "gateway.yaml")
	if _, err := NewWatcher(path, testDebounce, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("NewWatcher on a missing directory returned no error")
	}
	ctx, cancel := context.WithTimeout(context.Background(), eventually)
	defer cancel()
	err := Watch(ctx, path, testDebounce, slog.New(slog.DiscardHandler), func() {
		t.Error("onChange called for a directory that does not exist")
	})
	if err == nil {
		t.Fatal("Watch on a missing directory returned nil, want an error")
	}
}
