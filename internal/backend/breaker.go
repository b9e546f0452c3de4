package backend

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/valyala/fasthttp"
)

// BreakerSettings are a pool's circuit breaker settings (config.Breaker).
type BreakerSettings struct {
	FailureRatio        float64
	MinRequests         uint32
	ConsecutiveFailures uint32
	HalfOpenRequests    uint32
	OpenFor             time.Duration
	Window              time.Duration
}

// Breaker states, as sluice_breaker_state reports them.
const (
	BreakerClosed   = 0
	BreakerHalfOpen = 1
	BreakerOpen     = 2
)

// ErrBreakerOpen is an attempt the breaker refused: it never left the
// gateway.
var ErrBreakerOpen = errors.New("circuit breaker is open")

// ErrServerError is how a 5xx answer reaches the breaker: gobreaker
// counts returned errors only.
var ErrServerError = errors.New("backend answered 5xx")

// Breaker is one backend's circuit breaker, a sony/gobreaker
// CircuitBreaker with its state mirrored in atomics, so that choosing a
// backend never takes the breaker's lock.
type Breaker struct {
	addr     string
	settings BreakerSettings
	// mu guards cb, which Reset replaces (gobreaker cannot be closed from
	// outside); an attempt holds it only to read cb.
	mu        sync.RWMutex
	cb        *gobreaker.CircuitBreaker[struct{}]
	state     atomic.Int32
	openUntil atomic.Int64 // unix nanoseconds, while open
}

func newBreaker(addr string, s BreakerSettings) *Breaker {
	br := &Breaker{addr: addr, settings: s}
	br.cb = br.newCircuit()
	return br
}

// current is the gobreaker attempts go through now.
func (br *Breaker) current() *gobreaker.CircuitBreaker[struct{}] {
	br.mu.RLock()
	defer br.mu.RUnlock()
	return br.cb
}

// Reset closes the breaker with fresh counts, for a backend that has
// visibly come back (its health checks pass again after failing): the
// failures that opened it belong to the worker that died, and waiting out
// open_for would keep a healthy backend out of rotation for nothing.
func (br *Breaker) Reset() {
	br.mu.Lock()
	defer br.mu.Unlock()
	br.cb = br.newCircuit()
	br.state.Store(BreakerClosed)
	br.openUntil.Store(0)
}

// newCircuit builds a gobreaker whose transitions the mirror follows for
// as long as it is br's current one.
func (br *Breaker) newCircuit() *gobreaker.CircuitBreaker[struct{}] {
	s := br.settings
	var cb *gobreaker.CircuitBreaker[struct{}]
	cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         br.addr,
		MaxRequests:  s.HalfOpenRequests,
		Interval:     s.Window,
		BucketPeriod: s.Window / 10,
		Timeout:      s.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= s.ConsecutiveFailures ||
				(c.Requests >= s.MinRequests && float64(c.TotalFailures) >= s.FailureRatio*float64(c.Requests))
		},
		OnStateChange: func(_ string, _, to gobreaker.State) {
			// Called under the breaker's lock, so the mirror follows
			// the transitions in order; br.mu keeps a Reset from
			// slipping between the check and the stores.
			br.mu.RLock()
			defer br.mu.RUnlock()
			if br.cb != cb {
				return // replaced by Reset: an attempt that outlived it
			}
			if to == gobreaker.StateOpen {
				br.openUntil.Store(time.Now().Add(s.OpenFor).UnixNano())
			}
			br.state.Store(int32(to))
		},
		// Every connection busy is the gateway's own limit, and an
		// attempt stopped by a drain never reached the backend: neither
		// says the backend is failing.
		IsExcluded: func(err error) bool {
			return errors.Is(err, fasthttp.ErrNoFreeConns) || err == ErrDraining
		},
	})
	return cb
}

// Do runs one attempt through the breaker: attempt returns the
// transport's error, or ErrServerError for a 5xx answer. Do returns
// ErrBreakerOpen when the breaker refused the attempt (open, or half-open
// with its probes out), else what attempt returned.
func (br *Breaker) Do(attempt func() error) error {
	_, err := br.current().Execute(func() (struct{}, error) { return struct{}{}, attempt() })
	if err == gobreaker.ErrOpenState || err == gobreaker.ErrTooManyRequests {
		return ErrBreakerOpen
	}
	return err
}

// Allowing reports whether the breaker may let an attempt through: closed,
// half-open, or open with open_for over (the next attempt turns it
// half-open). The usual case is one atomic load; the clock is read only
// while the breaker is open.
func (br *Breaker) Allowing() bool {
	return br.state.Load() != BreakerOpen || time.Now().UnixNano() >= br.openUntil.Load()
}

// OpenUntil is when an open breaker lets probes through, or the zero time
// when it is not open.
func (br *Breaker) OpenUntil() time.Time {
	if br.state.Load() != BreakerOpen {
		return time.Time{}
	}
	return time.Unix(0, br.openUntil.Load())
}

// State is the breaker's state now (BreakerClosed, BreakerHalfOpen or
// BreakerOpen); an open breaker whose time is up reads half-open.
func (br *Breaker) State() int {
	// Not under br.mu: State may run OnStateChange, which takes it.
	return int(br.current().State())
}

// StateName is State as /admin/pools writes it.
func (br *Breaker) StateName() string {
	switch br.State() {
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half_open"
	}
	return "closed"
}

// BreakerFor returns the backend's breaker for these settings. A reload that
// keeps the settings keeps the breaker and its state; changed settings
// start a closed one (gobreaker's settings are fixed at creation).
func (b *Backend) BreakerFor(s BreakerSettings) *Breaker {
	for {
		cur := b.breaker.Load()
		if cur != nil && cur.settings == s {
			return cur
		}
		if next := newBreaker(b.Addr, s); b.breaker.CompareAndSwap(cur, next) {
			return next
		}
	}
}
