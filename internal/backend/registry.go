// Package backend keeps what belongs to a backend address rather than to
// one config: its connection pool and its counters (and, as they arrive,
// health, outlier and breaker state). A config snapshot leases the backends
// it names from the Registry; a reload that keeps an address leases the
// same *Backend again, so nothing about it is lost. When the last snapshot
// naming an address has finished its in-flight requests and is released,
// the backend's idle connections are closed and its entry dropped.
//
// Connection pools are keyed by address and transport settings: a reload
// that changes a pool's max_conns or timeout gets a fresh fasthttp
// HostClient (its limits cannot change under a running client), while the
// backend's other state carries on.
package backend

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Settings are the transport limits a pool sets for its backends.
type Settings struct {
	MaxConns int
	Timeout  time.Duration // one attempt: dial, write, response headers
}

// Backend is one worker address. Counters are atomic; read them freely.
type Backend struct {
	Addr string

	pending  atomic.Int64
	requests atomic.Uint64
	failures atomic.Uint64
	down     atomic.Bool   // set by whoever knows the worker cannot serve
	pid      atomic.Int64  // of the process the gateway spawned here; 0 if none
	restarts atomic.Uint64 // of spawned processes at this address
	out      outlierState
	health   healthState
	breaker  atomic.Pointer[Breaker]
}

func newBackend(addr string) *Backend { return &Backend{Addr: addr} }

// Pending is the number of requests in flight to this backend.
func (b *Backend) Pending() int64 { return b.pending.Load() }

// Requests is the number of attempts sent since the address was first seen.
func (b *Backend) Requests() uint64 { return b.requests.Load() }

// Failures is the number of attempts that got no usable response.
func (b *Backend) Failures() uint64 { return b.failures.Load() }

// ErrDraining is an attempt that found its backend marked down after
// choosing it: it never left the gateway, and goes to another backend.
var ErrDraining = errors.New("backend went out of rotation")

// Begin marks an attempt as started and reports whether it may go ahead;
// call End with its outcome when it did. It returns false, counting
// nothing, when the backend was marked down since it was chosen. Whoever
// stops a worker marks it down and then waits for Pending to reach zero;
// an attempt counts itself pending and then checks down. Both are
// sequentially consistent atomics, so one of the two always sees the
// other: either the stopper waits for the attempt, or the attempt sees
// the mark and never reaches a worker that is being stopped.
func (b *Backend) Begin() bool {
	b.pending.Add(1)
	if b.down.Load() {
		b.pending.Add(-1)
		return false
	}
	b.requests.Add(1)
	return true
}

// End marks an attempt as finished.
func (b *Backend) End(failed bool) {
	b.pending.Add(-1)
	if failed {
		b.failures.Add(1)
	}
}

// Available reports whether the backend may take traffic: not marked
// down (a spawned worker that is starting, stopping or has exited), not
// failing its health checks and not ejected for failing. (Its breaker,
// whose settings belong to a pool, is the pool member's to check.) The
// usual case costs three atomic loads; the clock is read only while an
// ejection is on record.
func (b *Backend) Available() bool {
	if b.down.Load() || b.health.unhealthy.Load() {
		return false
	}
	return b.out.ejectedUntil.Load() == 0 || !b.Ejected(time.Now())
}

// SetDown marks the backend out of (true) or back in (false) rotation.
// Back in means whoever calls it has just seen the worker answer a health
// probe, so an outlier ejection ends too, as Envoy unejects a host that
// passes an active health check, and an open breaker closes.
func (b *Backend) SetDown(down bool) {
	if !down {
		b.forgetFailures()
	}
	b.down.Store(down)
}

// forgetFailures ends the outlier ejection and closes the breaker of a
// backend a health probe has just seen answer again after failing: what
// they hold against it was the failing worker's doing. (The count of
// ejections in a row stays, so a backend that keeps dying is ejected for
// longer each time.)
func (b *Backend) forgetFailures() {
	b.out.consecutive.Store(0)
	b.out.ejectedUntil.Store(0)
	if br := b.breaker.Load(); br != nil {
		br.Reset()
	}
}

// SpawnedPID is the pid of the process the gateway runs at this address, or 0.
func (b *Backend) SpawnedPID() int64 { return b.pid.Load() }

// SetSpawnedPID records the spawned process at this address (0: none).
func (b *Backend) SetSpawnedPID(pid int64) { b.pid.Store(pid) }

// Restarts counts restarts of spawned processes at this address.
func (b *Backend) Restarts() uint64 { return b.restarts.Load() }

// AddRestart counts one restart.
func (b *Backend) AddRestart() { b.restarts.Add(1) }

type transportKey struct {
	addr     string
	settings Settings
}

type counted[T any] struct {
	v    T
	refs int
}

// Registry hands out backends and their transports by address.
type Registry struct {
	mu         sync.Mutex
	backends   map[string]*counted[*Backend]
	transports map[transportKey]*counted[*Transport]
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		backends:   map[string]*counted[*Backend]{},
		transports: map[transportKey]*counted[*Transport]{},
	}
}

// Lease is what one holder (a snapshot, a spawned replica) has acquired;
// release it once the holder is done.
type Lease struct {
	r     *Registry
	keys  []transportKey
	addrs []string // backends acquired without a transport
}

// Lease starts an empty lease.
func (r *Registry) Lease() *Lease { return &Lease{r: r} }

// Acquire returns the backend for addr and a transport with settings s,
// creating them on first use, and records both in the lease.
func (l *Lease) Acquire(addr string, s Settings) (*Backend, *Transport) {
	r := l.r
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.backendLocked(addr)
	key := transportKey{addr, s}
	t, ok := r.transports[key]
	if !ok {
		t = &counted[*Transport]{v: newTransport(addr, s)}
		r.transports[key] = t
	}
	t.refs++
	l.keys = append(l.keys, key)
	return b, t.v
}

// AcquireBackend returns the backend state for addr without a transport:
// for holders that mark a backend up or down but send it no traffic.
func (l *Lease) AcquireBackend(addr string) *Backend {
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	l.addrs = append(l.addrs, addr)
	return l.r.backendLocked(addr)
}

func (r *Registry) backendLocked(addr string) *Backend {
	b, ok := r.backends[addr]
	if !ok {
		b = &counted[*Backend]{v: newBackend(addr)}
		r.backends[addr] = b
	}
	b.refs++
	return b.v
}

func (r *Registry) releaseBackendLocked(addr string) {
	if b := r.backends[addr]; b != nil {
		if b.refs--; b.refs == 0 {
			delete(r.backends, addr)
		}
	}
}

// CloseIdle closes the idle pooled connections to addr, for when the
// process behind it has exited: they are dead, and the next request must
// not pick one.
func (r *Registry) CloseIdle(addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, t := range r.transports {
		if key.addr == addr {
			t.v.CloseIdleConnections()
		}
	}
}

// Release gives back everything the lease acquired. Backends and
// transports no other lease holds are dropped; their idle connections
// are closed.
func (l *Lease) Release() {
	r := l.r
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, key := range l.keys {
		if t := r.transports[key]; t != nil {
			if t.refs--; t.refs == 0 {
				delete(r.transports, key)
				t.v.CloseIdleConnections()
			}
		}
		r.releaseBackendLocked(key.addr)
	}
	for _, addr := range l.addrs {
		r.releaseBackendLocked(addr)
	}
	l.keys, l.addrs = nil, nil
}

// Len is the number of addresses currently leased; for tests and metrics.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.backends)
}
