package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluice-gw/sluice/internal/shadow"
)

func applyDefaults(c *Config) {
	s := &c.Server
	setDefault(&s.Listen, DefaultListen)
	setDefault(&s.ReadTimeout, Duration(DefaultReadTimeout))
	setDefault(&s.WriteTimeout, Duration(DefaultWriteTimeout))
	setDefault(&s.IdleTimeout, Duration(DefaultIdleTimeout))
	setDefault(&s.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDefault(&s.MaxHeaders, DefaultMaxHeaders)
	setDefault(&s.MaxBody, DefaultMaxBody)
	setDefault(&s.DrainTimeout, Duration(DefaultDrainTimeout))
	setDefault(&c.Admin.Listen, DefaultAdminListen)
	applyAuthDefaults(s.Auth)
	if c.Redis != nil {
		setDefault(&c.Redis.Timeout, Duration(DefaultRedisTimeout))
	}
	for _, p := range c.Pools {
		if p == nil {
			continue
		}
		setDefault(&p.Balance, DefaultBalance)
		setDefault(&p.MaxConns, DefaultMaxConns)
		setDefault(&p.Timeout, Duration(DefaultPoolTimeout))
		o := &p.Outlier
		setDefault(&o.ConsecutiveFailures, DefaultOutlierFailures)
		setDefault(&o.EjectFor, Duration(DefaultOutlierEjectFor))
		setDefault(&o.MaxEjectFor, max(Duration(DefaultOutlierMaxEjectFor), o.EjectFor))
		setDefault(&o.MaxEjectedPercent, DefaultOutlierMaxEjectedPct)
		if h := p.Health; h != nil {
			setDefault(&h.Path, DefaultHealthPath)
			setDefault(&h.Interval, Duration(DefaultHealthInterval))
			setDefault(&h.Jitter, h.Interval/10)
			setDefault(&h.Timeout, min(Duration(DefaultHealthTimeout), h.Interval))
			setDefault(&h.HealthyAfter, DefaultHealthyAfter)
			setDefault(&h.UnhealthyAfter, DefaultUnhealthyAfter)
		}
		b := &p.Breaker
		setDefault(&b.FailureRatio, DefaultBreakerFailureRatio)
		setDefault(&b.MinRequests, DefaultBreakerMinRequests)
		setDefault(&b.ConsecutiveFailures, DefaultBreakerFailures)
		setDefault(&b.OpenFor, Duration(DefaultBreakerOpenFor))
		setDefault(&b.HalfOpenRequests, DefaultBreakerHalfOpen)
		setDefault(&b.Window, Duration(DefaultBreakerWindow))
		if sp := p.Spawn; sp != nil {
			if sp.Ports != "" {
				setDefault(&sp.Replicas, 1)
			} else {
				setDefault(&sp.Replicas, len(p.Backends))
			}
			setDefault(&sp.StartTimeout, Duration(DefaultStartTimeout))
			setDefault(&sp.StopTimeout, Duration(DefaultStopTimeout))
		}
	}
	for _, r := range c.Routes {
		if r == nil {
			continue
		}
		setDefault(&r.MaxBody, s.MaxBody)
		applyAuthDefaults(r.Auth)
		applyCORSDefaults(r.CORS)
		if r.Split != nil {
			setDefault(&r.Split.Salt, r.Name)
		}
		if cn := r.Canary; cn != nil {
			setDefault(&cn.Salt, r.Name)
			if cn.Steps == nil {
				cn.Steps = DefaultCanarySteps()
			}
			setDefault(&cn.Interval, Duration(DefaultCanaryInterval))
			setDefault(&cn.MinRequests, DefaultCanaryMinRequests)
			setDefault(&cn.OnFail, CanaryRollback)
			setDefault(&cn.Gates.LatencySlack, Duration(DefaultCanaryLatencySlack))
			if cn.Gates.SuccessRatio == nil {
				cn.Gates.SuccessRatio = ptr(DefaultCanarySuccessRatio)
			}
			if cn.Gates.LatencyRatio == nil {
				cn.Gates.LatencyRatio = ptr(DefaultCanaryLatencyRatio)
			}
		}
		// An explicit block got its attempts when it was decoded (see
		// Retries.UnmarshalYAML): 0 there means off, not "the default".
		if r.Retries == nil {
			r.Retries = DefaultRetries()
		} else {
			if len(r.Retries.On) == 0 {
				r.Retries.On = []string{"connect_error"}
			}
			setDefault(&r.Retries.BudgetPercent, DefaultRetryBudgetPercent)
		}
		if ca := r.Cache; ca != nil {
			setDefault(&ca.TTL, Duration(DefaultCacheTTL))
			setDefault(&ca.MaxBytes, DefaultCacheMaxBytes)
		}
		for _, rl := range r.RateLimit {
			if rl == nil {
				continue
			}
			setDefault(&rl.Key, "client_ip")
			setDefault(&rl.Burst, max(1, int(math.Ceil(rl.Rate.PerSecond()))))
			setDefault(&rl.Scope, ScopeLocal)
			if rl.Scope == ScopeGlobal {
				setDefault(&rl.OnRedisError, RedisErrorLocal)
				setDefault(&rl.Replicas, 1)
			}
			setDefault(&rl.MaxKeys, DefaultMaxKeys)
		}
		if sh := r.Shadow; sh != nil {
			setDefault(&sh.MaxBody, r.MaxBody)
			setDefault(&sh.MaxInFlight, DefaultShadowMaxInFlight)
			if p := c.Pools[sh.Pool]; p != nil {
				setDefault(&sh.Timeout, p.Timeout)
			}
			if rec := sh.Record; rec != nil {
				setDefault(&rec.MaxBytes, DefaultShadowRecordMaxBytes)
				setDefault(&rec.PerSecond, DefaultShadowRecordPerSecond)
			}
		}
		for i, m := range r.Match.Methods {
			r.Match.Methods[i] = strings.ToUpper(m)
		}
		r.Match.Host = strings.ToLower(r.Match.Host)
	}
}

func ptr[T any](v T) *T { return &v }

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// checker gathers problems, finding each one's line from the node tree.
type checker struct {
	doc      *yaml.Node
	problems Problems
}

func (c *checker) add(path []any, format string, args ...any) {
	c.problems = append(c.problems, Problem{Line: nodeAt(c.doc, path...), Path: pathString(path), Msg: fmt.Sprintf(format, args...)})
}

func pathString(path []any) string {
	var b strings.Builder
	for _, s := range path {
		switch v := s.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", v)
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(v)
		}
	}
	return b.String()
}

func at(path ...any) []any { return path }

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	tokenRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$") // RFC 9110 5.6.2
)

func validate(c *Config, doc *yaml.Node) Problems {
	ck := &checker{doc: doc}
	validateServer(ck, c)
	validateRedis(ck, c.Redis)
	validatePools(ck, c)
	validateRoutes(ck, c)
	return ck.problems
}

func validateServer(ck *checker, c *Config) {
	s := c.Server
	checkListen(ck, at("server", "listen"), s.Listen)
	checkListen(ck, at("admin", "listen"), c.Admin.Listen)
	if sameListen(s.Listen, c.Admin.Listen) {
		ck.add(at("admin", "listen"), "%q is also server.listen: the admin API must never share the client port", c.Admin.Listen)
	}
	if s.TLS != nil {
		for _, f := range []struct{ key, path string }{{"cert", s.TLS.Cert}, {"key", s.TLS.Key}} {
			if f.path == "" {
				ck.add(at("server", "tls", f.key), "is required when tls is set")
			} else if _, err := os.Stat(f.path); err != nil {
				ck.add(at("server", "tls", f.key), "cannot read %q: %v", f.path, unwrapPathError(err))
			}
		}
	}
	if s.RedirectHTTP != "" {
		checkListen(ck, at("server", "redirect_http"), s.RedirectHTTP)
		switch {
		case s.TLS == nil:
			ck.add(at("server", "redirect_http"), "redirects to https, so it needs server.tls")
		case sameListen(s.RedirectHTTP, s.Listen):
			ck.add(at("server", "redirect_http"), "%q is also server.listen", s.RedirectHTTP)
		case sameListen(s.RedirectHTTP, c.Admin.Listen):
			ck.add(at("server", "redirect_http"), "%q is also admin.listen", s.RedirectHTTP)
		}
	}
	if s.MaxHeaderBytes < 1024 {
		ck.add(at("server", "max_header_bytes"), "must be at least 1KiB, got %d bytes", s.MaxHeaderBytes)
	}
	if s.MaxHeaders < 1 {
		ck.add(at("server", "max_headers"), "must be at least 1, got %d", s.MaxHeaders)
	}
	for i, p := range s.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			ck.add(at("server", "trusted_proxies", i), "%q is neither an IP address nor a CIDR range", p)
		}
	}
	if s.Auth != nil {
		validateAuth(ck, s.Auth, func(rest ...any) []any { return append(at("server", "auth"), rest...) })
	}
	if s.Audit != nil {
		validateAudit(ck, s.Audit, func(rest ...any) []any { return append(at("server", "audit"), rest...) })
	}
}

func checkListen(ck *checker, path []any, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		ck.add(path, "%q is not host:port", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		ck.add(path, "%q has no valid port", addr)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			ck.add(path, "host %q is not an IP address or localhost", host)
		}
	}
}

// sameListen reports whether two listen addresses would collide: equal
// ports where either one binds every interface, or equal host and port.
func sameListen(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb || pa == "0" {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wildcard(ha) || wildcard(hb)
}

func validateRedis(ck *checker, r *Redis) {
	if r == nil {
		return
	}
	if r.Addr == "" {
		ck.add(at("redis", "addr"), "is required with redis: the server's host:port")
	} else if host, port, err := net.SplitHostPort(r.Addr); err != nil || host == "" {
		ck.add(at("redis", "addr"), "%q is not host:port", r.Addr)
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		ck.add(at("redis", "addr"), "%q has no valid port", r.Addr)
	}
	if r.DB < 0 {
		ck.add(at("redis", "db"), "must be 0 or more, got %d", r.DB)
	}
	if r.Timeout.D() > MaxRedisTimeout {
		ck.add(at("redis", "timeout"), "must be at most %v, got %v: a slower Redis counts as down", MaxRedisTimeout, r.Timeout.D())
	}
}

func validatePools(ck *checker, c *Config) {
	if len(c.Pools) == 0 {
		ck.add(at("pools"), "at least one pool is required")
	}
	for _, name := range sortedKeys(c.Pools) {
		p := c.Pools[name]
		path := func(rest ...any) []any { return append(at("pools", name), rest...) }
		if !nameRE.MatchString(name) {
			ck.add(path(), "pool name %q must be letters, digits, '.', '_' or '-' (at most 63)", name)
		}
		if p == nil || (len(p.Backends) == 0 && (p.Spawn == nil || p.Spawn.Ports == "")) {
			ck.add(path(), "pool %q has no backends (list them, or spawn workers on a port range)", name)
			continue
		}
		if p.Spawn != nil {
			validateSpawn(ck, p, path)
		}
		seen := map[string]bool{}
		for i, b := range p.Backends {
			if _, port, err := net.SplitHostPort(b.Addr); err != nil || port == "" || port == "0" {
				ck.add(path("backends", i), "backend %q is not host:port", b.Addr)
			} else if seen[b.Addr] {
				ck.add(path("backends", i), "backend %q is listed twice", b.Addr)
			}
			seen[b.Addr] = true
			if b.Weight < 1 || b.Weight > 10000 {
				ck.add(path("backends", i), "weight must be 1 to 10000, got %d", b.Weight)
			}
		}
		validateOutlier(ck, &p.Outlier, path)
		if p.Health != nil {
			validateHealth(ck, p.Health, path)
		}
		validateBreaker(ck, &p.Breaker, path)
		if !slices.Contains(BalancePolicies, p.Balance) {
			ck.add(path("balance"), "unknown policy %q (one of %s)", p.Balance, strings.Join(BalancePolicies, ", "))
		}
		if p.MaxConns < 1 {
			ck.add(path("max_conns"), "must be at least 1, got %d", p.MaxConns)
		}
	}
}

func validateSpawn(ck *checker, p *Pool, path func(...any) []any) {
	sp := p.Spawn
	if len(sp.Command) == 0 || sp.Command[0] == "" {
		ck.add(path("spawn", "command"), "is required: the program and its arguments")
	} else if !slices.ContainsFunc(sp.Command, func(a string) bool {
		return strings.Contains(a, "{addr}") || strings.Contains(a, "{port}")
	}) {
		ck.add(path("spawn", "command"), "no argument holds {addr} or {port}: every replica would listen on the same address")
	}
	if sp.Replicas < 1 || sp.Replicas > 64 {
		ck.add(path("spawn", "replicas"), "must be 1 to 64, got %d", sp.Replicas)
	}
	if sp.Ports == "" {
		if sp.Replicas > len(p.Backends) {
			ck.add(path("spawn", "replicas"), "%d replicas but only %d backend addresses to run them on", sp.Replicas, len(p.Backends))
		}
		return
	}
	if len(p.Backends) > 0 {
		ck.add(path("spawn", "ports"), "ports and backends exclude each other: replicas take their addresses from one of them")
	}
	if lo, hi, err := ParsePortRange(sp.Ports); err != nil {
		ck.add(path("spawn", "ports"), "%q: %v", sp.Ports, err)
	} else if hi-lo+1 < sp.Replicas {
		ck.add(path("spawn", "ports"), "%q holds %d ports for %d replicas", sp.Ports, hi-lo+1, sp.Replicas)
	}
}

// ParsePortRange reads "9101-9199" (or a single port).
func ParsePortRange(s string) (lo, hi int, err error) {
	a, b, found := strings.Cut(s, "-")
	if !found {
		b = a
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("not a port range like 9101-9199")
	}
	return lo, hi, nil
}

func validateRoutes(ck *checker, c *Config) {
	if len(c.Routes) == 0 {
		ck.add(at("routes"), "at least one route is required")
	}
	names := map[string]int{}
	recordFiles := map[string]string{}
	for i, r := range c.Routes {
		path := func(rest ...any) []any { return append(at("routes", i), rest...) }
		if r == nil {
			ck.add(path(), "empty route")
			continue
		}
		switch prev, dup := names[r.Name]; {
		case r.Name == "":
			ck.add(path(), "route has no name")
		case !nameRE.MatchString(r.Name):
			ck.add(path("name"), "route name %q must be letters, digits, '.', '_' or '-' (at most 63)", r.Name)
		case dup:
			ck.add(path("name"), "duplicate route name %q (also routes[%d])", r.Name, prev)
		}
		names[r.Name] = i
		validateTarget(ck, c, r, path)
		if r.Fallback != "" {
			validateFallback(ck, c, r, path)
		}
		if r.Retries != nil {
			validateRetries(ck, r.Retries, path)
		}
		if r.Shadow != nil {
			validateShadow(ck, c, r, path, recordFiles)
		}
		if r.Cache != nil {
			validateCache(ck, c, r.Cache, func(rest ...any) []any { return path(append([]any{"cache"}, rest...)...) })
		}
		if r.MaxInFlight < 0 || r.MaxInFlight > 1000000 {
			ck.add(path("max_in_flight"), "must be 0 (no cap) to 1000000, got %d", r.MaxInFlight)
		}
		for j, rl := range r.RateLimit {
			validateRateLimit(ck, c, rl, func(rest ...any) []any { return path(append([]any{"rate_limit", j}, rest...)...) })
		}
		if r.Auth != nil {
			validateAuth(ck, r.Auth, func(rest ...any) []any { return path(append([]any{"auth"}, rest...)...) })
		}
		if r.CORS != nil {
			validateCORS(ck, r.CORS, func(rest ...any) []any { return path(append([]any{"cors"}, rest...)...) })
		}
		for j, tag := range r.Tags {
			if !nameRE.MatchString(tag) {
				ck.add(path("tags", j), "tag %q must be letters, digits, '.', '_' or '-' (at most 63)", tag)
			}
		}
		validateIdentityKeys(ck, c, r, path)
		m := r.Match
		if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
			ck.add(path("match", "path_prefix"), "%q must start with /", m.PathPrefix)
		}
		if r.StripPrefix != "" && !strings.HasPrefix(r.StripPrefix, "/") {
			ck.add(path("strip_prefix"), "%q must start with /", r.StripPrefix)
		}
		for j, meth := range m.Methods {
			if !tokenRE.MatchString(meth) {
				ck.add(path("match", "methods", j), "%q is not an HTTP method", meth)
			}
		}
		for _, h := range sortedKeys(m.Headers) {
			if !tokenRE.MatchString(h) {
				ck.add(path("match", "headers", h), "%q is not a valid header name", h)
			} else if m.Headers[h] == "" {
				ck.add(path("match", "headers", h), "an empty value can never match; give the value the header must have")
			}
		}
		if host := strings.TrimPrefix(m.Host, "*."); m.Host != "" && (host == "" || strings.ContainsAny(host, " /:*")) {
			ck.add(path("match", "host"), "%q must be a host name without port or scheme, or *.domain", m.Host)
		}
	}
}

// validateTarget checks the one of pool, split and blue_green a route has.
func validateTarget(ck *checker, c *Config, r *Route, path func(...any) []any) {
	set := 0
	for _, has := range []bool{r.Pool != "", r.Split != nil, r.BlueGreen != nil, r.Canary != nil} {
		if has {
			set++
		}
	}
	if set != 1 {
		ck.add(path(), "route %q needs exactly one of pool, split, blue_green and canary (has %d)", r.Name, set)
		return
	}
	pool := poolRef(ck, c)
	switch {
	case r.Pool != "":
		pool(path("pool"), r.Pool)
	case r.BlueGreen != nil:
		bg := r.BlueGreen
		pool(path("blue_green", "blue"), bg.Blue)
		pool(path("blue_green", "green"), bg.Green)
		if bg.Blue != "" && bg.Blue == bg.Green {
			ck.add(path("blue_green", "green"), "blue and green are the same pool %q", bg.Blue)
		}
		if bg.Active != "blue" && bg.Active != "green" {
			ck.add(path("blue_green", "active"), "must be blue or green, got %q", bg.Active)
		}
	case r.Canary != nil:
		validateCanary(ck, r.Canary, path, pool)
	default:
		validateSplit(ck, r.Split, path, pool)
	}
}

func validateCanary(ck *checker, cn *Canary, path func(...any) []any, pool func([]any, string)) {
	cp := func(rest ...any) []any { return path(append([]any{"canary"}, rest...)...) }
	pool(cp("stable"), cn.Stable)
	pool(cp("candidate"), cn.Candidate)
	if cn.Stable != "" && cn.Stable == cn.Candidate {
		ck.add(cp("candidate"), "stable and candidate are the same pool %q", cn.Stable)
	}
	if cn.Sticky != "" {
		if _, err := ParseKeySource(cn.Sticky); err != nil {
			ck.add(cp("sticky"), "%v", err)
		}
	}
	if len(cn.Steps) == 0 {
		ck.add(cp("steps"), "needs at least one step (a percent for the candidate)")
	}
	for i, p := range cn.Steps {
		switch {
		case !(p > 0 && p <= 100):
			ck.add(cp("steps", i), "must be above 0 and at most 100, got %v", p)
		case i > 0 && p <= cn.Steps[i-1]:
			ck.add(cp("steps", i), "steps must increase: %v after %v", p, cn.Steps[i-1])
		}
	}
	if cn.Interval.D() <= 0 {
		ck.add(cp("interval"), "must be above 0, got %s", durText(cn.Interval.D()))
	}
	if cn.MinRequests < 1 {
		ck.add(cp("min_requests"), "must be at least 1, got %d", cn.MinRequests)
	}
	g := cn.Gates
	if r := *g.SuccessRatio; r < 0 || r > 1 {
		ck.add(cp("gates", "success_ratio"), "must be 0 (off) to 1, got %v", r)
	}
	if r := *g.LatencyRatio; r < 0 || (r > 0 && r < 1) {
		ck.add(cp("gates", "latency_ratio"), "must be 0 (off) or at least 1, got %v", r)
	}
	if g.LatencySlack.D() < 0 {
		ck.add(cp("gates", "latency_slack"), "must not be negative, got %s", durText(g.LatencySlack.D()))
	}
	if g.MaxShadowMismatch < 0 || g.MaxShadowMismatch > 1 {
		ck.add(cp("gates", "max_shadow_mismatch"), "must be 0 (off) to 1, got %v", g.MaxShadowMismatch)
	}
	if cn.OnFail != CanaryRollback && cn.OnFail != CanaryPause {
		ck.add(cp("on_fail"), "must be rollback or pause, got %q", cn.OnFail)
	}
	if cn.Webhook != "" {
		if u, err := url.Parse(cn.Webhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			ck.add(cp("webhook"), "must be an http:// or https:// URL, got %q", cn.Webhook)
		}
	}
}

func validateSplit(ck *checker, sp *Split, path func(...any) []any, pool func([]any, string)) {
	if len(sp.Variants) == 0 {
		ck.add(path("split"), "split has no variants")
	}
	names, total := map[string]bool{}, 0
	for i, v := range sp.Variants {
		vp := func(rest ...any) []any { return path(append([]any{"split", "variants", i}, rest...)...) }
		switch {
		case !nameRE.MatchString(v.Name):
			ck.add(vp("name"), "variant name %q must be letters, digits, '.', '_' or '-' (at most 63)", v.Name)
		case names[v.Name]:
			ck.add(vp("name"), "duplicate variant name %q", v.Name)
		}
		names[v.Name] = true
		pool(vp("pool"), v.Pool)
		if v.Weight < 0 || v.Weight > 10000 {
			ck.add(vp("weight"), "must be 0 to 10000, got %d", v.Weight)
		}
		total += max(v.Weight, 0)
	}
	if len(sp.Variants) > 0 && total == 0 {
		ck.add(path("split", "variants"), "every weight is 0: no variant would get traffic")
	}
	for _, f := range []struct{ key, value string }{{"sticky", sp.Sticky}, {"override", sp.Override}} {
		if f.value == "" {
			continue
		}
		if _, err := ParseKeySource(f.value); err != nil {
			ck.add(path("split", f.key), "%v", err)
		}
	}
}

func validateOutlier(ck *checker, o *Outlier, path func(...any) []any) {
	if o.ConsecutiveFailures < 1 || o.ConsecutiveFailures > 10000 {
		ck.add(path("outlier", "consecutive_failures"), "must be 1 to 10000, got %d", o.ConsecutiveFailures)
	}
	if o.MaxEjectFor < o.EjectFor {
		ck.add(path("outlier", "max_eject_for"), "%v is shorter than eject_for %v", o.MaxEjectFor.D(), o.EjectFor.D())
	}
	if o.MaxEjectedPercent < 1 || o.MaxEjectedPercent > 100 {
		ck.add(path("outlier", "max_ejected_percent"), "must be 1 to 100, got %d", o.MaxEjectedPercent)
	}
}

// Bounds of the health and breaker settings: a probe or breaker state
// faster than these would spin, a slower one would never act.
const (
	minHealthInterval = 10 * time.Millisecond
	minBreakerOpenFor = 10 * time.Millisecond
	minBreakerWindow  = 100 * time.Millisecond
	maxProbeOrBreaker = time.Hour
)

func validateHealth(ck *checker, h *Health, path func(...any) []any) {
	hp := func(key string) []any { return path("health", key) }
	if !strings.HasPrefix(h.Path, "/") || strings.ContainsFunc(h.Path, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || r == '#'
	}) {
		ck.add(hp("path"), "%q must be a plain path starting with / (no spaces, control characters, non-ASCII or #)", h.Path)
	}
	inRange := func(key string, d Duration, lo time.Duration) {
		if d.D() < lo || d.D() > maxProbeOrBreaker {
			ck.add(hp(key), "must be %s to %s, got %s", durText(lo), durText(maxProbeOrBreaker), durText(d.D()))
		}
	}
	inRange("interval", h.Interval, minHealthInterval)
	if h.Jitter > h.Interval {
		ck.add(hp("jitter"), "%s is longer than interval %s: it must be 0 to interval", durText(h.Jitter.D()), durText(h.Interval.D()))
	}
	if h.Timeout > h.Interval {
		ck.add(hp("timeout"), "%s is longer than interval %s: a probe would still run when the next one starts", durText(h.Timeout.D()), durText(h.Interval.D()))
	}
	for _, f := range []struct {
		key string
		n   int
	}{{"healthy_after", h.HealthyAfter}, {"unhealthy_after", h.UnhealthyAfter}} {
		if f.n < 1 || f.n > 100 {
			ck.add(hp(f.key), "must be 1 to 100 probes in a row, got %d", f.n)
		}
	}
}

// durText writes a duration the way an operator would: 1h, not 1h0m0s.
func durText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func validateBreaker(ck *checker, b *Breaker, path func(...any) []any) {
	bp := func(key string) []any { return path("breaker", key) }
	if !(b.FailureRatio > 0 && b.FailureRatio <= 1) {
		ck.add(bp("failure_ratio"), "must be above 0 and at most 1, got %v", b.FailureRatio)
	}
	for _, f := range []struct {
		key     string
		n, most int
	}{
		{"min_requests", b.MinRequests, 1_000_000},
		{"consecutive_failures", b.ConsecutiveFailures, 1_000_000},
		{"half_open_requests", b.HalfOpenRequests, 1000},
	} {
		if f.n < 1 || f.n > f.most {
			ck.add(bp(f.key), "must be 1 to %d, got %d", f.most, f.n)
		}
	}
	for _, f := range []struct {
		key   string
		d     Duration
		least time.Duration
	}{{"open_for", b.OpenFor, minBreakerOpenFor}, {"window", b.Window, minBreakerWindow}} {
		if f.d.D() < f.least || f.d.D() > maxProbeOrBreaker {
			ck.add(bp(f.key), "must be %s to %s, got %s", durText(f.least), durText(maxProbeOrBreaker), durText(f.d.D()))
		}
	}
}

// validateFallback checks that a route's fallback is a defined pool the
// route does not already send everything to: falling back to the pool
// that just failed would only fail again.
func validateFallback(ck *checker, c *Config, r *Route, path func(...any) []any) {
	poolRef(ck, c)(path("fallback"), r.Fallback)
	names := r.PoolNames()
	if len(names) > 0 && !slices.ContainsFunc(names, func(n string) bool { return n != r.Fallback }) {
		ck.add(path("fallback"), "%q is the route's only pool: it would fall back to itself; name another pool", r.Fallback)
	}
}

func validateRetries(ck *checker, rt *Retries, path func(...any) []any) {
	rp := func(rest ...any) []any { return path(append([]any{"retries"}, rest...)...) }
	if rt.Attempts < 0 || rt.Attempts > 10 {
		ck.add(rp("attempts"), "must be 0 (off) to 10, got %d", rt.Attempts)
	}
	seen := map[string]bool{}
	for i, on := range rt.On {
		switch {
		case !slices.Contains(RetryConditions, on) && !isRetryStatus(on):
			ck.add(rp("on", i), "unknown condition %q (one of %s, or a status code 500 to 599)", on, strings.Join(RetryConditions, ", "))
		case seen[on]:
			ck.add(rp("on", i), "%q is listed twice", on)
		}
		seen[on] = true
	}
	if !(rt.BudgetPercent > 0 && rt.BudgetPercent <= 100) {
		ck.add(rp("budget_percent"), "must be above 0 and at most 100, got %v", rt.BudgetPercent)
	}
}

// validateCache checks a route's cache block.
func validateCache(ck *checker, c *Config, ca *Cache, path func(...any) []any) {
	if d := ca.TTL.D(); d < time.Second || d > 30*24*time.Hour {
		ck.add(path("ttl"), "must be 1s to 720h, got %v", d)
	}
	if ca.MaxBytes < 64<<10 || ca.MaxBytes > 64<<30 {
		ck.add(path("max_bytes"), "must be 64KiB to 64GiB, got %d bytes", ca.MaxBytes)
	}
	if ca.Shared && c.Redis == nil {
		ck.add(path("shared"), "needs a redis block: the shared cache lives in Redis")
	}
	for i, v := range ca.Vary {
		if _, err := ParseKeySource(v); err != nil {
			ck.add(path("vary", i), "%v", err)
		}
	}
}

// validateRateLimit checks one rate_limit entry.
func validateRateLimit(ck *checker, c *Config, rl *RateLimit, path func(...any) []any) {
	if rl == nil {
		ck.add(path(), "empty rate_limit entry")
		return
	}
	if _, err := ParseKeySource(rl.Key); err != nil {
		ck.add(path("key"), "%v", err)
	}
	switch perSecond := rl.Rate.PerSecond(); {
	case perSecond == 0:
		ck.add(path("rate"), "is required: requests per s, m or h, such as 100/s")
	case perSecond > 1e6:
		ck.add(path("rate"), "must be at most 1000000/s, got %v", rl.Rate)
	}
	if rl.Burst < 1 || rl.Burst > 1000000 {
		ck.add(path("burst"), "must be 1 to 1000000, got %d", rl.Burst)
	}
	if rl.MaxKeys < 1 || rl.MaxKeys > MaxRateLimitKeys {
		ck.add(path("max_keys"), "must be 1 to %d, got %d", MaxRateLimitKeys, rl.MaxKeys)
	}
	switch rl.Scope {
	case ScopeLocal:
		if rl.OnRedisError != "" {
			ck.add(path("on_redis_error"), "applies to scope: global only")
		}
		if rl.Replicas != 0 {
			ck.add(path("replicas"), "applies to scope: global only")
		}
	case ScopeGlobal:
		if c.Redis == nil {
			ck.add(path("scope"), "global needs a redis block: the buckets live in Redis")
		}
		switch rl.OnRedisError {
		case RedisErrorLocal, RedisErrorAllow, RedisErrorDeny:
		default:
			ck.add(path("on_redis_error"), "must be local, allow or deny, got %q", rl.OnRedisError)
		}
		if rl.Replicas < 1 || rl.Replicas > 10000 {
			ck.add(path("replicas"), "must be 1 to 10000, got %d", rl.Replicas)
		}
	default:
		ck.add(path("scope"), "must be local or global, got %q", rl.Scope)
	}
}

// isRetryStatus reports whether s is a 5xx status code written as three
// digits, as retries.on takes them ("503", or 503 unquoted).
func isRetryStatus(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && len(s) == 3 && n >= 500 && n <= 599
}

// poolRef returns a check that a field names a defined pool.
func poolRef(ck *checker, c *Config) func(p []any, name string) {
	return func(p []any, name string) {
		if name == "" {
			ck.add(p, "names no pool")
		} else if _, ok := c.Pools[name]; !ok {
			ck.add(p, "unknown pool %q (defined: %s)", name, strings.Join(sortedKeys(c.Pools), ", "))
		}
	}
}

// validateShadow checks a route's shadow block. recordFiles maps record
// files already named to their route, so that two routes never write one.
func validateShadow(ck *checker, c *Config, r *Route, path func(...any) []any, recordFiles map[string]string) {
	sh := r.Shadow
	sp := func(rest ...any) []any { return path(append([]any{"shadow"}, rest...)...) }
	pool := poolRef(ck, c)
	percent := func(p []any, v float64) {
		if !(v >= 0 && v <= 100) {
			ck.add(p, "must be 0 to 100, got %v", v)
		}
	}
	pool(sp("pool"), sh.Pool)
	percent(sp("percent"), sh.Percent)
	if sh.MaxBody < 0 {
		ck.add(sp("max_body"), "must not be negative")
	}
	if sh.MaxInFlight < 1 || sh.MaxInFlight > 100000 {
		ck.add(sp("max_in_flight"), "must be 1 to 100000, got %d", sh.MaxInFlight)
	}
	if sh.Timeout < 0 {
		ck.add(sp("timeout"), "must not be negative")
	}
	if n := sh.Noise; n != nil {
		pool(sp("noise", "pool"), n.Pool)
		percent(sp("noise", "percent"), n.Percent)
		if n.Pool != "" && n.Pool == sh.Pool {
			ck.add(sp("noise", "pool"), "is the shadow pool itself; the noise pool must serve the primary's model")
		}
	}
	cmp := sh.Compare
	for _, f := range []struct {
		key string
		v   float64
	}{{"abs_tolerance", cmp.AbsTolerance}, {"rel_tolerance", cmp.RelTolerance}} {
		if !(f.v >= 0) || math.IsInf(f.v, 0) {
			ck.add(sp("compare", f.key), "must be a finite number, 0 or more, got %v", f.v)
		}
	}
	// The tolerances are checked above; this checks the patterns.
	if _, err := shadow.NewComparer(cmp.Ignore, 0, 0, cmp.Label); err != nil {
		ck.add(sp("compare"), "%v", err)
	}
	if rec := sh.Record; rec != nil {
		switch prev, dup := recordFiles[filepath.Clean(rec.File)]; {
		case rec.File == "":
			ck.add(sp("record", "file"), "names no file")
		case dup:
			ck.add(sp("record", "file"), "%s is already recorded to by route %q", rec.File, prev)
		default:
			recordFiles[filepath.Clean(rec.File)] = r.Name
			if st, err := os.Stat(filepath.Dir(rec.File)); err != nil || !st.IsDir() {
				ck.add(sp("record", "file"), "directory of %s does not exist", rec.File)
			}
		}
		if rec.MaxBytes < 1<<10 {
			ck.add(sp("record", "max_bytes"), "must be at least 1KiB, got %d bytes", rec.MaxBytes)
		}
		if !(rec.PerSecond > 0) || math.IsInf(rec.PerSecond, 0) {
			ck.add(sp("record", "per_second"), "must be above 0, got %v", rec.PerSecond)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// parsePrefix reads a CIDR range or a bare address (a one-address range).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// TrustedPrefixes returns server.trusted_proxies parsed; Parse has already
// rejected any that do not parse.
func (s Server) TrustedPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(s.TrustedProxies))
	for _, p := range s.TrustedProxies {
		if pr, err := parsePrefix(p); err == nil {
			out = append(out, pr)
		}
	}
	return out
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// ListenerChanges names the settings that differ between two configs but
// are bound when the listeners start, so a reload cannot apply them.
func ListenerChanges(old, next *Config) []string {
	var out []string
	a, b := old.Server, next.Server
	diff := func(name string, changed bool) {
		if changed {
			out = append(out, name)
		}
	}
	diff("server.listen", a.Listen != b.Listen)
	diff("server.tls", (a.TLS == nil) != (b.TLS == nil))
	diff("server.redirect_http", a.RedirectHTTP != b.RedirectHTTP)
	diff("server.read_timeout", a.ReadTimeout != b.ReadTimeout)
	diff("server.write_timeout", a.WriteTimeout != b.WriteTimeout)
	diff("server.idle_timeout", a.IdleTimeout != b.IdleTimeout)
	diff("server.max_header_bytes", a.MaxHeaderBytes != b.MaxHeaderBytes)
	diff("admin.listen", old.Admin.Listen != next.Admin.Listen)
	diff("admin.pprof", old.Admin.Pprof != next.Admin.Pprof)
	return out
}
