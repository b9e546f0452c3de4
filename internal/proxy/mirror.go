package proxy

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/metrics"
	"github.com/sluice-gw/sluice/internal/shadow"
)

// A mirror is a route's shadow as compiled: which requests are copied,
// where the copies go, and where the comparison is kept. The life of one
// mirrored request:
//
//	plan     after the variant is chosen: sampled? body small enough? a
//	         free in-flight slot? (else counted as skipped or dropped)
//	copy     after the request is rewritten for the primary, before it is
//	         sent: the copy is the gateway's own, so fasthttp may recycle
//	         the client's request once the handler returns
//	capture  after the primary answered: its body is read into memory (it
//	         is sent to the client from there), so it can be compared
//	dispatch a goroutine sends the copy, compares, records; the handler
//	         returns at once and the client is answered
//
// The copy is never retried, has its own timeout, and holds the snapshot
// until it ends, so a reload does not close its connection under it.
type mirror struct {
	pool        *Pool
	noisePool   *Pool // nil without noise
	percent     sampler
	noise       sampler
	noiseFor    []bool     // per route variant: whether noise samples its requests
	sticky      *keyReader // the split's sticky key; nil when the route has none
	saltHash    uint64
	maxBody     int
	maxInFlight int
	timeout     time.Duration
	state       *shadow.Route
	recorder    *shadow.Recorder // nil without record
	series      *metrics.ShadowSeries
}

// headerShadow marks a mirrored request, so a worker (and its logs) can
// tell a copy from live traffic.
const headerShadow = "X-Sluice-Shadow"

// sampler chooses a share of requests, in hundredths of a percent.
type sampler struct {
	basis uint64 // 0 to 10000
	n     atomic.Uint64
}

func newSampler(percent float64) sampler {
	return sampler{basis: uint64(percent*100 + 0.5)}
}

func (s *sampler) byCount() bool { return takeByCount(&s.n, s.basis) }

func (s *sampler) byKey(key []byte, saltHash uint64) bool { return takeByKey(key, saltHash, s.basis) }

// takeByCount is exact over any run of requests: the n-th request (n
// counted in counter) is taken when n·basis/10000 crosses a whole number.
func takeByCount(counter *atomic.Uint64, basis uint64) bool {
	if basis == 0 {
		return false
	}
	n := counter.Add(1)
	return n*basis/10000 != (n-1)*basis/10000
}

// takeByKey takes the same keys every time, on every replica: the key's
// hash, mixed with the route's salt, falls below basis (of 10000) or it
// does not. A key taken at one basis is taken at every larger one.
func takeByKey(key []byte, saltHash, basis uint64) bool {
	return mix64(xxhash.Sum64(key)^saltHash)%10000 < basis
}

// mix64 is SplitMix64's finaliser. It decorrelates the mirror choice from
// the variant assignment, which hashes the same key.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// compileMirror builds a route's mirror, or returns nil when the route has
// no shadow block.
func compileMirror(rc *config.Route, r *Route, s *Snapshot, deps Deps) *mirror {
	sc := rc.Shadow
	if sc == nil {
		return nil
	}
	cc := sc.Compare
	// Validation has checked the patterns and tolerances.
	cmp, _ := shadow.NewComparer(cc.Ignore, cc.AbsTolerance, cc.RelTolerance, cc.Label)
	id := shadow.Identity{Pool: sc.Pool, Compare: compareIdentity(cc)}
	for _, v := range r.Variants {
		id.Variants = append(id.Variants, shadow.VariantInfo{Name: v.Name, Pool: v.Pool.Name})
	}
	m := &mirror{
		pool:        s.Pools[sc.Pool],
		percent:     newSampler(sc.Percent),
		maxBody:     int(sc.MaxBody),
		maxInFlight: sc.MaxInFlight,
		timeout:     sc.Timeout.D(),
		series:      deps.Metrics.Shadow(rc.Name, shadow.OutcomeNames()),
	}
	if r.split != nil && r.split.sticky != nil {
		m.sticky = r.split.sticky
		m.saltHash = xxhash.Sum64String(rc.Split.Salt)
	}
	if n := sc.Noise; n != nil {
		id.NoisePool = n.Pool
		m.noisePool = s.Pools[n.Pool]
		m.noise = newSampler(n.Percent)
		// A noise pool that is one of the route's own variants samples
		// only that variant's requests; any other copy samples all.
		m.noiseFor = make([]bool, len(r.Variants))
		own := false
		for i, v := range r.Variants {
			m.noiseFor[i] = v.Pool.Name == n.Pool
			own = own || m.noiseFor[i]
		}
		if !own {
			for i := range m.noiseFor {
				m.noiseFor[i] = true
			}
		}
	}
	m.state = deps.Shadows.Route(rc.Name, id, cmp)
	// The gateway opened the file before applying the config; a failure
	// here leaves the route unrecorded rather than unserved. Without a
	// record block, this closes the route's previous file, if any.
	if rec := sc.Record; rec != nil {
		m.recorder, _ = deps.Shadows.Recorder(rc.Name, rec.File, int64(rec.MaxBytes), rec.PerSecond)
	} else {
		_, _ = deps.Shadows.Recorder(rc.Name, "", 0, 0)
	}
	return m
}

// compareIdentity is the canonical text of compare settings: a change to
// any of them starts the route's report afresh.
func compareIdentity(c config.ShadowCompare) string {
	return fmt.Sprintf("ignore=%s abs=%s rel=%s label=%s", strings.Join(c.Ignore, ","),
		strconv.FormatFloat(c.AbsTolerance, 'g', -1, 64), strconv.FormatFloat(c.RelTolerance, 'g', -1, 64), c.Label)
}

// mirrorPlan is what the handler decided for one request: which copies go
// out. Its requests belong to the plan until dispatch or cancel.
type mirrorPlan struct {
	m       *mirror
	variant int
	shadow  *fasthttp.Request // nil when not mirrored
	noise   *fasthttp.Request // nil when no noise copy
	primary time.Duration     // the primary's time to its full answer
}

// plan decides whether the request is mirrored and reserves the in-flight
// slots, counting what is skipped or dropped. The request copies are made
// later, by copyFrom, once the request is rewritten.
func (m *mirror) plan(ctx *fasthttp.RequestCtx, variant int, trusted []netip.Prefix, scratch []byte) mirrorPlan {
	p := mirrorPlan{m: m, variant: variant}
	shadowing := false
	if m.sticky != nil {
		if key := m.sticky.read(ctx, trusted, scratch); len(key) > 0 {
			shadowing = m.percent.byKey(key, m.saltHash)
		} else {
			shadowing = m.percent.byCount()
		}
	} else {
		shadowing = m.percent.byCount()
	}
	noise := m.noisePool != nil && m.noiseFor[variant] && m.noise.byCount()
	if !shadowing && !noise {
		return p
	}
	if len(ctx.Request.Body()) > m.maxBody {
		m.count(variant, shadow.SkippedBody)
		return p
	}
	if shadowing {
		if m.state.TryAcquire(m.maxInFlight) {
			p.shadow = fasthttp.AcquireRequest()
		} else {
			m.count(variant, shadow.Dropped)
		}
	}
	if noise && m.state.TryAcquire(m.maxInFlight) {
		p.noise = fasthttp.AcquireRequest()
	}
	return p
}

// active reports whether any copy is planned.
func (p *mirrorPlan) active() bool { return p.shadow != nil || p.noise != nil }

// copyFrom fills the planned copies from the request as the primary gets it.
func (p *mirrorPlan) copyFrom(req *fasthttp.Request) {
	for _, c := range [2]*fasthttp.Request{p.shadow, p.noise} {
		if c != nil {
			req.CopyTo(c)
			c.Header.Set(headerShadow, "1")
		}
	}
}

// cancel gives back the planned copies when the primary's answer cannot be
// compared, counting the shadow as skipped.
func (p *mirrorPlan) cancel() {
	if p.shadow != nil {
		p.m.count(p.variant, shadow.SkippedPrimary)
		p.m.state.Release()
		fasthttp.ReleaseRequest(p.shadow)
		p.shadow = nil
	}
	if p.noise != nil {
		p.m.state.Release()
		fasthttp.ReleaseRequest(p.noise)
		p.noise = nil
	}
}

// capture reads the primary's answer into memory so that it can be
// compared (see captureBody).
func (p *mirrorPlan) capture(resp *fasthttp.Response) ([]byte, bool, error) {
	return captureBody(resp, p.m.maxBody)
}

// captureBody reads an upstream answer into memory and leaves it in resp
// for the client. Only answers with a Content-Length up to limit are
// taken; false means the answer stays streamed as it is. A broken body is
// an error for the client as it would have been while streaming. The
// result is the caller's to keep.
func captureBody(resp *fasthttp.Response, limit int) ([]byte, bool, error) {
	n := resp.Header.ContentLength()
	if n < 0 || n > limit {
		return nil, false, nil
	}
	if !resp.IsBodyStream() {
		return append([]byte(nil), resp.Body()...), true, nil
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(resp.BodyStream(), body); err != nil {
		resp.CloseBodyStream() //nolint:errcheck // the read error is the one that matters
		return nil, false, err
	}
	// SetBodyRaw closes the drained stream, which frees the upstream
	// connection, and serves the client from body without a copy. Readers
	// of body only read it, and fasthttp forgets it on reset.
	resp.SetBodyRaw(body)
	return body, true, nil
}

// dispatch sends the planned copies in the background and returns at once.
// The snapshot is held until they end.
func (p *Proxy) dispatch(plan *mirrorPlan, snap *Snapshot, status int, body []byte, id []byte) {
	job := &mirrorJob{
		plan:          *plan,
		snap:          snap,
		primaryStatus: status,
		primaryBody:   body,
		id:            string(id),
	}
	if plan.shadow != nil {
		snap.enter()
		go p.runMirror(job, plan.m.pool, plan.shadow, false)
	}
	if plan.noise != nil {
		snap.enter()
		go p.runMirror(job, plan.m.noisePool, plan.noise, true)
	}
	plan.shadow, plan.noise = nil, nil
}

// mirrorJob is what the copies of one request share: the primary's answer,
// read-only from here on.
type mirrorJob struct {
	plan          mirrorPlan
	snap          *Snapshot
	primaryStatus int
	primaryBody   []byte
	id            string
}

// errTooLarge is a shadow answer over the mirror's max_body.
var errTooLarge = errors.New("answer larger than the shadow max_body")

// runMirror sends one copy, compares the answer with the primary's and
// records the result. It owns req.
func (p *Proxy) runMirror(job *mirrorJob, pool *Pool, req *fasthttp.Request, noise bool) {
	m, variant := job.plan.m, job.plan.variant
	defer job.snap.leave()
	defer m.state.Release()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)

	n := pool.policy.Pick(pool, rand.Uint64())
	if n < 0 {
		if !noise {
			m.count(variant, shadow.Error)
		}
		return
	}
	member := pool.Members[n]
	start := time.Now()
	ejected, err := member.do(req, resp, start.Add(m.timeout))
	if ejected {
		p.logEjection(member)
	}
	var body []byte
	if err == nil {
		body, err = readBounded(resp, m.maxBody)
	}
	latency := time.Since(start)
	if err != nil {
		p.log.Debug("shadow attempt failed", "pool", pool.Name, "backend", member.Addr, "noise", noise,
			"request_id", job.id, "err", err)
		if !noise {
			if _, outcome := upstreamFailure(err); outcome == metrics.OutcomeTimeout {
				m.count(variant, shadow.Timeout)
			} else {
				m.count(variant, shadow.Error)
			}
		}
		return
	}
	res := m.state.Comparer().Compare(job.primaryStatus, job.primaryBody, resp.StatusCode(), body)
	if noise {
		m.state.NoisePair(variant, res)
		return
	}
	pair := &shadow.Pair{
		Result:         res,
		PrimaryStatus:  job.primaryStatus,
		ShadowStatus:   resp.StatusCode(),
		PrimaryLatency: job.plan.primary,
		ShadowLatency:  latency,
		RequestID:      job.id,
		Method:         string(req.Header.Method()),
		URI:            string(req.RequestURI()),
		RequestBody:    req.Body(),
		PrimaryBody:    job.primaryBody,
		ShadowBody:     body,
	}
	rec := m.state.Pair(variant, pair)
	m.series.Count(rec.Outcome.String())
	m.series.Delta.Observe((latency - job.plan.primary).Seconds())
	for _, f := range rec.Fields {
		m.series.FieldMismatch(f)
	}
	if m.recorder != nil && rec.Outcome != shadow.Matched {
		m.recorder.Write(m.state.Record(variant, pair, rec.Outcome))
	}
}

// count records a mirror that ended without a comparison.
func (m *mirror) count(variant int, o shadow.Outcome) {
	m.state.Count(variant, o)
	m.series.Count(o.String())
}

// readBounded reads a shadow answer's body, at most limit bytes. The
// response is the mirror's own, so a partly read stream is simply dropped
// with it.
func readBounded(resp *fasthttp.Response, limit int) ([]byte, error) {
	if n := resp.Header.ContentLength(); n > limit {
		return nil, errTooLarge
	}
	if !resp.IsBodyStream() {
		if len(resp.Body()) > limit {
			return nil, errTooLarge
		}
		return resp.Body(), nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.BodyStream(), int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(body) > limit {
		return nil, errTooLarge
	}
	return body, nil
}
