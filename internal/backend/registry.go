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
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
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
}

// Pending is the number of requests in flight to this backend.
func (b *Backend) Pending() int64 { return b.pending.Load() }

// Requests is the number of attempts sent since the address was first seen.
func (b *Backend) Requests() uint64 { return b.requests.Load() }

// Failures is the number of attempts that got no usable response.
func (b *Backend) Failures() uint64 { return b.failures.Load() }

// Begin marks an attempt as started; call End with its outcome.
func (b *Backend) Begin() {
	b.pending.Add(1)
	b.requests.Add(1)
}

// End marks an attempt as finished.
func (b *Backend) End(failed bool) {
	b.pending.Add(-1)
	if failed {
		b.failures.Add(1)
	}
}

// Available reports whether the backend may take traffic. Every backend
// is available until health checks and breakers have a say.
func (b *Backend) Available() bool { return true }

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
	transports map[transportKey]*counted[*fasthttp.HostClient]
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		backends:   map[string]*counted[*Backend]{},
		transports: map[transportKey]*counted[*fasthttp.HostClient]{},
	}
}

// Lease is what one snapshot holds: release it once that snapshot has
// no requests in flight.
type Lease struct {
	r    *Registry
	keys []transportKey
}

// Lease starts an empty lease.
func (r *Registry) Lease() *Lease { return &Lease{r: r} }

// Acquire returns the backend for addr and a transport with settings s,
// creating them on first use, and records both in the lease.
func (l *Lease) Acquire(addr string, s Settings) (*Backend, *fasthttp.HostClient) {
	r := l.r
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.backends[addr]
	if !ok {
		b = &counted[*Backend]{v: &Backend{Addr: addr}}
		r.backends[addr] = b
	}
	b.refs++
	key := transportKey{addr, s}
	t, ok := r.transports[key]
	if !ok {
		t = &counted[*fasthttp.HostClient]{v: newHostClient(addr, s)}
		r.transports[key] = t
	}
	t.refs++
	l.keys = append(l.keys, key)
	return b.v, t.v
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
		if b := r.backends[key.addr]; b != nil {
			if b.refs--; b.refs == 0 {
				delete(r.backends, key.addr)
			}
		}
	}
	l.keys = nil
}

// Len is the number of addresses currently leased; for tests and metrics.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.backends)
}

// newHostClient builds the transport for one backend. It is deliberately
// dumb: one attempt per call (retries are the gateway's decision, and
// fasthttp's own would multiply timeouts), explicit limits, response
// header names normalised (so hop-by-hop removal matches any case), paths
// passed through as the gateway rewrote them, and response bodies streamed so
// that server-sent events and long chunked answers reach the client as
// they arrive.
func newHostClient(addr string, s Settings) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:                          addr,
		NoDefaultUserAgentHeader:      true,
		MaxConns:                      s.MaxConns,
		MaxConnWaitTimeout:            s.Timeout,
		MaxIdleConnDuration:           30 * time.Second,
		MaxIdemponentCallAttempts:     1,
		RetryIfErr:                    func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		ReadTimeout:                   s.Timeout,
		WriteTimeout:                  s.Timeout,
		ReadBufferSize:                16 << 10,
		DisableHeaderNamesNormalizing: false,
		DisablePathNormalizing:        true,
		StreamResponseBody:            true,
	}
}
