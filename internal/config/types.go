// Package config reads config/gateway.yaml into a validated *Config.
//
// Loading happens in three steps, each one total before the next starts:
// decode (strict: an unknown key is an error with its line), expand
// (${ENV} in every scalar), and validate (every problem at once, each with
// its YAML line). The result is immutable by convention: nothing changes a
// *Config after Parse returns it, so the gateway can compile it into a
// routing snapshot and swap that in atomically.
//
// Types here are pure data. Every field documents its meaning, its default
// and what its zero value means.
package config

import "time"

// Config is the whole file.
type Config struct {
	// Server is the client-facing listener.
	Server Server `yaml:"server" json:"server"`
	// Admin is the operator listener: metrics, health, the admin API.
	Admin Admin `yaml:"admin" json:"admin"`
	// Redis, when set, is shared by every gateway replica: experiment
	// counters and outcomes aggregate there. Zero: everything is per
	// process, in memory.
	Redis *Redis `yaml:"redis" json:"redis,omitempty"`
	// StateDir holds runtime state that must outlive a restart: each
	// canary route's rollout progress, one JSON file per route. With a
	// redis block the state lives in Redis instead, shared by the
	// replicas. Zero: rollout progress outlives reloads but not a
	// restart.
	StateDir string `yaml:"state_dir" json:"state_dir,omitempty"`
	// Pools are the upstream groups, one per model version, by name.
	// At least one is required.
	Pools map[string]*Pool `yaml:"pools" json:"pools"`
	// Routes are matched in order; the first match wins. At least one is required.
	Routes []*Route `yaml:"routes" json:"routes"`
}

// Server holds the client listener's settings. Listener settings (listen,
// tls, the three timeouts, max_header_bytes) are bound when the listener
// starts: a reload that changes them is rejected with a message saying to
// restart. The rest applies per request and reloads like routes do.
type Server struct {
	// Listen is the client address, host:port. Default ":8080".
	Listen string `yaml:"listen" json:"listen"`
	// TLS, when set, makes the listener terminate TLS (1.2 and 1.3, AEAD
	// ciphers only). Every reload reads the certificate and key again, so
	// a renewed certificate takes effect on SIGHUP as with nginx -s
	// reload; turning TLS on or off needs a restart. Zero: plain HTTP.
	TLS *TLS `yaml:"tls" json:"tls,omitempty"`
	// RedirectHTTP, with tls set, is a second, plain-HTTP listener that
	// answers every request with a redirect to the same URL over https
	// (301, or 308 for methods other than GET and HEAD), as an nginx
	// "listen 80; return 301 https://$host$request_uri;" server does.
	// Bound at start. Zero: none.
	RedirectHTTP string `yaml:"redirect_http" json:"redirect_http,omitempty"`
	// ReadTimeout bounds how long the whole request (headers and body) may
	// take to arrive; past it the client gets 408. Default 10s.
	ReadTimeout Duration `yaml:"read_timeout" json:"read_timeout"`
	// WriteTimeout bounds writing the response to the client. Default 30s.
	WriteTimeout Duration `yaml:"write_timeout" json:"write_timeout"`
	// IdleTimeout closes a keep-alive connection idle this long. Default 60s.
	IdleTimeout Duration `yaml:"idle_timeout" json:"idle_timeout"`
	// MaxHeaderBytes bounds the request line and headers together; more gets
	// 431. Default 16KiB.
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes" json:"max_header_bytes"`
	// MaxHeaders bounds the number of request header fields; more gets 431.
	// Default 100.
	MaxHeaders int `yaml:"max_headers" json:"max_headers"`
	// MaxBody is the request body limit for routes that set none; more gets
	// 413. Default 1MiB.
	MaxBody ByteSize `yaml:"max_body" json:"max_body"`
	// TrustedProxies are the peers (CIDRs or bare IPs) whose X-Forwarded-For,
	// X-Forwarded-Proto and X-Forwarded-Host are believed. Zero: none; the
	// client IP is always the TCP peer.
	TrustedProxies []string `yaml:"trusted_proxies" json:"trusted_proxies"`
	// DrainTimeout bounds the graceful stop on SIGTERM/SIGINT: in-flight
	// requests get this long to finish. Default 15s.
	DrainTimeout Duration `yaml:"drain_timeout" json:"drain_timeout"`
	// Auth is the default auth of routes that have no auth block. Zero:
	// routes are public unless they say otherwise.
	Auth *Auth `yaml:"auth" json:"auth,omitempty"`
	// Audit logs auth decisions as JSON lines. Zero: no audit log.
	Audit *Audit `yaml:"audit" json:"audit,omitempty"`
	// SecurityHeaders adds X-Content-Type-Options: nosniff and
	// X-Frame-Options: DENY to every answer, and on a TLS listener
	// Strict-Transport-Security (one year), unless the backend set them.
	// Default false.
	SecurityHeaders bool `yaml:"security_headers" json:"security_headers,omitempty"`
}

// TLS names the certificate and key files (PEM).
type TLS struct {
	// Cert is the certificate chain file. Required with tls.
	Cert string `yaml:"cert" json:"cert"`
	// Key is the private key file. Required with tls.
	Key string `yaml:"key" json:"key"`
}

// Admin holds the operator listener's settings.
type Admin struct {
	// Listen is the admin address; it must differ from server.listen.
	// Default "127.0.0.1:9901". Bound at start.
	Listen string `yaml:"listen" json:"listen"`
	// Token, when set, is required as "Authorization: Bearer TOKEN" on
	// /admin/* and the console under /ui/ (which also takes it from the
	// cookie that /ui/?token=TOKEN sets). Zero: both are open to whoever
	// reaches the admin address.
	Token string `yaml:"token" json:"-"`
	// Pprof exposes /debug/pprof/ on the admin listener. Default false.
	Pprof bool `yaml:"pprof" json:"pprof"`
}

// Redis is the server the gateway replicas share. A reload may change it:
// the gateway then connects to the new one and closes the old connection.
// Whatever the setting, requests never wait on Redis: it is written by a
// background pusher and read by the admin API.
type Redis struct {
	// Addr is the server, host:port. Required with redis.
	Addr string `yaml:"addr" json:"addr"`
	// Password authenticates (AUTH); write it as ${ENV_VAR}. Never shown
	// in /admin/config. Zero: no AUTH.
	Password string `yaml:"password" json:"-"`
	// DB is the database number to SELECT. Default 0.
	DB int `yaml:"db" json:"db"`
	// Timeout bounds every round trip; a slower answer counts as Redis
	// being down (the gateway then falls back to per-process numbers).
	// Default 25ms.
	Timeout Duration `yaml:"timeout" json:"timeout"`
}

// Pool is the set of workers serving one model version.
type Pool struct {
	// Backends are the worker addresses (host:port), each a plain string or
	// {addr, weight}. At least one is required.
	Backends []Backend `yaml:"backends" json:"backends"`
	// Balance picks a backend per attempt: least_pending (default),
	// round_robin, random or p2c (power of two random choices).
	Balance string `yaml:"balance" json:"balance"`
	// MaxConns bounds connections to each backend; a request that finds
	// them all busy waits up to the attempt timeout, then gets 503.
	// Default 512.
	MaxConns int `yaml:"max_conns" json:"max_conns"`
	// Timeout bounds one attempt: connecting, sending and receiving the
	// response headers. Default 30s.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// Spawn, when set, makes the gateway run the pool's workers itself.
	// Zero: the backends are started by someone else.
	Spawn *Spawn `yaml:"spawn" json:"spawn,omitempty"`
	// Outlier tunes passive outlier ejection, which always runs: a backend
	// that fails consecutive_failures attempts in a row is taken out of
	// rotation for a while. Zero: the defaults.
	Outlier Outlier `yaml:"outlier" json:"outlier"`
	// Health, when set, probes every backend of the pool on an interval;
	// a backend that fails unhealthy_after probes in a row leaves rotation
	// until it passes healthy_after in a row. Zero: no active checks
	// (passive ejection and breakers still run).
	Health *Health `yaml:"health" json:"health,omitempty"`
	// Breaker tunes the circuit breaker each backend has, which always
	// runs. Zero: the defaults.
	Breaker Breaker `yaml:"breaker" json:"breaker"`
}

// Health is an active health check, after nginx's health_check and
// Envoy's health_checks: GET path on each backend every interval (plus up
// to jitter, so that probes of many backends spread out); a 2xx answer
// within timeout passes, anything else fails.
type Health struct {
	// Path is requested with GET. Default /health.
	Path string `yaml:"path" json:"path"`
	// Interval between two probes of one backend. Default 2s.
	Interval Duration `yaml:"interval" json:"interval"`
	// Jitter: each wait is interval plus a random time up to jitter.
	// Default a tenth of interval.
	Jitter Duration `yaml:"jitter" json:"jitter"`
	// Timeout bounds one probe; at most interval. Default 500ms (or
	// interval, when shorter).
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// HealthyAfter passing probes in a row bring a backend back. Default 2.
	HealthyAfter int `yaml:"healthy_after" json:"healthy_after"`
	// UnhealthyAfter failing probes in a row take it out. Default 3.
	UnhealthyAfter int `yaml:"unhealthy_after" json:"unhealthy_after"`
}

// Breaker is a backend's circuit breaker (sony/gobreaker): closed, it
// counts attempts over a rolling window and opens on consecutive_failures
// failures in a row, or when at least min_requests attempts failed at
// failure_ratio or more. Open, the backend takes no traffic for open_for;
// then half_open_requests probes go through, and their success closes it
// again while a failure reopens it. Failures are refused or broken
// connections, timeouts and 5xx answers.
type Breaker struct {
	// FailureRatio opens the breaker when this share of the window's
	// attempts failed, above 0 and at most 1. Default 0.5.
	FailureRatio float64 `yaml:"failure_ratio" json:"failure_ratio"`
	// MinRequests is how many attempts the window needs before the ratio
	// counts. Default 20.
	MinRequests int `yaml:"min_requests" json:"min_requests"`
	// ConsecutiveFailures opens the breaker after this many failures in a
	// row. Default 5.
	ConsecutiveFailures int `yaml:"consecutive_failures" json:"consecutive_failures"`
	// OpenFor is how long an open breaker keeps the backend out. Default 10s.
	OpenFor Duration `yaml:"open_for" json:"open_for"`
	// HalfOpenRequests are let through once open_for has passed. Default 1.
	HalfOpenRequests int `yaml:"half_open_requests" json:"half_open_requests"`
	// Window is how far back the closed breaker's counts reach (rolling,
	// in tenths of it). Default 10s.
	Window Duration `yaml:"window" json:"window"`
}

// Outlier is passive outlier ejection, after Envoy's outlier_detection: a
// backend whose attempts fail consecutive_failures times in a row (refused
// or broken connections, timeouts, 5xx answers) is ejected for eject_for
// times the number of its ejections so far, at most max_eject_for. An
// ejected backend rejoins when the time is up; one that then serves well
// for eject_for starts its count afresh.
type Outlier struct {
	// ConsecutiveFailures ejects a backend after this many failed attempts
	// in a row. Default 5.
	ConsecutiveFailures int `yaml:"consecutive_failures" json:"consecutive_failures"`
	// EjectFor is the first ejection's length. Default 30s.
	EjectFor Duration `yaml:"eject_for" json:"eject_for"`
	// MaxEjectFor caps an ejection however often it repeats. Default 300s.
	MaxEjectFor Duration `yaml:"max_eject_for" json:"max_eject_for"`
	// MaxEjectedPercent bounds the share of the pool ejected at once, 0 to
	// 100; one backend may always be ejected. Default 50.
	MaxEjectedPercent int `yaml:"max_ejected_percent" json:"max_ejected_percent"`
}

// Spawn describes worker processes the gateway starts, restarts when they
// exit (with exponential backoff), and stops on shutdown. A replica takes
// traffic once it answers GET /health with 200.
type Spawn struct {
	// Command is the program and its arguments. In each argument "{addr}"
	// becomes the replica's host:port, "{host}" and "{port}" its parts.
	// A relative program path resolves against the gateway's working
	// directory, where the workers also run. Required.
	Command []string `yaml:"command" json:"command"`
	// Replicas is how many processes run. Default: the number of backends,
	// or 1 with ports.
	Replicas int `yaml:"replicas" json:"replicas"`
	// Ports is a range like "9101-9199": replica addresses are free ports
	// on 127.0.0.1 taken from it, and the pool's backends list must be
	// empty. Zero: replicas take the backends' addresses in order. With a
	// spare address (a port range, or more backends than replicas), a
	// changed command starts each new replica before the old one stops.
	Ports string `yaml:"ports" json:"ports,omitempty"`
	// StartTimeout bounds how long a new replica may take to answer
	// /health before it is killed and started again. Default 30s.
	StartTimeout Duration `yaml:"start_timeout" json:"start_timeout"`
	// StopTimeout is how long a replica has to exit after SIGTERM before
	// it gets SIGKILL. Default 5s.
	StopTimeout Duration `yaml:"stop_timeout" json:"stop_timeout"`
}

// Backend is one worker address with its balancing weight.
type Backend struct {
	// Addr is host:port.
	Addr string `yaml:"addr" json:"addr"`
	// Weight is the relative share of traffic. Default 1; 0 is an error.
	Weight int `yaml:"weight" json:"weight"`
}

// Route sends matching requests to a pool.
type Route struct {
	// Name identifies the route in metrics, logs and the admin API. Required,
	// unique.
	Name string `yaml:"name" json:"name"`
	// Match selects the requests; an empty match takes every request.
	Match Match `yaml:"match" json:"match"`
	// StripPrefix is removed from the front of the path before forwarding,
	// when the path starts with it. Zero: the path is forwarded as is.
	StripPrefix string `yaml:"strip_prefix" json:"strip_prefix,omitempty"`
	// Exactly one of Pool, Split, BlueGreen and Canary says who answers.
	//
	// Pool answers every request of the route.
	Pool string `yaml:"pool" json:"pool,omitempty"`
	// Split shares the route between variants by weight: a weighted canary
	// or an A/B test.
	Split *Split `yaml:"split" json:"split,omitempty"`
	// BlueGreen sends everything to the active one of two pools.
	BlueGreen *BlueGreen `yaml:"blue_green" json:"blue_green,omitempty"`
	// Canary moves traffic from a stable pool to a candidate step by
	// step, and promotes or rolls back on the gateway's own numbers.
	Canary *Canary `yaml:"canary" json:"canary,omitempty"`
	// Timeout bounds the whole request upstream; past it the client gets
	// 504. Zero: only the pool's attempt timeout applies.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// Fallback is the spare pool that answers when the chosen pool has no
	// available backend (or every retry in it failed). X-Sluice-Variant
	// then names the fallback pool. Zero: a 503 instead.
	Fallback string `yaml:"fallback" json:"fallback,omitempty"`
	// Retries says when a failed attempt is tried again on another
	// backend. Zero: one retry, on connect_error only.
	Retries *Retries `yaml:"retries" json:"retries,omitempty"`
	// MaxBody is the request body limit; more gets 413. Zero: server.max_body.
	MaxBody ByteSize `yaml:"max_body" json:"max_body"`
	// Shadow mirrors a sample of the route's requests to a candidate pool
	// and compares its answers with the primary's. Zero: no mirroring.
	Shadow *Shadow `yaml:"shadow" json:"shadow,omitempty"`
	// MaxInFlight caps the route's requests in progress (on this gateway);
	// one more is answered 503 unavailable with Retry-After at once,
	// without waiting, as Envoy's max_requests circuit breaker does. Zero:
	// no cap.
	MaxInFlight int `yaml:"max_in_flight" json:"max_in_flight,omitempty"`
	// Cache stores the route's 200 answers and serves identical requests
	// from it. Zero: no cache.
	Cache *Cache `yaml:"cache" json:"cache,omitempty"`
	// RateLimit lists token buckets the route's requests must pass, each
	// keyed by its own key source; every entry applies. A single entry
	// may be written without the list. Zero: no rate limit.
	RateLimit RateLimits `yaml:"rate_limit" json:"rate_limit,omitempty"`
	// Auth says who may call the route; it replaces server.auth as a
	// whole. Zero: server.auth, or public without one.
	Auth *Auth `yaml:"auth" json:"auth,omitempty"`
	// CORS answers browsers' cross-origin preflights and marks answers
	// for allowed origins. Zero: no CORS headers; preflights are
	// forwarded like other requests.
	CORS *CORS `yaml:"cors" json:"cors,omitempty"`
	// Tags group routes for API keys: a key listing a tag may call every
	// route that has it. Zero: none.
	Tags []string `yaml:"tags" json:"tags,omitempty"`
}

// Cache is a route's response cache (SPEC section 2). A request is keyed
// on the route, the pool that would answer it (so a canary step or a
// blue-green flip never serves one model's answer for another's), method,
// path and query, the vary key sources, and the body as canonical JSON.
// Only 200 answers are stored, and never one the worker marked
// Cache-Control: no-store or private.
type Cache struct {
	// TTL is how long an answer is served from the cache. Default 1m.
	TTL Duration `yaml:"ttl" json:"ttl"`
	// MaxBytes bounds the route's in-process cache (bodies, headers and
	// bookkeeping); past it the entries least likely to be used again
	// are evicted. Default 64MiB.
	MaxBytes ByteSize `yaml:"max_bytes" json:"max_bytes"`
	// Shared also keeps answers in the redis block's server, read when
	// this process does not have them, so replicas share one cache. A
	// Redis error or timeout is a miss, never a failure. Default false.
	Shared bool `yaml:"shared" json:"shared"`
	// Vary lists key sources that also key the cache (a tenant header, a
	// user): requests that differ in one never share an entry. Zero: none.
	Vary []string `yaml:"vary" json:"vary,omitempty"`
	// Coalesce makes concurrent identical misses wait for the first one's
	// answer instead of each reaching a worker. Default false.
	Coalesce bool `yaml:"coalesce" json:"coalesce"`
}

// RateLimits are a route's rate_limit entries, in the order they are
// checked.
type RateLimits []*RateLimit

// RateLimit is one token bucket per value of a key source (SPEC section
// 2): burst tokens at the start and at most, refilled at rate; a request
// takes a token or is answered 429. A request without a value for the key
// is not limited by the entry, as with nginx's limit_req_zone.
type RateLimit struct {
	// Key is the key source whose values get a bucket each: header:NAME,
	// cookie:NAME, query:NAME, json:dotted.path, client_ip, path, or on a
	// route with auth api_key and jwt:CLAIM. Default client_ip.
	Key string `yaml:"key" json:"key"`
	// Rate refills each bucket: "100/s", "600/m", "1000/h". Required.
	Rate Rate `yaml:"rate" json:"rate"`
	// Burst is each bucket's size: how many requests a quiet key may send
	// at once. Default: the rate per second rounded up, at least 1.
	Burst int `yaml:"burst" json:"burst"`
	// Scope is local (each gateway process keeps its own buckets) or global
	// (the buckets live in the redis block's server and hold across every
	// replica sharing it). Default local.
	Scope string `yaml:"scope" json:"scope"`
	// OnRedisError decides a global limit's requests while Redis is down or
	// slower than redis.timeout: local (per-process buckets at the rate
	// and burst divided by replicas), allow, or deny (429). Only for scope
	// global; default local.
	OnRedisError string `yaml:"on_redis_error" json:"on_redis_error,omitempty"`
	// Replicas is how many gateways are expected to share a global limit;
	// while Redis is down each one falls back to 1/replicas of it. Only for
	// scope global. Default 1 (each replica falls back to the whole limit).
	Replicas int `yaml:"replicas" json:"replicas,omitempty"`
	// MaxKeys bounds the buckets one gateway keeps for the entry; past it
	// the least recently used key is forgotten (its bucket starts full
	// again). Default 100000.
	MaxKeys int `yaml:"max_keys" json:"max_keys"`
}

// Rate limit scopes and Redis error policies.
const (
	ScopeLocal           = "local"
	ScopeGlobal          = "global"
	RedisErrorLocal      = "local"
	RedisErrorAllow      = "allow"
	RedisErrorDeny       = "deny"
	DefaultMaxKeys       = 100000
	DefaultCacheTTL      = time.Minute
	DefaultCacheMaxBytes = 64 << 20
	MaxRateLimitKeys     = 10000000
)

// Retries are further attempts of a failed request, each on a backend not
// tried yet, all within the route's timeout. A request that reached a
// backend (anything but connect_error and no_free_conn) is retried only
// when its method is idempotent (RFC 9110: GET, HEAD, OPTIONS, PUT,
// DELETE, TRACE) or non_idempotent is set, as with nginx's
// proxy_next_upstream.
type Retries struct {
	// Attempts are tries after the first one, 0 to 10. 0 turns retries off.
	// Default 1, also in a block that leaves the key out.
	Attempts int `yaml:"attempts" json:"attempts"`
	// On lists the failures worth another try: connect_error, timeout,
	// bad_response, no_free_conn, http_5xx (any 5xx answer), or a status
	// code from 500 to 599 as a string ("503"). Default [connect_error].
	On []string `yaml:"on" json:"on"`
	// BudgetPercent caps retries at this share of the route's requests
	// over the last 10 seconds, so that retries cannot multiply the load
	// when everything fails. While that share comes to fewer than 3, up to
	// 3 retries may be in flight at once, so a quiet route still retries. Above 0,
	// at most 100; default 20.
	BudgetPercent float64 `yaml:"budget_percent" json:"budget_percent"`
	// NonIdempotent says the upstream is safe to retry for any method
	// (model predictions usually are). Default false.
	NonIdempotent bool `yaml:"non_idempotent" json:"non_idempotent,omitempty"`
}

// Retry conditions a route's retries.on may name besides status codes.
var RetryConditions = []string{"connect_error", "timeout", "bad_response", "no_free_conn", "http_5xx"}

// Shadow mirrors a share of a route's traffic to a candidate pool after the
// primary has answered, compares the two answers, and throws the
// candidate's away. The client never waits for it.
type Shadow struct {
	// Pool is the candidate that receives the copies. Required.
	Pool string `yaml:"pool" json:"pool"`
	// Percent of the route's requests mirrored, 0 to 100 (0.01 steps). On a
	// route with a sticky key, chosen by the key's hash, so the same users
	// are always mirrored; otherwise exactly that share of each run of
	// requests. Zero: nothing is mirrored (the report is kept).
	Percent float64 `yaml:"percent" json:"percent"`
	// MaxBody: requests with a larger body are not mirrored (counted as
	// skipped_body), and primary answers larger than this are not compared.
	// Zero: the route's max_body.
	MaxBody ByteSize `yaml:"max_body" json:"max_body"`
	// MaxInFlight caps the mirrors outstanding for the route; beyond it a
	// mirror is dropped (counted), never queued. Default 64.
	MaxInFlight int `yaml:"max_in_flight" json:"max_in_flight"`
	// Timeout bounds one mirror; it is never retried. Zero: the shadow
	// pool's timeout.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// Noise, when set, also sends a share of requests to a second copy of
	// the primary model, to learn which fields differ on their own.
	Noise *ShadowNoise `yaml:"noise" json:"noise,omitempty"`
	// Compare says how two answers are compared.
	Compare ShadowCompare `yaml:"compare" json:"compare"`
	// Record, when set, appends sampled mismatching pairs to a file.
	Record *ShadowRecord `yaml:"record" json:"record,omitempty"`
}

// ShadowNoise is the noise floor's source: a pool serving the same model as
// the primary. When the pool is one of the route's own variants, only the
// requests that variant answers are sampled, so a split's other arm is
// never taken for noise.
type ShadowNoise struct {
	// Pool is the second copy of the primary. Required.
	Pool string `yaml:"pool" json:"pool"`
	// Percent of the route's requests also sent to Pool, 0 to 100. Zero:
	// none.
	Percent float64 `yaml:"percent" json:"percent"`
}

// ShadowCompare holds the comparison settings of a shadowed route.
type ShadowCompare struct {
	// Ignore are field path globs left out of the comparison: "*" matches
	// any run of characters, "[*]" any index, and a bare name matches that
	// field at any depth (timestamp skips meta.timestamp).
	Ignore []string `yaml:"ignore" json:"ignore,omitempty"`
	// AbsTolerance and RelTolerance: two numbers match when they differ by
	// at most AbsTolerance, or by at most RelTolerance of the larger
	// magnitude. Zero: exact.
	AbsTolerance float64 `yaml:"abs_tolerance" json:"abs_tolerance"`
	RelTolerance float64 `yaml:"rel_tolerance" json:"rel_tolerance"`
	// Label is the field holding the predicted class; the report gives
	// the rate at which both sides agree on it. Zero: no label.
	Label string `yaml:"label" json:"label,omitempty"`
}

// ShadowRecord appends sampled mismatching pairs (request, both answers,
// latencies) as JSON lines, for offline study.
type ShadowRecord struct {
	// File is the JSON-lines file; its directory must exist. When it
	// would pass half of MaxBytes it becomes FILE.1 and a new one starts.
	// Required; unique across routes.
	File string `yaml:"file" json:"file"`
	// MaxBytes bounds FILE and FILE.1 together. Default 64MiB.
	MaxBytes ByteSize `yaml:"max_bytes" json:"max_bytes"`
	// PerSecond caps the pairs written per second. Default 10.
	PerSecond float64 `yaml:"per_second" json:"per_second"`
}

// Split shares a route between variants in proportion to their weights.
type Split struct {
	// Sticky is a key source (header:NAME, cookie:NAME, query:NAME,
	// json:dotted.path, client_ip, path): requests with the same key value
	// always get the same variant, on every replica and across restarts.
	// Zero, or a request without the key: each window of sum(weights)
	// requests is split in the exact proportions.
	Sticky string `yaml:"sticky" json:"sticky,omitempty"`
	// Salt is mixed into the sticky hash; change it to reshuffle who sees
	// what (and start the experiment afresh). Zero: the route's name.
	Salt string `yaml:"salt" json:"salt,omitempty"`
	// Override is a key source whose value, when it names a variant,
	// forces that variant (for testers). Unknown names are ignored.
	Override string `yaml:"override" json:"override,omitempty"`
	// Variants in order; the first is the baseline of the experiment
	// report. At least one with a weight above 0.
	Variants []Variant `yaml:"variants" json:"variants"`
}

// Variant is one arm of a split.
type Variant struct {
	// Name is reported in X-Sluice-Variant and metrics. Required, unique.
	Name string `yaml:"name" json:"name"`
	// Pool answers this variant's requests. Required.
	Pool string `yaml:"pool" json:"pool"`
	// Weight is the relative share, 0 to 10000; 0 takes the variant out.
	Weight int `yaml:"weight" json:"weight"`
}

// BlueGreen keeps two pools and sends all traffic to the active one. The
// idle one stays connected (and health-checked), so flipping is instant.
type BlueGreen struct {
	// Blue and Green are the two pools. Required, different.
	Blue  string `yaml:"blue" json:"blue"`
	Green string `yaml:"green" json:"green"`
	// Active is "blue" or "green". Required.
	Active string `yaml:"active" json:"active"`
}

// Canary is progressive delivery decided by the gateway (SPEC section 2):
// the candidate gets steps[i] percent of the route's requests; a step
// passes once it has lasted interval, both pools answered min_requests and
// every gate holds over the step's requests; a gate that fails with
// enough requests ends the rollout at once. Passing the last step (or a
// step of 100) promotes the candidate to all traffic.
type Canary struct {
	// Stable and Candidate are pools. Required, different.
	Stable    string `yaml:"stable" json:"stable"`
	Candidate string `yaml:"candidate" json:"candidate"`
	// Sticky is a key source: a key's requests all go to one pool, and a
	// key that reached the candidate keeps it at every later step (the
	// key's hash is below the percent or it is not). Zero: exact
	// proportions per request.
	Sticky string `yaml:"sticky" json:"sticky,omitempty"`
	// Salt mixes into the sticky hash. Default: the route's name.
	Salt string `yaml:"salt" json:"salt,omitempty"`
	// Steps are the candidate's percents, increasing, each above 0 and at
	// most 100. Default [5, 10, 25, 50, 100].
	Steps []float64 `yaml:"steps" json:"steps"`
	// Interval is the least time at a step. Default 1m.
	Interval Duration `yaml:"interval" json:"interval"`
	// MinRequests is how many requests each pool must have answered at a
	// step before any decision. Default 100.
	MinRequests int `yaml:"min_requests" json:"min_requests"`
	// Gates are the conditions a step must meet.
	Gates CanaryGates `yaml:"gates" json:"gates"`
	// OnFail is what a failed gate does: rollback (the candidate to 0%)
	// or pause (the candidate keeps its step until an operator acts).
	// Default rollback.
	OnFail string `yaml:"on_fail" json:"on_fail"`
	// Webhook, when set, receives a JSON POST for every transition
	// (step, waiting, promotion, rollback, pause, resume). Zero: none.
	Webhook string `yaml:"webhook" json:"webhook,omitempty"`
}

// CanaryGates compare the candidate with the stable pool over a step.
type CanaryGates struct {
	// SuccessRatio: the candidate's success rate (answers below 500)
	// must be at least this times the stable's. Default 0.95; 0 turns
	// the gate off.
	SuccessRatio *float64 `yaml:"success_ratio" json:"success_ratio"`
	// LatencyRatio: the candidate's p99 must be at most this times the
	// stable's, plus LatencySlack. Default 1.1; 0 turns the gate off.
	LatencyRatio *float64 `yaml:"latency_ratio" json:"latency_ratio"`
	// LatencySlack is added to the latency bound, so that sub-millisecond
	// jitter between two fast pools is not a regression. Default 1ms.
	LatencySlack Duration `yaml:"latency_slack" json:"latency_slack"`
	// MaxShadowMismatch: when the route also shadows the candidate pool,
	// the share of compared pairs that mismatch must stay below this.
	// Zero: no shadow gate.
	MaxShadowMismatch float64 `yaml:"max_shadow_mismatch" json:"max_shadow_mismatch,omitempty"`
}

// Match is the conjunction of its non-empty fields.
type Match struct {
	// PathPrefix matches normalised paths that start with it: a plain string
	// prefix, as nginx "location /prefix" and Envoy's prefix match.
	// Zero: any path.
	PathPrefix string `yaml:"path_prefix" json:"path_prefix,omitempty"`
	// Methods is the allowed methods, upper case. Zero: any method.
	Methods []string `yaml:"methods" json:"methods,omitempty"`
	// Host matches the Host header without its port, case-insensitively;
	// "*.example.com" matches any subdomain. Zero: any host.
	Host string `yaml:"host" json:"host,omitempty"`
	// Headers must all be present with exactly these values. Zero: no
	// header condition.
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`
}

// Defaults, in one place so docs, validation and code agree.
const (
	DefaultListen         = ":8080"
	DefaultAdminListen    = "127.0.0.1:9901"
	DefaultReadTimeout    = 10 * time.Second
	DefaultWriteTimeout   = 30 * time.Second
	DefaultIdleTimeout    = 60 * time.Second
	DefaultMaxHeaderBytes = 16 << 10
	DefaultMaxHeaders     = 100
	DefaultMaxBody        = 1 << 20
	DefaultDrainTimeout   = 15 * time.Second
	DefaultBalance        = "least_pending"
	DefaultMaxConns       = 512
	DefaultPoolTimeout    = 30 * time.Second
	DefaultStartTimeout   = 30 * time.Second
	DefaultStopTimeout    = 5 * time.Second
	DefaultRedisTimeout   = 25 * time.Millisecond
	// MaxRedisTimeout bounds redis.timeout: the admin report and the
	// final push at shutdown wait this long at most per round trip.
	MaxRedisTimeout = 10 * time.Second

	DefaultOutlierFailures       = 5
	DefaultOutlierEjectFor       = 30 * time.Second
	DefaultOutlierMaxEjectFor    = 300 * time.Second
	DefaultOutlierMaxEjectedPct  = 50
	DefaultHealthPath            = "/health"
	DefaultHealthInterval        = 2 * time.Second
	DefaultHealthTimeout         = 500 * time.Millisecond
	DefaultHealthyAfter          = 2
	DefaultUnhealthyAfter        = 3
	DefaultBreakerFailureRatio   = 0.5
	DefaultBreakerMinRequests    = 20
	DefaultBreakerFailures       = 5
	DefaultBreakerOpenFor        = 10 * time.Second
	DefaultBreakerHalfOpen       = 1
	DefaultBreakerWindow         = 10 * time.Second
	DefaultRetryAttempts         = 1
	DefaultRetryBudgetPercent    = 20.0
	DefaultShadowMaxInFlight     = 64
	DefaultShadowRecordMaxBytes  = 64 << 20
	DefaultShadowRecordPerSecond = 10
	DefaultCanaryInterval        = time.Minute
	DefaultCanaryMinRequests     = 100
	DefaultCanarySuccessRatio    = 0.95
	DefaultCanaryLatencyRatio    = 1.1
	DefaultCanaryLatencySlack    = time.Millisecond
	CanaryRollback               = "rollback"
	CanaryPause                  = "pause"
)

// Balance policies a pool may name.
var BalancePolicies = []string{"least_pending", "round_robin", "random", "p2c"}

// DefaultCanarySteps are a canary's steps when it names none.
func DefaultCanarySteps() []float64 { return []float64{5, 10, 25, 50, 100} }

// PoolNames lists the pools a route can send to: its pool, its split's
// variants' pools, both colours of a blue-green route, or a canary's
// stable and candidate.
func (r *Route) PoolNames() []string {
	switch {
	case r.Split != nil:
		names := make([]string, len(r.Split.Variants))
		for i, v := range r.Split.Variants {
			names[i] = v.Pool
		}
		return names
	case r.BlueGreen != nil:
		return []string{r.BlueGreen.Blue, r.BlueGreen.Green}
	case r.Canary != nil:
		return []string{r.Canary.Stable, r.Canary.Candidate}
	}
	return []string{r.Pool}
}

// DefaultRetries is what a route without a retries block does: one more
// try on another backend when a connection was refused.
func DefaultRetries() *Retries {
	return &Retries{Attempts: DefaultRetryAttempts, On: []string{"connect_error"}, BudgetPercent: DefaultRetryBudgetPercent}
}
