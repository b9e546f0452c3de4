// Package metrics defines every Prometheus collector the gateway exports,
// with its name, help and labels in this one file (SPEC section 5). The
// hot path never builds label values: it holds series resolved once per
// config snapshot (RouteSeries, UpstreamSeries), and status codes index a
// fixed table of counters created on first use.
package metrics

import (
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NoRoute is the route label of requests that matched no route, or were
// refused before routing (malformed, too large, too slow).
const NoRoute = "none"

// Upstream attempt outcomes, the values of the outcome label.
const (
	OutcomeSuccess      = "success"       // a response below 500
	OutcomeHTTP5xx      = "http_5xx"      // the backend answered 5xx
	OutcomeConnectError = "connect_error" // no connection could be made
	OutcomeTimeout      = "timeout"       // no answer within the deadline
	OutcomeBadResponse  = "bad_response"  // the answer was not valid HTTP, or the connection broke
	OutcomeNoConn       = "no_free_conn"  // max_conns reached for the whole wait
)

var outcomes = []string{OutcomeSuccess, OutcomeHTTP5xx, OutcomeConnectError, OutcomeTimeout, OutcomeBadResponse, OutcomeNoConn}

// Metrics is the gateway's collectors in their own registry, so several
// gateways can live in one test process.
type Metrics struct {
	Registry *prometheus.Registry

	requests         *prometheus.CounterVec
	requestDuration  *prometheus.HistogramVec
	inFlight         *prometheus.GaugeVec
	upstreamRequests *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec
	reloads          *prometheus.CounterVec
	generation       prometheus.Gauge
	lastReloadOK     prometheus.Gauge
	spawnRestarts    *prometheus.CounterVec
	shadowRequests   *prometheus.CounterVec
	shadowDelta      *prometheus.HistogramVec
	shadowFields     *prometheus.CounterVec
	rateLimits       *prometheus.CounterVec
	cacheRequests    *prometheus.CounterVec
	caches           *cacheCollector
	backends         *backendCollector
	redis            *redisCollector
	rollouts         *rolloutCollector
	rolloutEvents    *prometheus.CounterVec
	authDecisions    *prometheus.CounterVec
	authFiles        *prometheus.CounterVec
	auditDropped     prometheus.Counter
}

// Latency buckets from 0.5 ms to 10 s: a gateway hop is sub-millisecond,
// a model answer tens of milliseconds, a stuck one seconds.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Latency delta buckets, shadow minus primary on the same request: either
// may be the faster, so they mirror around zero.
var deltaBuckets = []float64{-1, -.25, -.1, -.05, -.025, -.01, -.005, -.001, 0, .001, .005, .01, .025, .05, .1, .25, 1}

// New registers every collector.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_requests_total", Help: "Client requests answered, by route, variant and status code.",
		}, []string{"route", "variant", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_request_duration_seconds", Help: "Time from request received to response handed to the client.",
			Buckets: latencyBuckets,
		}, []string{"route", "variant"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_in_flight", Help: "Client requests being handled, by route.",
		}, []string{"route"}),
		upstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_upstream_requests_total", Help: "Attempts sent to backends, by pool, backend and outcome.",
		}, []string{"pool", "backend", "outcome"}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_upstream_duration_seconds", Help: "Time from attempt start to response headers, by pool.",
			Buckets: latencyBuckets,
		}, []string{"pool"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_config_reloads_total", Help: "Config loads, by result (success or failure).",
		}, []string{"result"}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_config_generation", Help: "Generation of the config serving now; it rises by one per applied change.",
		}),
		lastReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_config_last_reload_success_timestamp_seconds", Help: "Unix time of the last config applied.",
		}),
		spawnRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_spawned_worker_restarts_total", Help: "Restarts of worker processes the gateway runs, by pool.",
		}, []string{"pool"}),
		shadowRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_shadow_requests_total", Help: "Mirrored requests, by route and outcome (compared, failed or never sent).",
		}, []string{"route", "outcome"}),
		shadowDelta: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_shadow_latency_delta_seconds", Help: "Shadow latency minus primary latency on the same request, by route.",
			Buckets: deltaBuckets,
		}, []string{"route"}),
		shadowFields: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_shadow_field_mismatch_total", Help: "Compared pairs in which a field differed, by route and field.",
		}, []string{"route", "field"}),
		rateLimits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ratelimit_decisions_total",
			Help: "Rate limit decisions on requests of rate-limited routes, by route and decision (allowed, limited, or no_key: no entry had a key value).",
		}, []string{"route", "decision"}),
		cacheRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_cache_requests_total",
			Help: "Requests of cached routes, by route and result: hit, miss, bypass (the client said no-store), or coalesced (answered with a concurrent identical miss's answer).",
		}, []string{"route", "result"}),
		caches: &cacheCollector{
			entries: prometheus.NewDesc("sluice_cache_entries", "Answers in the route's in-process cache.", []string{"route"}, nil),
			bytes: prometheus.NewDesc("sluice_cache_bytes",
				"Size of the route's in-process cache, as counted against max_bytes.", []string{"route"}, nil),
			evicted: prometheus.NewDesc("sluice_cache_evictions_total",
				"Answers evicted from the route's in-process cache to stay within max_bytes.", []string{"route"}, nil),
		},
		redis: &redisCollector{
			up: prometheus.NewDesc("sluice_ratelimit_redis_up",
				"1 while global rate limits are decided in Redis, 0 while Redis is down or slow and on_redis_error decides.", nil, nil),
			errors: prometheus.NewDesc("sluice_ratelimit_redis_errors_total",
				"Redis round trips of global rate limits that failed or passed redis.timeout.", nil, nil),
		},
		rollouts: &rolloutCollector{
			step: prometheus.NewDesc("sluice_rollout_step",
				"The canary route's rollout step, counted from 0 (an index into canary.steps).", []string{"route"}, nil),
			percent: prometheus.NewDesc("sluice_rollout_candidate_percent",
				"The share of the canary route's requests that the candidate gets now, in percent.", []string{"route"}, nil),
			state: prometheus.NewDesc("sluice_rollout_state",
				"1 for the canary route's rollout state now (progressing, waiting, paused, promoted, rolled_back), 0 for the others.",
				[]string{"route", "state"}, nil),
		},
		rolloutEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_rollout_transitions_total",
			Help: "Rollout transitions this replica made, by route and event (started, step, waiting, paused, resumed, restarted, promoted, rolled_back).",
		}, []string{"route", "event"}),
		authDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_auth_decisions_total",
			Help: "Auth decisions on requests of routes with auth, by route and decision (allowed, unauthorized: no or bad credential, forbidden: valid but not allowed here).",
		}, []string{"route", "decision"}),
		authFiles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_auth_file_reloads_total",
			Help: "Loads of keys and JWKS files, by result (success, or failure: the file did not parse and the keys it had stay).",
		}, []string{"result"}),
		auditDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_audit_dropped_total",
			Help: "Audit log lines dropped because the writer fell behind or the file could not be written.",
		}),
		backends: &backendCollector{
			up: prometheus.NewDesc("sluice_backend_up",
				"1 when the backend may take traffic: not down, passing its health checks, not ejected, breaker not open.",
				[]string{"pool", "backend"}, nil),
			breaker: prometheus.NewDesc("sluice_breaker_state",
				"The backend's circuit breaker: 0 closed, 1 half-open, 2 open.", []string{"pool", "backend"}, nil),
		},
	}
	m.Registry.MustRegister(m.requests, m.requestDuration, m.inFlight, m.upstreamRequests, m.upstreamDuration,
		m.reloads, m.generation, m.lastReloadOK, m.spawnRestarts, m.shadowRequests, m.shadowDelta, m.shadowFields, m.rateLimits, m.cacheRequests, m.caches, m.backends, m.redis, m.rollouts, m.rolloutEvents,
		m.authDecisions, m.authFiles, m.auditDropped,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Both results exist from the start, so a rate() over them works
	// before the first failure.
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	m.authFiles.WithLabelValues("success")
	m.authFiles.WithLabelValues("failure")
	return m
}

// Auth decisions, the values of the decision label.
const (
	AuthAllowed      = "allowed"
	AuthUnauthorized = "unauthorized"
	AuthForbidden    = "forbidden"
)

// AuthSeries are a route's auth decision counters.
type AuthSeries struct {
	Allowed, Unauthorized, Forbidden prometheus.Counter
}

// Auth returns the auth decision counters of a route.
func (m *Metrics) Auth(route string) *AuthSeries {
	return &AuthSeries{
		Allowed:      m.authDecisions.WithLabelValues(route, AuthAllowed),
		Unauthorized: m.authDecisions.WithLabelValues(route, AuthUnauthorized),
		Forbidden:    m.authDecisions.WithLabelValues(route, AuthForbidden),
	}
}

// AuthFileLoaded counts a keys or JWKS file load.
func (m *Metrics) AuthFileLoaded(ok bool) {
	if ok {
		m.authFiles.WithLabelValues("success").Inc()
	} else {
		m.authFiles.WithLabelValues("failure").Inc()
	}
}

// AuditDropped counts an audit line that was not written.
func (m *Metrics) AuditDropped() { m.auditDropped.Inc() }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// ConfigApplied records a successful load of generation gen at unix time now.
func (m *Metrics) ConfigApplied(gen uint64, now float64) {
	m.reloads.WithLabelValues("success").Inc()
	m.generation.Set(float64(gen))
	m.lastReloadOK.Set(now)
}

// SpawnRestart counts one restart of a spawned worker in pool.
func (m *Metrics) SpawnRestart(pool string) { m.spawnRestarts.WithLabelValues(pool).Inc() }

// ConfigRejected records a failed load.
func (m *Metrics) ConfigRejected() { m.reloads.WithLabelValues("failure").Inc() }

// RouteSeries is the series of one route and variant.
type RouteSeries struct {
	route, variant string
	m              *Metrics
	Duration       prometheus.Observer
	codes          [600]atomic.Pointer[prometheus.Counter]
}

// Route resolves the series of a route and variant.
func (m *Metrics) Route(route, variant string) *RouteSeries {
	return &RouteSeries{
		route: route, variant: variant, m: m,
		Duration: m.requestDuration.WithLabelValues(route, variant),
	}
}

// InFlight is the gauge of requests being handled on a route.
func (m *Metrics) InFlight(route string) prometheus.Gauge { return m.inFlight.WithLabelValues(route) }

// Count adds one answered request with this status code.
func (s *RouteSeries) Count(code int) {
	if code < 100 || code >= len(s.codes) {
		code = 0
	}
	c := s.codes[code].Load()
	if c == nil {
		counter := s.m.requests.WithLabelValues(s.route, s.variant, strconv.Itoa(code))
		s.codes[code].CompareAndSwap(nil, &counter)
		c = s.codes[code].Load()
	}
	(*c).Inc()
}

// UpstreamSeries is the series of one backend in one pool.
type UpstreamSeries struct {
	Duration prometheus.Observer
	outcomes [6]prometheus.Counter
}

// Upstream resolves the series of a backend in a pool.
func (m *Metrics) Upstream(pool, backend string) *UpstreamSeries {
	s := &UpstreamSeries{Duration: m.upstreamDuration.WithLabelValues(pool)}
	for i, o := range outcomes {
		s.outcomes[i] = m.upstreamRequests.WithLabelValues(pool, backend, o)
	}
	return s
}

// Count adds one attempt with this outcome (one of the Outcome constants).
func (s *UpstreamSeries) Count(outcome string) {
	for i, o := range outcomes {
		if o == outcome {
			s.outcomes[i].Inc()
			return
		}
	}
}

// ShadowSeries is the series of one shadowed route.
type ShadowSeries struct {
	route    string
	m        *Metrics
	Delta    prometheus.Observer
	outcomes map[string]prometheus.Counter
}

// Shadow resolves the series of a shadowed route, creating one per
// outcome so that every rate() works from the start.
func (m *Metrics) Shadow(route string, outcomes []string) *ShadowSeries {
	s := &ShadowSeries{route: route, m: m, Delta: m.shadowDelta.WithLabelValues(route), outcomes: map[string]prometheus.Counter{}}
	for _, o := range outcomes {
		s.outcomes[o] = m.shadowRequests.WithLabelValues(route, o)
	}
	return s
}

// Count adds one mirror with this outcome, one of those given to Shadow.
func (s *ShadowSeries) Count(outcome string) { s.outcomes[outcome].Inc() }

// FieldMismatch counts a pair in which field differed. The caller bounds
// the number of distinct fields.
func (s *ShadowSeries) FieldMismatch(field string) {
	s.m.shadowFields.WithLabelValues(s.route, field).Inc()
}

// BackendState is what the backend gauges say of one pool member.
type BackendState struct {
	Pool, Backend string
	Up            bool
	Breaker       int // 0 closed, 1 half-open, 2 open
}

// WatchBackends makes sluice_backend_up and sluice_breaker_state read the
// members' states at every scrape: they change with health, ejection and
// breakers, not with requests, so nothing on the hot path sets them.
func (m *Metrics) WatchBackends(states func() []BackendState) { m.backends.states.Store(&states) }

type backendCollector struct {
	up, breaker *prometheus.Desc
	states      atomic.Pointer[func() []BackendState]
}

func (c *backendCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.breaker
}

func (c *backendCollector) Collect(ch chan<- prometheus.Metric) {
	states := c.states.Load()
	if states == nil {
		return
	}
	for _, s := range (*states)() {
		up := 0.0
		if s.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, s.Pool, s.Backend)
		ch <- prometheus.MustNewConstMetric(c.breaker, prometheus.GaugeValue, float64(s.Breaker), s.Pool, s.Backend)
	}
}

// RateLimitSeries are a rate-limited route's decision counters.
type RateLimitSeries struct {
	Allowed, Limited, NoKey prometheus.Counter
}

// RateLimit returns the decision counters of a route.
func (m *Metrics) RateLimit(route string) *RateLimitSeries {
	return &RateLimitSeries{
		Allowed: m.rateLimits.WithLabelValues(route, "allowed"),
		Limited: m.rateLimits.WithLabelValues(route, "limited"),
		NoKey:   m.rateLimits.WithLabelValues(route, "no_key"),
	}
}

// RedisState is the rate limiter's view of Redis for the gauges.
type RedisState struct {
	Configured, Up bool
	Errors         int64
}

// WatchRateLimitRedis makes the Redis gauges read state at each scrape;
// they are absent while no Redis is configured.
func (m *Metrics) WatchRateLimitRedis(state func() RedisState) { m.redis.state.Store(&state) }

type redisCollector struct {
	up, errors *prometheus.Desc
	state      atomic.Pointer[func() RedisState]
}

func (c *redisCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.errors
}

func (c *redisCollector) Collect(ch chan<- prometheus.Metric) {
	state := c.state.Load()
	if state == nil {
		return
	}
	s := (*state)()
	if !s.Configured {
		return
	}
	up := 0.0
	if s.Up {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(s.Errors))
}

// CacheSeries are a cached route's request counters.
type CacheSeries struct {
	Hit, Miss, Bypass, Coalesced prometheus.Counter
}

// Cache returns the cache counters of a route.
func (m *Metrics) Cache(route string) *CacheSeries {
	return &CacheSeries{
		Hit:       m.cacheRequests.WithLabelValues(route, "hit"),
		Miss:      m.cacheRequests.WithLabelValues(route, "miss"),
		Bypass:    m.cacheRequests.WithLabelValues(route, "bypass"),
		Coalesced: m.cacheRequests.WithLabelValues(route, "coalesced"),
	}
}

// CacheState is one route's in-process cache for the gauges.
type CacheState struct {
	Route            string
	Entries          int
	Bytes, Evictions int64
}

// WatchCaches makes the cache gauges read states at each scrape.
func (m *Metrics) WatchCaches(states func() []CacheState) { m.caches.states.Store(&states) }

type cacheCollector struct {
	entries, bytes, evicted *prometheus.Desc
	states                  atomic.Pointer[func() []CacheState]
}

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.entries
	ch <- c.bytes
	ch <- c.evicted
}

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	states := c.states.Load()
	if states == nil {
		return
	}
	for _, s := range (*states)() {
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(s.Entries), s.Route)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(s.Bytes), s.Route)
		ch <- prometheus.MustNewConstMetric(c.evicted, prometheus.CounterValue, float64(s.Evictions), s.Route)
	}
}

// RolloutState is one canary route's rollout for the gauges.
type RolloutState struct {
	Route   string
	State   string
	Step    int
	Percent float64
}

// WatchRollouts makes the rollout gauges read states at each scrape, with
// every state name in names given a series.
func (m *Metrics) WatchRollouts(names []string, states func() []RolloutState) {
	m.rollouts.names = names
	m.rollouts.states.Store(&states)
}

// RolloutTransition counts one transition this replica made.
func (m *Metrics) RolloutTransition(route, event string) {
	m.rolloutEvents.WithLabelValues(route, event).Inc()
}

type rolloutCollector struct {
	step, percent, state *prometheus.Desc
	names                []string
	states               atomic.Pointer[func() []RolloutState]
}

func (c *rolloutCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.step
	ch <- c.percent
	ch <- c.state
}

func (c *rolloutCollector) Collect(ch chan<- prometheus.Metric) {
	states := c.states.Load()
	if states == nil {
		return
	}
	for _, s := range (*states)() {
		ch <- prometheus.MustNewConstMetric(c.step, prometheus.GaugeValue, float64(s.Step), s.Route)
		ch <- prometheus.MustNewConstMetric(c.percent, prometheus.GaugeValue, s.Percent, s.Route)
		for _, name := range c.names {
			v := 0.0
			if name == s.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, s.Route, name)
		}
	}
}
