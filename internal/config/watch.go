package config

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watcher calls a function, at most once per debounce interval, after
// anything happens to the config file. It watches directories rather than
// the file: editors that save by writing a new file and renaming it over
// the old one, delete-then-create, and Kubernetes ConfigMap volumes (where
// the file is a symlink through "..data", which is swapped by rename) all
// replace the inode a file watch would hold. When the file is a symlink,
// the directory of its target is watched too, and the set is refreshed
// after every change since a swap can move the target.
//
// The callback should compare content (the reloader hashes the file),
// because events also arrive for saves that change nothing.
type Watcher struct {
	path     string
	debounce time.Duration
	log      *slog.Logger
	fs       *fsnotify.Watcher
	watched  map[string]bool
	names    map[string]bool // base names whose events matter
}

// maxDebounceWait bounds how long a stream of events can delay delivery.
const maxDebounceWait = 500 * time.Millisecond

// NewWatcher starts watching; events from the moment it returns are seen.
func NewWatcher(path string, debounce time.Duration, log *slog.Logger) (*Watcher, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config watch: %w", err)
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("config watch: %w", err)
	}
	w := &Watcher{path: abs, debounce: debounce, log: log, fs: fw, watched: map[string]bool{}}
	w.refresh()
	if len(w.watched) == 0 {
		fw.Close()
		return nil, fmt.Errorf("config watch: cannot watch %s", filepath.Dir(abs))
	}
	return w, nil
}

// refresh watches the config's directory and, for a symlink, its target's.
func (w *Watcher) refresh() {
	w.names = map[string]bool{filepath.Base(w.path): true, "..data": true}
	dirs := []string{filepath.Dir(w.path)}
	if target, err := filepath.EvalSymlinks(w.path); err == nil && target != w.path {
		w.names[filepath.Base(target)] = true
		dirs = append(dirs, filepath.Dir(target))
	}
	for _, d := range dirs {
		if w.watched[d] {
			continue
		}
		if err := w.fs.Add(d); err != nil {
			w.log.Warn("config watch: cannot watch directory", "dir", d, "err", err)
			continue
		}
		w.watched[d] = true
	}
}

// Run delivers changes to onChange until ctx ends, then stops watching.
func (w *Watcher) Run(ctx context.Context, onChange func()) {
	defer w.fs.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var firstEvent time.Time // of the burst waiting to be delivered; zero when none
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			if !w.names[filepath.Base(ev.Name)] {
				continue
			}
			// Wait for the burst to settle, but never longer than
			// maxDebounceWait in all: a file rewritten more often than the
			// debounce interval must still be read.
			if firstEvent.IsZero() {
				firstEvent = time.Now()
			}
			timer.Reset(min(w.debounce, max(0, time.Until(firstEvent.Add(maxDebounceWait)))))
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			w.log.Warn("config watch error", "err", err)
		case <-timer.C:
			firstEvent = time.Time{}
			w.refresh()
			onChange()
		}
	}
}

// Watch is NewWatcher and Run in one call, for callers that need not know
// when watching began. It returns when ctx ends.
func Watch(ctx context.Context, path string, debounce time.Duration, log *slog.Logger, onChange func()) error {
	w, err := NewWatcher(path, debounce, log)
	if err != nil {
		return err
	}
	w.Run(ctx, onChange)
	return nil
}
