// Package spawn runs the worker processes of pools that have a spawn
// block: it starts the replicas, restarts them when they exit, swaps them
// when their command changes and stops them on shutdown.
//
// Each replica is one process at one address, driven by its own loop:
//
//	start ──> starting ──/health 200──> ready ──exit──> backoff ──> start
//	              │                        │
//	              └──────── stop ──────────┴──> draining ──> SIGTERM ──> (SIGKILL) ──> gone
//
// While starting, backing off or draining, the replica's backend is marked
// down, so routing skips it; it is marked up only once it answers /health.
// The backoff doubles after each quick exit (250ms up to 10s) and starts
// over once a replica has run for a minute.
//
// A pool's membership (the addresses its snapshot routes to) is the list
// of its live replicas. Reconcile changes it synchronously where it can
// (new pools, more replicas, fewer replicas) so that the snapshot compiled
// right after sees it; a changed command is rolled out in the background,
// one replica at a time, and every membership change is announced through
// the changed callback. During a rollout, a new replica is started on a
// spare address and must answer /health before the old one is drained and
// stopped, so the pool never goes empty; with no spare address (as many
// backends as replicas), the old one is stopped first.
package spawn

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/backend"
	"github.com/sluice-gw/sluice/internal/config"
)

// Restart backoff: doubling from initialBackoff to maxBackoff, reset once a
// replica has stayed up for stableAfter.
const (
	initialBackoff = 250 * time.Millisecond
	maxBackoff     = 10 * time.Second
	stableAfter    = time.Minute
	healthInterval = 100 * time.Millisecond
	healthPath     = "/health"
	// maxDrain bounds how long a replica being stopped waits for the
	// requests still running on it.
	maxDrain = 30 * time.Second
)

// Supervisor runs the replicas of every spawned pool.
type Supervisor struct {
	log      *slog.Logger
	out      *lineWriter
	registry *backend.Registry
	restarts func(pool string)
	changed  func()

	mu     sync.Mutex
	pools  map[string]*pool
	used   map[string]bool // addresses held by a replica of any pool
	closed bool
	wg     sync.WaitGroup
}

// New returns a supervisor. Replica output goes to out, each line prefixed
// with its pool and address; restarts is called for every restart (for the
// metric); changed is called, from a goroutine of its own, whenever a
// pool's membership changes outside Reconcile.
func New(log *slog.Logger, out io.Writer, reg *backend.Registry, restarts func(pool string), changed func()) *Supervisor {
	return &Supervisor{
		log: log, out: &lineWriter{w: out}, registry: reg, restarts: restarts, changed: changed,
		pools: map[string]*pool{}, used: map[string]bool{},
	}
}

// pool is one spawned pool's desired spec and live replicas.
type pool struct {
	name    string
	spec    spec
	members []*replica
	cancel  context.CancelFunc // of the rollout in progress, if any
}

// spec is what a pool's spawn block asks for, in comparable form.
type spec struct {
	command      []string
	replicas     int
	ports        string
	backends     []config.Backend
	startTimeout time.Duration
	stopTimeout  time.Duration
}

func specOf(pc *config.Pool) spec {
	sp := pc.Spawn
	return spec{command: sp.Command, replicas: sp.Replicas, ports: sp.Ports, backends: pc.Backends,
		startTimeout: sp.StartTimeout.D(), stopTimeout: sp.StopTimeout.D()}
}

// sameProcess reports whether replicas started under a and b are the same:
// what a rollout compares.
func (a spec) sameProcess(b spec) bool {
	return slices.Equal(a.command, b.command) && a.startTimeout == b.startTimeout && a.stopTimeout == b.stopTimeout
}

// Reconcile brings the running replicas in line with cfg. New pools and
// added replicas start now (they take traffic once healthy); removed ones
// leave the membership now and are drained and stopped in the background;
// a changed command is rolled out in the background.
func (s *Supervisor) Reconcile(cfg *config.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for name, p := range s.pools {
		if pc := cfg.Pools[name]; pc == nil || pc.Spawn == nil {
			s.log.Info("spawned pool removed; stopping its replicas", "pool", name)
			p.stopRollout()
			for _, r := range p.members {
				s.retire(r)
			}
			delete(s.pools, name)
		}
	}
	for _, name := range sortedNames(cfg.Pools) {
		pc := cfg.Pools[name]
		if pc.Spawn == nil {
			continue
		}
		want := specOf(pc)
		p := s.pools[name]
		if p == nil {
			p = &pool{name: name, spec: want}
			s.pools[name] = p
			s.resize(p)
			continue
		}
		old := p.spec
		p.spec = want
		// Replicas on addresses the new spec no longer offers must move.
		moved := slices.ContainsFunc(p.members, func(r *replica) bool { return !s.offers(p, r.addr) })
		if !old.sameProcess(want) || moved {
			s.startRollout(p)
		}
		s.resize(p)
	}
}

// resize starts or retires replicas until the pool has as many as it wants.
// Called with s.mu held.
func (s *Supervisor) resize(p *pool) {
	for len(p.members) < p.spec.replicas {
		addr := s.freeAddr(p)
		if addr == "" {
			s.log.Error("no free address for a replica", "pool", p.name, "ports", p.spec.ports)
			return
		}
		p.members = append(p.members, s.start(p, addr))
	}
	for len(p.members) > p.spec.replicas {
		r := p.members[len(p.members)-1]
		p.members = p.members[:len(p.members)-1]
		s.retire(r)
	}
}

// Backends returns the addresses a pool routes to: its live replicas for a
// spawned pool, the configured backends otherwise.
func (s *Supervisor) Backends(name string, pc *config.Pool) []config.Backend {
	if pc.Spawn == nil {
		return pc.Backends
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pools[name]
	if p == nil {
		return nil
	}
	out := make([]config.Backend, 0, len(p.members))
	for _, r := range p.members {
		out = append(out, config.Backend{Addr: r.addr, Weight: weightOf(p.spec.backends, r.addr)})
	}
	return out
}

func weightOf(backends []config.Backend, addr string) int {
	for _, b := range backends {
		if b.Addr == addr {
			return b.Weight
		}
	}
	return 1
}

// Stop stops every replica (SIGTERM, then SIGKILL after its stop_timeout)
// and waits for them, or for ctx to end.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for _, p := range s.pools {
		p.stopRollout()
		for _, r := range p.members {
			r.requestStop()
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopping spawned workers: %w", ctx.Err())
	}
}

// start launches a replica's loop at addr. Called with s.mu held.
func (s *Supervisor) start(p *pool, addr string) *replica {
	lease := s.registry.Lease()
	r := &replica{
		pool: p.name, addr: addr, spec: p.spec, argv: expand(p.spec.command, addr),
		backend: lease.AcquireBackend(addr), lease: lease,
		ready: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
	}
	r.backend.SetDown(true)
	s.used[addr] = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run(r)
	}()
	return r
}

// retire takes a replica out of rotation and stops it once the requests
// still running on it have finished. Called with s.mu held, after r has
// left its pool's members.
func (s *Supervisor) retire(r *replica) {
	r.backend.SetDown(true)
	r.requestStop()
}

// offers reports whether addr is one the pool's spec lets replicas use.
func (s *Supervisor) offers(p *pool, addr string) bool {
	if p.spec.ports == "" {
		return slices.ContainsFunc(p.spec.backends, func(b config.Backend) bool { return b.Addr == addr })
	}
	lo, hi, err := config.ParsePortRange(p.spec.ports)
	host, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return err == nil && host == "127.0.0.1" && n >= lo && n <= hi
}

// freeAddr finds an address the pool may use that no replica holds: the
// next unused backend address, or a port of the range that can be bound.
// Called with s.mu held.
func (s *Supervisor) freeAddr(p *pool) string {
	if p.spec.ports == "" {
		for _, b := range p.spec.backends {
			if !s.used[b.Addr] {
				return b.Addr
			}
		}
		return ""
	}
	lo, hi, err := config.ParsePortRange(p.spec.ports)
	if err != nil {
		return ""
	}
	for port := lo; port <= hi; port++ {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if s.used[addr] {
			continue
		}
		// Something else may hold the port: a worker started by hand, or
		// one this gateway left behind when it was killed.
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	return ""
}

// announce tells the gateway the membership changed, without holding s.mu.
func (s *Supervisor) announce() {
	if s.changed != nil {
		go s.changed()
	}
}

func (p *pool) stopRollout() {
	if p.cancel != nil {
		p.cancel()
		p.cancel = nil
	}
}

// startRollout replaces, one at a time, every replica whose process or
// address the spec no longer matches. A rollout already running for the
// pool is cancelled: this one covers what it had left. Called with s.mu held.
func (s *Supervisor) startRollout(p *pool) {
	p.stopRollout()
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for s.replaceOne(ctx, p) {
		}
	}()
}

// replaceOne swaps one outdated replica for a new one and reports whether
// there may be more to do.
func (s *Supervisor) replaceOne(ctx context.Context, p *pool) bool {
	s.mu.Lock()
	if ctx.Err() != nil || s.closed {
		s.mu.Unlock()
		return false
	}
	i := slices.IndexFunc(p.members, func(r *replica) bool { return !r.spec.sameProcess(p.spec) || !s.offers(p, r.addr) })
	if i < 0 {
		s.mu.Unlock()
		s.log.Info("rollout complete", "pool", p.name)
		return false
	}
	old := p.members[i]
	if addr := s.freeAddr(p); addr != "" {
		// Surge: the new replica answers /health before the old one goes.
		next := s.start(p, addr)
		s.mu.Unlock()
		s.log.Info("rollout: starting replacement", "pool", p.name, "old", old.addr, "new", addr)
		select {
		case <-next.ready:
		case <-ctx.Done():
			next.requestStop()
			return false
		}
		s.mu.Lock()
		if j := slices.Index(p.members, old); j >= 0 && !s.closed {
			p.members[j] = next
			s.retire(old)
		} else {
			s.retire(next) // the old replica went away meanwhile (resize, stop)
		}
		s.mu.Unlock()
		s.announce()
		return true
	}
	// No spare address: stop the old replica, then start the new one where
	// it was. The other replicas serve meanwhile.
	p.members = slices.Delete(p.members, i, i+1)
	s.retire(old)
	s.mu.Unlock()
	s.announce()
	s.log.Info("rollout: replacing in place (no spare address)", "pool", p.name, "addr", old.addr)
	select {
	case <-old.done:
	case <-ctx.Done():
		return false
	}
	s.mu.Lock()
	if s.closed || ctx.Err() != nil {
		s.mu.Unlock()
		return false
	}
	next := s.start(p, old.addr)
	p.members = slices.Insert(p.members, min(i, len(p.members)), next)
	s.mu.Unlock()
	s.announce()
	select {
	case <-next.ready:
	case <-ctx.Done():
		return false
	}
	return true
}

// expand fills {addr}, {host} and {port} into a command.
func expand(command []string, addr string) []string {
	host, port, _ := net.SplitHostPort(addr)
	r := strings.NewReplacer("{addr}", addr, "{host}", host, "{port}", port)
	out := make([]string, len(command))
	for i, a := range command {
		out[i] = r.Replace(a)
	}
	return out
}

func sortedNames(m map[string]*config.Pool) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
