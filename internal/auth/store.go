package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/limits"
)

// Store keeps the keys files and JWT key files the routes use. Each file
// is read once, parsed, and watched: a change applies within a second,
// without a config reload, and a file that no longer parses keeps serving
// what it had (the error is logged, counted and shown by the admin API).
// The Store outlives config snapshots; a snapshot holds handles into it.
type Store struct {
	log    *slog.Logger
	loaded func(ok bool) // counts each load, for the metrics

	mu    sync.Mutex
	files map[string]*watched // by kind and path (and jwt settings)
}

// NewStore returns an empty store; loaded is called after every load of
// a file with whether it parsed.
func NewStore(log *slog.Logger, loaded func(ok bool)) *Store {
	return &Store{log: log, loaded: loaded, files: map[string]*watched{}}
}

// watched is one file and what was last built from it.
type watched struct {
	id    string
	kind  string // "keys" or "jwt"
	path  string // absolute
	build func(data []byte, prev any) (any, error)
	stop  context.CancelFunc

	current atomic.Pointer[built]

	mu      sync.Mutex
	lastErr string
	errAt   time.Time
}

type built struct {
	value    any
	sum      string
	loadedAt time.Time
}

// Keys is what a keys file holds now, with each key's rate limiter. The
// limiters outlive reloads of the file: a key whose limit did not change
// keeps its bucket.
type Keys struct {
	Set      *KeySet
	limiters map[*Key]*limits.Local
}

// Limiter is the key's own rate limiter; nil when it has none.
func (k *Keys) Limiter(key *Key) *limits.Local { return k.limiters[key] }

// KeysHandle reads a keys file's current keys.
type KeysHandle struct{ w *watched }

// Current is the keys in force now; nil when the file has never loaded
// (then every request is refused).
func (h KeysHandle) Current() *Keys {
	if b := h.w.current.Load(); b != nil {
		return b.value.(*Keys)
	}
	return nil
}

// JWTHandle reads the verifier built from a jwt block's key file now.
type JWTHandle struct {
	w     *watched  // nil for a secret, which has no file
	fixed *Verifier // the secret's verifier
}

// Current is the verifier in force now; nil when its file has never
// loaded.
func (h JWTHandle) Current() *Verifier {
	if h.w == nil {
		return h.fixed
	}
	if b := h.w.current.Load(); b != nil {
		return b.value.(*Verifier)
	}
	return nil
}

// Check reads and parses every file an auth block names, without keeping
// anything: a config whose files are missing or broken is refused before
// it is applied.
func Check(a *config.Auth) error {
	if a == nil {
		return nil
	}
	if k := a.APIKeys; k != nil {
		data, err := os.ReadFile(k.KeysFile)
		if err != nil {
			return fmt.Errorf("api_keys.keys_file: %w", err)
		}
		if _, err := ParseKeys(data); err != nil {
			return fmt.Errorf("api_keys.keys_file %s: %w", k.KeysFile, err)
		}
	}
	if j := a.JWT; j != nil {
		data, err := storeKeyData(j)
		if err != nil {
			return err
		}
		if _, err := NewVerifier(j, data); err != nil {
			return fmt.Errorf("jwt: %w", err)
		}
	}
	return nil
}

func storeKeyData(j *config.JWT) ([]byte, error) {
	path := j.JWKSFile
	if path == "" {
		path = j.KeyFile
	}
	if path == "" {
		return nil, nil // a secret
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwt: %w", err)
	}
	return data, nil
}

// Keys returns the handle of a keys file, loading and watching it the
// first time it is asked for.
func (s *Store) Keys(path string) KeysHandle {
	return KeysHandle{s.watch("keys", path, "", func(data []byte, prev any) (any, error) {
		set, err := ParseKeys(data)
		if err != nil {
			return nil, err
		}
		old, _ := prev.(*Keys)
		return withLimiters(set, old), nil
	})}
}

// JWT returns the handle of a jwt block's keys. Blocks that share a file
// but differ in issuer, audience or claims get verifiers of their own.
func (s *Store) JWT(j *config.JWT) JWTHandle {
	if j.Secret != "" {
		v, err := NewVerifier(j, nil)
		if err != nil { // validated and checked before compiling
			s.log.Error("jwt secret refused", "err", err)
		}
		return JWTHandle{fixed: v}
	}
	path := j.JWKSFile
	if path == "" {
		path = j.KeyFile
	}
	settings, _ := json.Marshal(j) // the secret is not marshalled, and there is none here
	return JWTHandle{w: s.watch("jwt", path, string(settings), func(data []byte, _ any) (any, error) {
		return NewVerifier(j, data)
	})}
}

// watch finds or starts the watched file for (kind, path, variant).
func (s *Store) watch(kind, path, variant string, build func([]byte, any) (any, error)) *watched {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	id := kind + "\x00" + abs + "\x00" + variant
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.files[id]; w != nil {
		return w
	}
	w := &watched{id: id, kind: kind, path: abs, build: build}
	s.load(w)
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	if fw, err := config.NewWatcher(abs, fileDebounce, s.log); err != nil {
		s.log.Error("auth file is not watched: changes apply on the next config reload only", "file", abs, "err", err)
	} else {
		go fw.Run(ctx, func() { s.load(w) })
	}
	s.files[id] = w
	return w
}

// fileDebounce lets an editor finish saving before the file is read.
const fileDebounce = 100 * time.Millisecond

// load reads and builds the file, swapping the result in when it parsed.
func (s *Store) load(w *watched) {
	data, err := os.ReadFile(w.path)
	sum := ""
	if err == nil {
		h := sha256.Sum256(data)
		sum = hex.EncodeToString(h[:])
		if cur := w.current.Load(); cur != nil && cur.sum == sum {
			return // saved without change
		}
		var prev any
		if cur := w.current.Load(); cur != nil {
			prev = cur.value
		}
		var v any
		if v, err = w.build(data, prev); err == nil {
			w.current.Store(&built{value: v, sum: sum, loadedAt: time.Now()})
			w.mu.Lock()
			w.lastErr, w.errAt = "", time.Time{}
			w.mu.Unlock()
			s.loaded(true)
			s.log.Info("auth file loaded", "kind", w.kind, "file", w.path, "sha256", sum[:12])
			return
		}
	}
	w.mu.Lock()
	w.lastErr, w.errAt = err.Error(), time.Now()
	w.mu.Unlock()
	s.loaded(false)
	s.log.Error("auth file refused; the keys it had stay in force", "kind", w.kind, "file", w.path, "err", err)
}

// withLimiters pairs a parsed key set with rate limiters, keeping the
// previous set's limiter for a key whose name and limit are unchanged.
func withLimiters(set *KeySet, prev *Keys) *Keys {
	k := &Keys{Set: set, limiters: map[*Key]*limits.Local{}}
	type limit struct {
		name      string
		perSecond float64
		burst     int
	}
	old := map[limit]*limits.Local{}
	if prev != nil {
		for key, l := range prev.limiters {
			old[limit{key.Name, key.PerSecond, key.Burst}] = l
		}
	}
	for _, key := range set.Keys() {
		if key.PerSecond <= 0 {
			continue
		}
		l := old[limit{key.Name, key.PerSecond, key.Burst}]
		if l == nil {
			l = limits.NewLocal(key.PerSecond, key.Burst, 1)
		}
		k.limiters[key] = l
	}
	return k
}

// Retain stops watching the files no handle in keep uses.
func (s *Store) Retain(keep []any) {
	used := map[*watched]bool{}
	for _, h := range keep {
		switch h := h.(type) {
		case KeysHandle:
			used[h.w] = true
		case JWTHandle:
			if h.w != nil {
				used[h.w] = true
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, w := range s.files {
		if !used[w] {
			w.stop()
			delete(s.files, id)
		}
	}
}

// Close stops every watch.
func (s *Store) Close() { s.Retain(nil) }

// FileStatus describes one watched file for the admin API: never a key,
// a hash or a secret.
type FileStatus struct {
	Kind      string      `json:"kind"`
	Path      string      `json:"path"`
	SHA256    string      `json:"sha256,omitempty"` // of the file, to tell versions apart
	LoadedAt  *time.Time  `json:"loaded_at,omitempty"`
	LastError string      `json:"last_error,omitempty"`
	ErrorAt   *time.Time  `json:"error_at,omitempty"`
	Keys      []KeyStatus `json:"keys,omitempty"`
	JWTKeys   int         `json:"jwt_keys,omitempty"`
}

// KeyStatus is one API key as the admin API shows it.
type KeyStatus struct {
	Name      string   `json:"name"`
	Routes    []string `json:"routes,omitempty"`
	Tags      []string `json:"tags,omitempty"`
	PerSecond float64  `json:"rate_per_second,omitempty"`
	Burst     int      `json:"burst,omitempty"`
	Limited   int64    `json:"limited,omitempty"`
}

// Status lists the watched files, sorted by path.
func (s *Store) Status() []FileStatus {
	s.mu.Lock()
	files := make([]*watched, 0, len(s.files))
	for _, w := range s.files {
		files = append(files, w)
	}
	s.mu.Unlock()
	sort.Slice(files, func(i, j int) bool { return files[i].id < files[j].id })
	out := make([]FileStatus, 0, len(files))
	for _, w := range files {
		st := FileStatus{Kind: w.kind, Path: w.path}
		w.mu.Lock()
		if w.lastErr != "" {
			at := w.errAt
			st.LastError, st.ErrorAt = w.lastErr, &at
		}
		w.mu.Unlock()
		if b := w.current.Load(); b != nil {
			at := b.loadedAt
			st.SHA256, st.LoadedAt = b.sum, &at
			switch v := b.value.(type) {
			case *Keys:
				for _, k := range v.Set.Keys() {
					ks := KeyStatus{Name: k.Name, Routes: k.Routes, Tags: k.Tags, PerSecond: k.PerSecond, Burst: k.Burst}
					if l := v.limiters[k]; l != nil {
						ks.Limited = l.Stats().Limited
					}
					st.Keys = append(st.Keys, ks)
				}
			case *Verifier:
				st.JWTKeys = v.Keys()
			}
		}
		out = append(out, st)
	}
	return out
}
