package proxy

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/audit"
	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/backend"
	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/experiments"
	"github.com/sluice-gw/sluice/internal/limits"
	"github.com/sluice-gw/sluice/internal/metrics"
	"github.com/sluice-gw/sluice/internal/rollout"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/shadow"
)

// Snapshot is one config compiled for serving. It is immutable once built:
// the handler loads it once per request and uses it to the end, while a
// reload builds the next one beside it and swaps the pointer.
type Snapshot struct {
	Generation uint64
	LoadedAt   time.Time
	SHA256     string
	Config     *config.Config
	Source     []byte

	matchers       []routing.Matcher
	Routes         []*Route
	Pools          map[string]*Pool
	trusted        []netip.Prefix
	maxHeaders     int
	defaultMaxBody int
	maxBodyAny     int // the largest limit of any route
	// securityHeaders adds nosniff, DENY framing and, over TLS, HSTS.
	securityHeaders bool
	audit           *audit.Log // nil without an audit block

	lease    *backend.Lease
	inFlight atomic.Int64
	retired  atomic.Bool
	idle     chan struct{} // closed when retired with nothing in flight
	idleOnce sync.Once
}

// Route is a compiled route.
type Route struct {
	Name        string
	Variants    []*Variant // one for a pool route, two for blue-green and canary
	active      int        // the variant of a route without a split
	split       *split     // nil unless the route is a split
	canary      *canary    // nil unless the route is a canary
	stripPrefix []byte
	timeout     time.Duration
	maxBody     int
	inFlight    prometheus.Gauge
	mirror      *mirror // nil unless the route has a shadow
	retries     *retryPolicy
	fallback    *Variant // the spare pool; nil when the route has none
	limits      routeLimits
	cache       *routeCache // nil unless the route caches
	auth        *routeAuth  // nil for a public route
	cors        *corsPolicy // nil without a cors block
	// refused counts the requests the route answered before choosing a
	// variant (auth refusals, CORS preflights), under variant "none".
	refused *metrics.RouteSeries
	// Experiment is the split route's experiment; nil for other routes.
	Experiment *experiments.Experiment
}

// AssignKey returns the variant a sticky key gets on this route now (its
// index in Variants), as a request carrying the key would; false when the
// route has no sticky split.
func (r *Route) AssignKey(key []byte) (int, bool) {
	if r.split == nil || r.split.sticky == nil || len(key) == 0 {
		return 0, false
	}
	i := r.split.hashed.Pick(key)
	return i, i >= 0
}

// Route finds a route by name.
func (s *Snapshot) Route(name string) *Route {
	for _, r := range s.Routes {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Variant is one way a route can answer: the route's pool, a colour of a
// blue-green route, or an arm of a split. Name is what X-Sluice-Variant and
// the variant metric label say.
type Variant struct {
	Name   string
	label  []byte // Name, for X-Sluice-Variant
	Pool   *Pool
	index  int // in the route's Variants
	series *metrics.RouteSeries
	exp    *experiments.Variant // nil unless the route is a split
}

// Pool is a compiled pool: its members and balance policy. It is the
// health view the policy reads (routing.Backends).
type Pool struct {
	Name       string
	Members    []*Member
	policy     routing.Policy
	timeout    time.Duration
	outlier    backend.Outlier
	maxEjected int // members that may be ejected at once (max_ejected_percent, at least 1)
	// version names the pool's backends as configured: cached answers are
	// keyed on it, so a reload that points the pool at other workers
	// (another model) never serves what the old ones answered.
	version []byte
}

// Member is a backend as one pool uses it.
type Member struct {
	*backend.Backend
	pool    *Pool
	client  *backend.Transport
	breaker *backend.Breaker
	weight  int
	series  *metrics.UpstreamSeries
}

var _ routing.Backends = (*Pool)(nil)

// Breaker is the member's circuit breaker.
func (m *Member) Breaker() *backend.Breaker { return m.breaker }

// OpenConns is the number of connections open to the member's backend
// through this pool's transport, idle or busy.
func (m *Member) OpenConns() int { return m.client.OpenConns() }

// Len is the number of members.
func (p *Pool) Len() int { return len(p.Members) }

// Weight is member i's configured weight.
func (p *Pool) Weight(i int) int { return p.Members[i].weight }

// Pending is member i's requests in flight.
func (p *Pool) Pending(i int) int64 { return p.Members[i].Backend.Pending() }

// Available reports whether member i may take traffic: the backend is
// (not down, healthy, not ejected) and its breaker lets attempts through.
func (p *Pool) Available(i int) bool {
	m := p.Members[i]
	return m.Backend.Available() && m.breaker.Allowing()
}

// mayEject reports whether one more member may be ejected without passing
// the pool's max_ejected_percent.
func (p *Pool) mayEject() bool {
	now, n := time.Now(), 0
	for _, m := range p.Members {
		if m.Ejected(now) {
			n++
		}
	}
	return n < p.maxEjected
}

// retryAfter is when a pool with no available member may have one again:
// the earliest end of an ejection or of an open breaker, or 0 when no
// member is waiting for either (they are down for another reason).
func (p *Pool) retryAfter() time.Duration {
	var first time.Time
	for _, m := range p.Members {
		for _, until := range [2]time.Time{m.EjectedUntil(), m.breaker.OpenUntil()} {
			if !until.IsZero() && (first.IsZero() || until.Before(first)) {
				first = until
			}
		}
	}
	if first.IsZero() {
		return 0
	}
	return time.Until(first)
}

// HasAvailable reports whether any member may take traffic.
func (p *Pool) HasAvailable() bool {
	for i := range p.Members {
		if p.Available(i) {
			return true
		}
	}
	return false
}

// Members lists the backends a pool routes to: its configured backends,
// or for a spawned pool, the replicas running now.
type Members func(name string, pc *config.Pool) []config.Backend

// Configured is Members for a gateway that spawns nothing.
func Configured(_ string, pc *config.Pool) []config.Backend { return pc.Backends }

// Deps are what compiling reaches outside the config: state that outlives
// the snapshot.
type Deps struct {
	Registry    *backend.Registry
	Metrics     *metrics.Metrics
	Members     Members
	Experiments *experiments.Registry
	Shadows     *shadow.Registry
	Limits      *limits.Registry
	Cache       *cache.Registry
	Rollouts    *rollout.Registry
	Auth        *auth.Store
	// Audit is the audit log the snapshot writes to; nil for none.
	Audit *audit.Log
}

// Compile builds a snapshot from a validated config, leasing its backends
// from the registry. If the snapshot is never served, call Retire to give
// them back.
func Compile(loaded *config.Loaded, gen uint64, deps Deps) *Snapshot {
	cfg, reg, m := loaded.Config, deps.Registry, deps.Metrics
	s := &Snapshot{
		Generation:     gen,
		LoadedAt:       time.Now(),
		SHA256:         loaded.SHA256,
		Config:         cfg,
		Source:         loaded.Source,
		Pools:          map[string]*Pool{},
		trusted:        cfg.Server.TrustedPrefixes(),
		maxHeaders:     cfg.Server.MaxHeaders,
		defaultMaxBody: int(cfg.Server.MaxBody),
		lease:          reg.Lease(),
		idle:           make(chan struct{}),

		securityHeaders: cfg.Server.SecurityHeaders,
		audit:           deps.Audit,
	}
	for name, pc := range cfg.Pools {
		backends := deps.Members(name, pc)
		p := &Pool{
			Name:       name,
			timeout:    pc.Timeout.D(),
			outlier:    backend.Outlier{ConsecutiveFailures: pc.Outlier.ConsecutiveFailures, EjectFor: pc.Outlier.EjectFor.D(), MaxEjectFor: pc.Outlier.MaxEjectFor.D()},
			maxEjected: max(1, len(backends)*pc.Outlier.MaxEjectedPercent/100),
			version:    poolVersion(name, pc),
		}
		weights := make([]int, len(backends))
		settings := backend.Settings{MaxConns: pc.MaxConns, Timeout: pc.Timeout.D()}
		breaker := breakerSettings(&pc.Breaker)
		for i, bc := range backends {
			b, client := s.lease.Acquire(bc.Addr, settings)
			p.Members = append(p.Members, &Member{Backend: b, pool: p, client: client, breaker: b.BreakerFor(breaker),
				weight: bc.Weight, series: m.Upstream(name, bc.Addr)})
			weights[i] = bc.Weight
		}
		// Validation has checked the policy name.
		p.policy, _ = routing.NewPolicy(pc.Balance, weights)
		s.Pools[name] = p
	}
	splits, shadowed := map[string]bool{}, map[string]bool{}
	cached, canaries := map[string]bool{}, map[string]bool{}
	var authFiles []any
	limited := &limitsInUse{limiters: map[limits.Limiter]bool{}, counters: map[*limits.Concurrency]bool{}}
	for _, rc := range cfg.Routes {
		match := rc.Match
		s.matchers = append(s.matchers, routing.NewMatcher(match.PathPrefix, match.Methods, match.Host, match.Headers))
		r := &Route{
			Name:        rc.Name,
			stripPrefix: []byte(rc.StripPrefix),
			timeout:     rc.Timeout.D(),
			maxBody:     int(rc.MaxBody),
			inFlight:    m.InFlight(rc.Name),
			retries:     compileRetries(rc.Retries),
			limits:      compileLimits(rc, deps.Limits, m, limited),
			cache:       compileCache(rc, deps.Cache, m),
			auth:        compileAuth(cfg, rc, deps.Auth, m),
			cors:        compileCORS(rc.CORS),
			refused:     m.Route(rc.Name, metrics.NoRoute),
		}
		if r.auth != nil {
			authFiles = append(authFiles, r.auth.handles()...)
		}
		cached[rc.Name] = r.cache != nil
		variant := func(name, pool string) *Variant {
			return &Variant{Name: name, label: []byte(name), Pool: s.Pools[pool], series: m.Route(rc.Name, name)}
		}
		switch {
		case rc.Split != nil:
			r.Variants, r.split, r.Experiment = compileSplit(rc, variant, deps.Experiments)
			splits[rc.Name] = true
		case rc.BlueGreen != nil:
			bg := rc.BlueGreen
			r.Variants = []*Variant{variant("blue", bg.Blue), variant("green", bg.Green)}
			if bg.Active == "green" {
				r.active = 1
			}
		case rc.Canary != nil:
			r.Variants = []*Variant{canaryStable: variant("stable", rc.Canary.Stable), canaryCandidate: variant("candidate", rc.Canary.Candidate)}
		default:
			r.Variants = []*Variant{variant(rc.Pool, rc.Pool)}
		}
		for i, v := range r.Variants {
			v.index = i
		}
		if rc.Fallback != "" {
			r.fallback = variant(rc.Fallback, rc.Fallback)
			r.fallback.index = -1
		}
		if r.mirror = compileMirror(rc, r, s, deps); r.mirror != nil {
			shadowed[rc.Name] = true
		}
		if rc.Canary != nil {
			r.canary = compileCanary(rc, r, s.Pools, deps.Rollouts)
			canaries[rc.Name] = true
		}
		s.Routes = append(s.Routes, r)
	}
	deps.Experiments.Retain(splits)
	deps.Shadows.Retain(shadowed)
	deps.Limits.Retain(limited.limiters, limited.counters)
	deps.Cache.Retain(cached)
	deps.Rollouts.Retain(canaries)
	if deps.Auth != nil {
		deps.Auth.Retain(authFiles)
	}
	s.maxBodyAny = s.defaultMaxBody
	for _, r := range s.Routes {
		s.maxBodyAny = max(s.maxBodyAny, r.maxBody)
	}
	return s
}

// breakerSettings converts a pool's breaker block.
func breakerSettings(b *config.Breaker) backend.BreakerSettings {
	return backend.BreakerSettings{
		FailureRatio:        b.FailureRatio,
		MinRequests:         uint32(b.MinRequests),
		ConsecutiveFailures: uint32(b.ConsecutiveFailures),
		HalfOpenRequests:    uint32(b.HalfOpenRequests),
		OpenFor:             b.OpenFor.D(),
		Window:              b.Window.D(),
	}
}

// enter counts a request as in flight on this snapshot.
func (s *Snapshot) enter() { s.inFlight.Add(1) }

// leave ends a request; the last one out of a retired snapshot signals Idle.
func (s *Snapshot) leave() {
	if s.inFlight.Add(-1) == 0 && s.retired.Load() {
		s.idleOnce.Do(func() { close(s.idle) })
	}
}

// Retire marks the snapshot as replaced. Once its last request has left,
// its backend lease is released; Retire returns at once and the release
// happens in the background.
func (s *Snapshot) Retire() {
	s.retired.Store(true)
	if s.inFlight.Load() == 0 {
		s.idleOnce.Do(func() { close(s.idle) })
	}
	go func() {
		<-s.idle
		s.lease.Release()
	}()
}

// Idle is closed once the snapshot is retired and has nothing in flight.
func (s *Snapshot) Idle() <-chan struct{} { return s.idle }

// Ready reports the routes that have no available backend; an empty
// result means every route can be served.
func (s *Snapshot) Ready() []string {
	var problems []string
	for _, r := range s.Routes {
		// The route is ready when the variants it can choose now have a
		// backend, or its fallback has: a blue-green route's idle colour
		// does not count.
		if r.fallback != nil && r.fallback.Pool.HasAvailable() {
			continue
		}
		for _, v := range r.Variants {
			if r.reachable(v) && !v.Pool.HasAvailable() {
				problems = append(problems, "route "+r.Name+": pool "+v.Pool.Name+" has no available backend")
			}
		}
	}
	return problems
}

// poolVersion is the pool's name and a digest of its backends and spawn
// command as configured.
func poolVersion(name string, pc *config.Pool) []byte {
	spec, _ := json.Marshal(struct {
		Backends []config.Backend
		Spawn    *config.Spawn
	}{pc.Backends, pc.Spawn})
	return strconv.AppendUint([]byte(name+"@"), xxhash.Sum64(spec), 16)
}
