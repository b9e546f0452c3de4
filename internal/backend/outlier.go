package backend

import (
	"sync/atomic"
	"time"
)

// Outlier settings a pool applies to its backends (config.Outlier).
type Outlier struct {
	ConsecutiveFailures int
	EjectFor            time.Duration
	MaxEjectFor         time.Duration
}

// outlierState is a backend's passive ejection record, after Envoy's
// outlier detection: consecutive failed attempts, how many ejections in a
// row it has had, and until when the current one lasts. It lives with the
// backend, so a reload that keeps the address keeps it.
type outlierState struct {
	consecutive  atomic.Int64
	ejections    atomic.Int64 // in a row; the next ejection lasts this many times eject_for, plus one
	ejectedUntil atomic.Int64 // unix nanoseconds; 0 when not ejected
}

// Ejected reports whether the backend is ejected at now.
func (b *Backend) Ejected(now time.Time) bool {
	until := b.out.ejectedUntil.Load()
	return until != 0 && now.UnixNano() < until
}

// EjectedUntil is when the current ejection ends, or the zero time when the
// backend is not ejected.
func (b *Backend) EjectedUntil() time.Time {
	until := b.out.ejectedUntil.Load()
	if until == 0 || time.Now().UnixNano() >= until {
		return time.Time{}
	}
	return time.Unix(0, until)
}

// Ejections is the number of ejections in a row so far.
func (b *Backend) Ejections() int64 { return b.out.ejections.Load() }

// ConsecutiveFailures is the current run of failed attempts.
func (b *Backend) ConsecutiveFailures() int64 { return b.out.consecutive.Load() }

// Observe records the outcome of one attempt under the pool's outlier
// settings. When the run of failures reaches the threshold and mayEject
// agrees (the pool's max_ejected_percent), the backend is ejected and
// Observe returns true. A success ends the run; one that comes eject_for
// after the last ejection ended also forgets the earlier ejections.
func (b *Backend) Observe(failed bool, o Outlier, now time.Time, mayEject func() bool) bool {
	s := &b.out
	if !failed {
		// Load first: a store on every success would bounce the cache
		// line between cores for a backend that never fails.
		if s.consecutive.Load() != 0 {
			s.consecutive.Store(0)
		}
		if until := s.ejectedUntil.Load(); until != 0 && now.UnixNano()-until >= int64(o.EjectFor) {
			s.ejections.Store(0)
			s.ejectedUntil.Store(0)
		}
		return false
	}
	if s.consecutive.Add(1) < int64(o.ConsecutiveFailures) || b.Ejected(now) || !mayEject() {
		return false
	}
	// Several attempts may cross the threshold together; one ejects.
	n := s.consecutive.Load()
	if !s.consecutive.CompareAndSwap(n, 0) {
		return false
	}
	k := s.ejections.Add(1)
	d := min(time.Duration(k)*o.EjectFor, o.MaxEjectFor)
	s.ejectedUntil.Store(now.Add(d).UnixNano())
	return true
}
