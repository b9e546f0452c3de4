package proxy

import (
	"math/rand/v2"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/backend"
	"github.com/sluice-gw/sluice/internal/metrics"
)

// triedOnStack is room for the backends one request tries without
// allocating: the first attempt, retries.attempts (at most 10) and a few
// breaker refusals. More still works, on the heap.
const triedOnStack = 16

// try sends the request upstream in the order failures degrade (SPEC
// section 2): a backend of the variant's pool, then others of that pool
// as the route's retries allow, then the route's fallback pool. It
// returns who answered (v, or the route's fallback variant), when the
// answering attempt was sent, and an error when no backend answered: the
// last attempt's, or an unavailable error when no backend was there to
// try. A 5xx answer that is not retried is an answer: it goes to the
// client as it is.
func (p *Proxy) try(ctx *fasthttp.RequestCtx, route *Route, v *Variant, start time.Time, id []byte) (*Variant, time.Time, error) {
	rp := route.retries
	rp.budget.request(start)
	var deadline time.Time
	if route.timeout > 0 {
		deadline = start.Add(route.timeout)
	}
	pool := v.Pool
	var triedBuf [triedOnStack]*Member
	tried := triedBuf[:0]
	// The last attempt: who made it, when, how it ended (err nil with a
	// 5xx answer). answered is nil until an attempt was sent.
	var answered *Variant
	var sent time.Time
	var last error
	for attempts := 0; ; {
		m := pool.next(tried)
		if m == nil {
			fb := route.fallback
			if fb == nil || pool == fb.Pool || !fb.Pool.HasAvailable() {
				break
			}
			pool, tried = fb.Pool, tried[:0]
			continue
		}
		retry := answered != nil
		if retry && !rp.budget.allow(time.Now()) {
			break
		}
		t := time.Now()
		attemptDeadline := t.Add(pool.timeout)
		if !deadline.IsZero() && deadline.Before(attemptDeadline) {
			attemptDeadline = deadline
		}
		err := p.attempt(ctx, route, m, attemptDeadline, id)
		if retry {
			rp.budget.done()
		}
		tried = append(tried, m)
		if neverSent(err) {
			continue // not an attempt
		}
		attempts++
		answered, sent, last = v, t, err
		if pool != v.Pool {
			answered = route.fallback
		}
		outcome := outcomeOf(err, &ctx.Response)
		if outcome == metrics.OutcomeSuccess || attempts > rp.attempts ||
			!rp.worthRetrying(outcome, ctx.Response.StatusCode(), ctx.Method()) ||
			!deadline.IsZero() && !time.Now().Before(deadline) {
			return answered, sent, err
		}
	}
	if answered != nil {
		return answered, sent, last
	}
	return v, sent, unavailable(v.Pool, route.fallback)
}

// next picks the member for the next attempt: the balance policy's choice
// for a fresh pool, else the least loaded available member not tried yet.
// nil when there is none.
func (p *Pool) next(tried []*Member) *Member {
	if len(tried) == 0 {
		if n := p.policy.Pick(p, rand.Uint64()); n >= 0 {
			return p.Members[n]
		}
		return nil
	}
	var best *Member
	for i, m := range p.Members {
		if p.Available(i) && !contains(tried, m) && (best == nil || m.Pending() < best.Pending()) {
			best = m
		}
	}
	return best
}

func contains(tried []*Member, m *Member) bool {
	for _, t := range tried {
		if t == m {
			return true
		}
	}
	return false
}

// outcomeOf is an attempt's outcome label: its error's, or http_5xx or
// success by the answer's status.
func outcomeOf(err error, resp *fasthttp.Response) string {
	switch {
	case err != nil:
		_, outcome := upstreamFailure(err)
		return outcome
	case resp.StatusCode() >= 500:
		return metrics.OutcomeHTTP5xx
	}
	return metrics.OutcomeSuccess
}

// attempt sends the client's request to one backend, with a log line on
// failure.
func (p *Proxy) attempt(ctx *fasthttp.RequestCtx, route *Route, m *Member, deadline time.Time, id []byte) error {
	ejected, err := m.do(&ctx.Request, &ctx.Response, deadline)
	if err != nil && !neverSent(err) {
		_, outcome := upstreamFailure(err)
		p.log.Warn("upstream attempt failed", "route", route.Name, "backend", m.Addr,
			"outcome", outcome, "request_id", string(id), "err", err)
	}
	if ejected {
		p.logEjection(m)
	}
	return err
}

// neverSent reports whether do returned without sending anything: the
// breaker refused, or the backend went out of rotation after it was
// chosen. Such a try is not an attempt; the request goes to another.
func neverSent(err error) bool {
	return err == backend.ErrBreakerOpen || err == backend.ErrDraining
}

// do sends one request to the member through its breaker and accounts for
// it: the backend's counters, the upstream metrics and passive outlier
// ejection. It reports whether this attempt got the backend ejected, and
// returns, with nothing sent, backend.ErrBreakerOpen when the breaker
// refused and backend.ErrDraining when the backend was marked down (a
// worker being stopped) since it was chosen.
func (m *Member) do(req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) (ejected bool, err error) {
	var start time.Time
	berr := m.breaker.Do(func() error {
		if !m.Begin() {
			return backend.ErrDraining
		}
		start = time.Now()
		err = m.client.Do(req, resp, deadline)
		if err == nil && resp.StatusCode() >= 500 {
			return backend.ErrServerError
		}
		return err
	})
	if neverSent(berr) {
		return false, berr
	}
	end := time.Now()
	m.series.Duration.Observe(end.Sub(start).Seconds())
	outcome := outcomeOf(err, resp)
	failed := outcome != metrics.OutcomeSuccess
	m.End(failed)
	m.series.Count(outcome)
	// A broken or refused connection says the worker died or restarted:
	// the keep-alive connections pooled to it are as dead, and fasthttp
	// would hand them out again unchecked, failing requests that never
	// reached a live worker (a POST then cannot be retried) and ejecting
	// a restarted worker again. The next attempts dial afresh.
	if outcome == metrics.OutcomeBadResponse || outcome == metrics.OutcomeConnectError {
		m.client.CloseIdleConnections()
	}
	// Every connection busy is the gateway's own limit, not the backend
	// failing: it does not count towards ejection.
	if outcome != metrics.OutcomeNoConn {
		ejected = m.Observe(failed, m.pool.outlier, end, m.pool.mayEject)
	}
	return ejected, err
}
