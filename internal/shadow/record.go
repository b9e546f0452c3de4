package shadow

// The recorder keeps sampled mismatching pairs for offline study
// (shadow.record in the config): one JSON line per pair, appended to a
// file. It must never grow without bound nor slow the gateway down, so it
// writes at most perSecond records a second (the rest are not written) and
// keeps the file and its one predecessor under maxBytes together:
//
//	FILE   the current file, at most maxBytes/2
//	FILE.1 the previous one, at most maxBytes/2, replaced at each rotation
//
// A record that would take FILE past maxBytes/2 first renames FILE to
// FILE.1; a record larger than maxBytes/2 on its own is skipped.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// MaxRecordDiffs is the number of field differences a record keeps; the
// rest are counted in more_diffs.
const MaxRecordDiffs = 100

// Record is one mismatching pair to write. Write encodes it before it
// returns and keeps nothing, so its slices may be the caller's own buffers.
type Record struct {
	Time                          time.Time
	Route, Variant                string
	PrimaryPool, ShadowPool       string
	Outcome                       Outcome
	RequestID, Method, URI        string
	RequestBody                   []byte
	PrimaryStatus, ShadowStatus   int
	PrimaryLatency, ShadowLatency time.Duration
	PrimaryBody, ShadowBody       []byte
	Diffs                         []FieldDiff
}

// Record is the Record of a pair that variant answered, as counted by
// Pair (o is its Recorded.Outcome), stamped now. It refers to p's slices
// without copying them.
func (rt *Route) Record(variant int, p *Pair, o Outcome) Record {
	var info VariantInfo
	if variant >= 0 && variant < len(rt.id.Variants) {
		info = rt.id.Variants[variant]
	}
	return Record{
		Time:           rt.now().UTC(),
		Route:          rt.name,
		Variant:        info.Name,
		PrimaryPool:    info.Pool,
		ShadowPool:     rt.id.Pool,
		Outcome:        o,
		RequestID:      p.RequestID,
		Method:         p.Method,
		URI:            p.URI,
		RequestBody:    p.RequestBody,
		PrimaryStatus:  p.PrimaryStatus,
		ShadowStatus:   p.ShadowStatus,
		PrimaryLatency: p.PrimaryLatency,
		ShadowLatency:  p.ShadowLatency,
		PrimaryBody:    p.PrimaryBody,
		ShadowBody:     p.ShadowBody,
		Diffs:          p.Result.Diffs,
	}
}

// The JSON line of a Record.
type recordLine struct {
	Time        time.Time     `json:"time"`
	Route       string        `json:"route"`
	Variant     string        `json:"variant"`
	PrimaryPool string        `json:"primary_pool"`
	ShadowPool  string        `json:"shadow_pool"`
	Outcome     string        `json:"outcome"`
	Request     recordRequest `json:"request"`
	Primary     recordAnswer  `json:"primary"`
	Shadow      recordAnswer  `json:"shadow"`
	Diffs       []FieldDiff   `json:"diffs"`
	MoreDiffs   int           `json:"more_diffs,omitempty"`
}

type recordRequest struct {
	ID     string `json:"id"`
	Method string `json:"method"`
	URI    string `json:"uri"`
	Body   any    `json:"body"`
}

type recordAnswer struct {
	Status    int     `json:"status"`
	LatencyMS float64 `json:"latency_ms"`
	Body      any     `json:"body"`
}

// bodyValue embeds a body that is JSON as JSON, any other as a string.
func bodyValue(b []byte) any {
	if len(b) > 0 && json.Valid(b) {
		return json.RawMessage(b)
	}
	return string(b)
}

func (rec *Record) line() recordLine {
	l := recordLine{
		Time:        rec.Time,
		Route:       rec.Route,
		Variant:     rec.Variant,
		PrimaryPool: rec.PrimaryPool,
		ShadowPool:  rec.ShadowPool,
		Outcome:     rec.Outcome.String(),
		Request:     recordRequest{ID: rec.RequestID, Method: rec.Method, URI: rec.URI, Body: bodyValue(rec.RequestBody)},
		Primary:     recordAnswer{Status: rec.PrimaryStatus, LatencyMS: millis(rec.PrimaryLatency), Body: bodyValue(rec.PrimaryBody)},
		Shadow:      recordAnswer{Status: rec.ShadowStatus, LatencyMS: millis(rec.ShadowLatency), Body: bodyValue(rec.ShadowBody)},
		Diffs:       rec.Diffs,
	}
	if len(l.Diffs) > MaxRecordDiffs {
		l.MoreDiffs = len(l.Diffs) - MaxRecordDiffs
		l.Diffs = l.Diffs[:MaxRecordDiffs]
	}
	if l.Diffs == nil {
		l.Diffs = []FieldDiff{}
	}
	return l
}

// Recorder appends records to a size-capped, rate-limited JSON-lines file;
// safe for concurrent use.
type Recorder struct {
	path      string
	maxBytes  int64
	perSecond float64
	limiter   *rate.Limiter

	mu     sync.Mutex
	file   *os.File // nil after a failed rotation (reopened by the next Write) or Close
	size   int64    // bytes in file
	closed bool
}

// NewRecorder opens (creating it 0640, appending to it) the record file.
// Its directory must exist. maxBytes caps the file and its predecessor
// FILE.1 together; either one left over larger than maxBytes/2 (written
// under a larger cap) is removed. perSecond records a second are written
// at most, in bursts of max(1, perSecond); +Inf is no limit.
func NewRecorder(file string, maxBytes int64, perSecond float64) (*Recorder, error) {
	if file == "" {
		return nil, errors.New("shadow record file: no path")
	}
	if maxBytes <= 0 {
		return nil, fmt.Errorf("shadow record file %s: max_bytes %d must be positive", file, maxBytes)
	}
	if !(perSecond > 0) { // NaN too
		return nil, fmt.Errorf("shadow record file %s: %v records per second must be positive", file, perSecond)
	}
	dir := filepath.Dir(file)
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("shadow record file %s: directory %s: %w", file, dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("shadow record file %s: %s is not a directory", file, dir)
	}
	limit, burst := rate.Limit(perSecond), int(min(math.Max(1, perSecond), math.MaxInt32))
	if math.IsInf(perSecond, 1) {
		limit, burst = rate.Inf, 1
	}
	r := &Recorder{path: file, maxBytes: maxBytes, perSecond: perSecond, limiter: rate.NewLimiter(limit, burst)}
	for _, p := range []string{file + ".1", file} {
		if fi, err := os.Stat(p); err == nil && fi.Size() > r.half() {
			if err := os.Remove(p); err != nil {
				return nil, fmt.Errorf("shadow record file %s: over the size cap and cannot be removed: %w", p, err)
			}
		}
	}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

// Path of the current file.
func (r *Recorder) Path() string { return r.path }

// half is what each of the two files may hold.
func (r *Recorder) half() int64 { return r.maxBytes / 2 }

// Write appends one record: false when rate-limited, when the record alone
// is over maxBytes/2, after Close, or on a file error.
func (r *Recorder) Write(rec Record) bool {
	if !r.limiter.Allow() {
		return false
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // a file for people and scripts, not a page
	if err := enc.Encode(rec.line()); err != nil {
		return false
	}
	n := int64(buf.Len()) // Encode ends the line with "\n"
	if n > r.half() {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if r.file == nil {
		if err := r.open(); err != nil {
			return false
		}
	}
	if r.size+n > r.half() {
		if err := r.rotate(); err != nil {
			return false
		}
	}
	written, err := r.file.Write(buf.Bytes())
	r.size += int64(written)
	return err == nil
}

// open opens the file for appending. Called with r.mu held (or before r
// is shared).
func (r *Recorder) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("shadow record file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("shadow record file: %w", err)
	}
	r.file, r.size = f, fi.Size()
	return nil
}

// rotate renames the file to FILE.1, replacing the previous one, and
// starts a new one. Called with r.mu held. When the rename fails, the
// current file stays (and the record is not written, keeping the cap);
// when the new file cannot be created, the next Write tries again.
func (r *Recorder) rotate() error {
	if err := os.Rename(r.path, r.path+".1"); err != nil {
		return fmt.Errorf("shadow record file: rotate: %w", err)
	}
	old := r.file
	r.file = nil
	old.Close() // written through already; nothing is lost by a failed close
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("shadow record file: rotate: %w", err)
	}
	r.file, r.size = f, 0
	return nil
}

// Close closes the file; later Writes return false. Closing twice is a
// no-op.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.file == nil {
		return nil
	}
	err := r.file.Close()
	r.file = nil
	return err
}

// Recorder returns the recorder of a route, opening it: the route's open
// recorder when file, maxBytes and perSecond are the same (a reload keeps
// it), else a new one, the replaced one closed first. file "" closes the
// route's recorder and returns nil: the route records nothing. Two routes
// cannot record to the same file.
func (r *Registry) Recorder(route, file string, maxBytes int64, perSecond float64) (*Recorder, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.recorders[route]
	if cur != nil && file != "" && cur.path == file && cur.maxBytes == maxBytes && cur.perSecond == perSecond {
		return cur, nil
	}
	if file != "" {
		for other, rec := range r.recorders {
			if other != route && samePath(rec.path, file) {
				return nil, fmt.Errorf("shadow record file %s: already recorded to by route %q", file, other)
			}
		}
	}
	if cur != nil {
		_ = cur.Close() // its writes went through; a failed close loses nothing
		delete(r.recorders, route)
	}
	if file == "" {
		return nil, nil
	}
	rec, err := NewRecorder(file, maxBytes, perSecond)
	if err != nil {
		return nil, err
	}
	r.recorders[route] = rec
	return rec, nil
}

// samePath reports whether two paths name the same file name (links are
// not followed).
func samePath(a, b string) bool {
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	if errA != nil || errB != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return absA == absB
}

// Close closes every recorder (at shutdown).
func (r *Registry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for route, rec := range r.recorders {
		if err := rec.Close(); err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", route, err))
		}
		delete(r.recorders, route)
	}
	return errors.Join(errs...)
}
