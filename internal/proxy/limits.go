package proxy

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/limits"
	"github.com/sluice-gw/sluice/internal/metrics"
)

// routeLimits are a route's admission limits: a cap on requests in
// progress and rate limits per key. The counters and buckets live in the
// limits registry and outlive the snapshot.
type routeLimits struct {
	maxInFlight int64               // 0: no cap
	inFlight    *limits.Concurrency // nil without a cap
	rates       []rateLimit
	decisions   *metrics.RateLimitSeries // nil without rate limits
}

// rateLimit is one compiled rate_limit entry.
type rateLimit struct {
	key     keyReader
	limiter limits.Limiter
	burst   int
}

// compileLimits builds a route's limits, taking the state of unchanged
// entries from the registry; used collects what the route keeps.
func compileLimits(rc *config.Route, reg *limits.Registry, m *metrics.Metrics, used *limitsInUse) routeLimits {
	var l routeLimits
	if rc.MaxInFlight > 0 {
		l.maxInFlight = int64(rc.MaxInFlight)
		l.inFlight = reg.Concurrency(rc.Name)
		used.counters[l.inFlight] = true
	}
	for _, e := range rc.RateLimit {
		src, _ := config.ParseKeySource(e.Key) // validated
		spec := limits.Spec{
			PerSecond: e.Rate.PerSecond(), Burst: e.Burst, MaxKeys: e.MaxKeys,
			Global: e.Scope == config.ScopeGlobal, OnRedisError: e.OnRedisError, Replicas: e.Replicas,
		}
		lim := reg.Limiter(rc.Name, e.Key, spec)
		used.limiters[lim] = true
		l.rates = append(l.rates, rateLimit{key: keyReader{src: src}, limiter: lim, burst: e.Burst})
	}
	if len(l.rates) > 0 {
		l.decisions = m.RateLimit(rc.Name)
	}
	return l
}

// limitsInUse are the registry's limiters and counters a snapshot uses.
type limitsInUse struct {
	limiters map[limits.Limiter]bool
	counters map[*limits.Concurrency]bool
}

// enter counts a request in progress, or reports that the route is at its
// max_in_flight. A request that entered must leave.
func (l *routeLimits) enter() bool {
	return l.inFlight == nil || l.inFlight.Acquire(l.maxInFlight)
}

func (l *routeLimits) leave() {
	if l.inFlight != nil {
		l.inFlight.Release()
	}
}

// rateLimited takes a token from each of the route's buckets that the
// request has a key for, in order, and returns the entry that refused it
// and how long until it has a token again (nil when every one allowed).
// Entries before the refusing one keep the token taken, as when each
// limit is its own nginx limit_req.
func (l *routeLimits) rateLimited(ctx *fasthttp.RequestCtx, trusted []netip.Prefix, now time.Time, scratch []byte) (*rateLimit, time.Duration) {
	if len(l.rates) == 0 {
		return nil, 0
	}
	keyed := false
	for i := range l.rates {
		rl := &l.rates[i]
		value := rl.key.read(ctx, trusted, scratch[:0])
		if len(value) == 0 {
			continue // no value, no bucket (nginx: an empty key is not accounted)
		}
		keyed = true
		if v := rl.limiter.Take(limits.KeyHash(value), now); !v.Allowed {
			l.decisions.Limited.Inc()
			return rl, v.Wait
		}
	}
	if keyed {
		l.decisions.Allowed.Inc()
	} else {
		l.decisions.NoKey.Inc()
	}
	return nil, 0
}

// writeRateLimited answers 429 with when to come back: Retry-After and the
// RateLimit-* fields of the IETF draft (draft-ietf-httpapi-ratelimit-
// headers): the bucket's size, the tokens left (none) and the seconds
// until one is back. Waits are rounded up to whole seconds, at least 1.
func writeRateLimited(ctx *fasthttp.RequestCtx, rl *rateLimit, wait time.Duration, id []byte) {
	writeFailure(ctx, FailRateLimited, id)
	secs := max(1, int64((wait+time.Second-1)/time.Second))
	var buf [20]byte
	h := &ctx.Response.Header
	h.SetBytesV("Retry-After", strconv.AppendInt(buf[:0], secs, 10))
	h.SetBytesV("RateLimit-Limit", strconv.AppendInt(buf[:0], int64(rl.burst), 10))
	h.Set("RateLimit-Remaining", "0")
	h.SetBytesV("RateLimit-Reset", strconv.AppendInt(buf[:0], secs, 10))
}

// LimitStats are the route's requests in progress (counted only when it
// has max_in_flight) and the stats of each rate_limit entry, in order.
func (r *Route) LimitStats() (inFlight int64, rates []limits.Stats) {
	if r.limits.inFlight != nil {
		inFlight = r.limits.inFlight.InFlight()
	}
	for _, rl := range r.limits.rates {
		rates = append(rates, rl.limiter.Stats())
	}
	return inFlight, rates
}
