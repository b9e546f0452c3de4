// Package proxy is the client-facing fasthttp handler. A request walks one
// straight path: load the snapshot, name the request, match a route, check
// its limits, pick a backend, forward, clean the response. Failures at any
// step become an answer in errors.go and nowhere else.
//
// The handler forwards ctx.Request itself rather than a copy: it rewrites
// the headers and path in place (hop-by-hop headers out, X-Forwarded-* in)
// and hands it to the backend's HostClient, which writes the response
// straight into ctx.Response. Nothing is kept after the handler returns,
// so fasthttp may recycle both.
package proxy

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/audit"
	"github.com/sluice-gw/sluice/internal/metrics"
	"github.com/sluice-gw/sluice/internal/routing"
)

// Proxy holds the serving snapshot and answers client requests.
type Proxy struct {
	snap    atomic.Pointer[Snapshot]
	log     *slog.Logger
	noRoute *metrics.RouteSeries
}

// New returns a proxy with no snapshot; Swap one in before serving.
func New(m *metrics.Metrics, log *slog.Logger) *Proxy {
	return &Proxy{log: log, noRoute: m.Route(metrics.NoRoute, metrics.NoRoute)}
}

// Swap makes s the snapshot new requests use and returns the previous one.
// Requests already running finish on the snapshot they loaded.
func (p *Proxy) Swap(s *Snapshot) *Snapshot { return p.snap.Swap(s) }

// Snapshot is the snapshot serving now (nil before the first Swap).
func (p *Proxy) Snapshot() *Snapshot { return p.snap.Load() }

// HeaderReceived sets the body limit of the route a request is headed for
// before fasthttp reads the body, so an oversized body is refused from its
// Content-Length without being read. The handler checks again against the
// route it really matches: this early look uses the raw path, and a path
// that normalisation would change gets the largest limit of any route.
func (p *Proxy) HeaderReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	snap := p.snap.Load()
	path := h.RequestURI()
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if len(path) == 0 || path[0] != '/' || bytes.Contains(path, []byte("/.")) ||
		bytes.Contains(path, []byte("//")) || bytes.IndexByte(path, '%') >= 0 {
		return fasthttp.RequestConfig{MaxRequestBodySize: snap.maxBodyAny}
	}
	if i := routing.Match(snap.matchers, h.Method(), h.Host(), path, h); i >= 0 {
		return fasthttp.RequestConfig{MaxRequestBodySize: snap.Routes[i].maxBody}
	}
	return fasthttp.RequestConfig{MaxRequestBodySize: snap.defaultMaxBody}
}

// ErrorHandler answers requests that fasthttp could not read: malformed,
// too large, too slow. The connection is closed after the answer.
func (p *Proxy) ErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	f := clientFailure(err)
	var idBuf [36]byte
	writeFailure(ctx, f, newRequestID(&idBuf))
	if snap := p.snap.Load(); snap != nil && snap.securityHeaders {
		addSecurityHeaders(ctx)
	}
	p.noRoute.Count(f.Status)
	p.log.Debug("request refused", "status", f.Status, "remote", ctx.RemoteAddr().String(), "err", err)
}

// Handle serves one client request.
func (p *Proxy) Handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	snap := p.snap.Load()
	snap.enter()
	defer snap.leave()
	if snap.securityHeaders {
		defer addSecurityHeaders(ctx)
	}

	// The id is copied out of the header buffer, which the rewrites below
	// may move.
	var idStore [maxRequestIDLen]byte
	id := ctx.Request.Header.Peek(headerRequestID)
	if saneRequestID(id) {
		id = idStore[:copy(idStore[:], id)]
	} else {
		id = newRequestID((*[36]byte)(idStore[:36]))
	}

	// Edge checks (edge.go). A refused request closes its connection: one
	// that is malformed says nothing good of what follows it on the wire.
	switch checkHeaders(ctx.Request.Header.RawHeaders()) {
	case headersBad, headersBadFraming:
		p.refuse(ctx, FailBadRequest, id)
		ctx.SetConnectionClose() // after refuse: writeFailure resets the response
		return
	case headersUnderscore:
		dropUnderscoreHeaders(&ctx.Request.Header)
	}
	if target := ctx.Request.Header.RequestURI(); badTarget(target) || !knownVersion(ctx.Request.Header.Protocol()) {
		p.refuse(ctx, FailBadRequest, id)
		ctx.SetConnectionClose() // after refuse: writeFailure resets the response
		return
	} else if authority := ctx.URI().Host(); target[0] != '/' && len(authority) > 0 {
		// Absolute form: the authority wins over Host (RFC 9112 3.2.2).
		// Routing already reads it (ctx.Host is the URI's host); Host is
		// replaced so that sticky keys, X-Forwarded-Host and the backend
		// see the same one value.
		ctx.Request.Header.SetHostBytes(authority)
	}
	if ctx.Request.Header.Len() > snap.maxHeaders {
		p.refuse(ctx, FailTooManyHeaders, id)
		return
	}
	// A CORS preflight is routed by the method it asks about; the route's
	// cors block answers it, before auth (browsers send no credentials
	// with a preflight). Without one it is forwarded as any OPTIONS.
	method, preflight := ctx.Method(), isPreflight(&ctx.Request.Header)
	if preflight {
		method = ctx.Request.Header.PeekBytes(keyRequestMethod)
	}
	i := routing.Match(snap.matchers, method, ctx.Host(), ctx.Path(), &ctx.Request.Header)
	if preflight {
		if i >= 0 && snap.Routes[i].cors != nil {
			snap.Routes[i].cors.preflight(ctx, id)
			snap.Routes[i].refused.Count(fasthttp.StatusNoContent)
			return
		}
		i = routing.Match(snap.matchers, ctx.Method(), ctx.Host(), ctx.Path(), &ctx.Request.Header)
	}
	if i < 0 {
		p.refuse(ctx, FailNoRoute, id)
		return
	}
	route := snap.Routes[i]
	route.inFlight.Inc()
	defer route.inFlight.Dec()
	if route.cors != nil {
		defer route.cors.decorate(ctx)
	}
	var who verdict
	var audited *audit.Entry // an admitted request's audit line, when sampled
	if route.auth != nil {
		if who = p.authenticate(ctx, snap, route, id, start); who.fail.Status != 0 {
			return
		}
		if snap.audit != nil && snap.audit.SampleAllowed() {
			// Taken now, before strip_prefix rewrites the path.
			e := auditEntry(ctx, route.Name, who, 0, id, p.clientIP(ctx, snap))
			audited = &e
		}
	}

	var status int
	var scratch [128]byte
	v := route.variantFor(ctx, snap.trusted, scratch[:0])
	served, forwarded := v, false
	switch {
	case len(ctx.Request.Body()) > route.maxBody:
		writeFailure(ctx, FailBodyTooLarge, id)
		status = FailBodyTooLarge.Status
	case !route.limits.enter():
		writeFailure(ctx, FailOverCapacity, id)
		status = FailOverCapacity.Status
	default:
		defer route.limits.leave()
		if rl, wait := route.limits.rateLimited(ctx, snap.trusted, start, scratch[:0]); rl != nil {
			writeRateLimited(ctx, rl, wait, id)
			status = FailRateLimited.Status
			break
		}
		if who.limiter != nil {
			if verdict := who.limiter.Take(0, start); !verdict.Allowed {
				writeRateLimited(ctx, &rateLimit{burst: who.key.Burst}, verdict.Wait, id)
				status = FailRateLimited.Status
				break
			}
		}
		if route.auth != nil {
			route.auth.forwardIdentity(&ctx.Request, who.who)
		} else {
			ctx.Request.Header.DelBytes(keyIdentity) // never the client's word
		}
		if route.cache != nil {
			served, status, forwarded = p.cached(ctx, snap, route, v, id, start, scratch[:0])
			break
		}
		served, status = p.forwardMirrored(ctx, snap, route, v, id, start, scratch[:0])
		forwarded = true
	}
	elapsed := time.Since(start)
	if audited != nil {
		audited.Status = status // what the admitted request was answered
		snap.audit.Write(*audited)
	}
	served.series.Count(status)
	served.series.Duration.Observe(elapsed.Seconds())
	if forwarded {
		// A request the fallback answered is one the variant failed; one
		// the gateway refused says nothing of the variant.
		failed := status >= 500 || served != v
		if v.exp != nil {
			v.exp.Record(elapsed, failed)
		}
		if route.canary != nil {
			route.canary.rollout.Record(v.index == canaryCandidate, elapsed, failed)
		}
	}
}

// authenticate checks a request against the route's auth, answers it
// when refused, and records the decision (metrics, audit log). An
// admitted request carries its identity as a user value, for the api_key
// and jwt:CLAIM key sources.
func (p *Proxy) authenticate(ctx *fasthttp.RequestCtx, snap *Snapshot, route *Route, id []byte, now time.Time) verdict {
	a := route.auth
	who := a.check(ctx, now)
	if who.fail.Status != 0 {
		a.refuse(ctx, who, id)
		route.refused.Count(who.fail.Status)
		route.refused.Duration.Observe(time.Since(now).Seconds())
		if snap.audit != nil {
			snap.audit.Write(auditEntry(ctx, route.Name, who, who.fail.Status, id, p.clientIP(ctx, snap)))
		}
		return who
	}
	ctx.SetUserValue(identityKey{}, who.who)
	a.decisions.Allowed.Inc()
	return who
}

// clientIP is the client's address as X-Real-IP says it, for the audit log.
func (p *Proxy) clientIP(ctx *fasthttp.RequestCtx, snap *Snapshot) string {
	return clientAddr(peerAddr(ctx), ctx.Request.Header.Peek(headerForwardedFor), snap.trusted).String()
}

// refuse answers a request that reached no route.
func (p *Proxy) refuse(ctx *fasthttp.RequestCtx, f Failure, id []byte) {
	writeFailure(ctx, f, id)
	p.noRoute.Count(f.Status)
}

// forward sends the request upstream (try says where) and returns who
// answered (the variant, or the route's fallback) and the status the
// client gets. scratch is the caller's buffer.
// When the plan holds mirror copies, they are filled from the rewritten
// request and sent once the primary has answered.
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, snap *Snapshot, route *Route, v *Variant, id []byte, start time.Time, scratch []byte, plan *mirrorPlan) (*Variant, int) {
	req := &ctx.Request
	clientClose := req.Header.ConnectionClose()
	removeRequestHopByHop(&req.Header)
	dropAdminCookie(&req.Header)
	setForwarded(ctx, peerAddr(ctx), snap.trusted, scratch[:0])
	req.Header.SetCanonical(keyRequestID, id)
	// The upstream leg is plain HTTP whatever the client spoke; a request
	// that arrived over TLS still carries https as its scheme.
	if ctx.IsTLS() {
		req.URI().SetSchemeBytes(schemeHTTP)
	}
	if len(route.stripPrefix) > 0 {
		stripPrefix(req, route.stripPrefix, scratch[:0])
	} else if u := req.URI(); !bytes.Equal(u.PathOriginal(), u.Path()) {
		// The worker gets the path the route was chosen by: "/a/../b/x"
		// matched /b/, so it is sent as "/b/x", and a worker that resolves
		// dot segments otherwise cannot serve another resource than the
		// one routed (path confusion).
		u.SetPathBytes(u.Path())
	}

	if plan.active() {
		plan.copyFrom(req)
	}
	served, sent, err := p.try(ctx, route, v, start, id)
	if served != v {
		plan.cancel() // the primary did not answer: nothing to compare
	}
	if err == nil && plan.active() {
		err = p.mirrorAfter(ctx, snap, plan, sent, id)
	}
	if err != nil {
		plan.cancel()
		f := failureOf(err)
		writeFailure(ctx, f, id)
		if d := retryAfterOf(err); d > 0 {
			ctx.Response.Header.Set("Retry-After", strconv.Itoa(int((d+time.Second-1)/time.Second)))
		}
		if clientClose {
			ctx.SetConnectionClose()
		}
		return served, f.Status
	}

	resp := &ctx.Response
	status := resp.StatusCode()
	// The backend's wish to close its connection was honoured by the
	// client transport already; the client's connection is the client's.
	removeResponseHopByHop(&resp.Header)
	// The client hears HTTP/1.1 whatever the backend spoke, as from nginx.
	resp.Header.SetProtocol(http11)
	if clientClose {
		ctx.SetConnectionClose()
	}
	resp.Header.SetCanonical(keyRequestID, id)
	return served, status
}

// logEjection says that a backend left rotation, and for how long.
func (p *Proxy) logEjection(m *Member) {
	p.log.Warn("backend ejected after consecutive failures", "pool", m.pool.Name, "backend", m.Addr,
		"until", m.EjectedUntil().Format(time.RFC3339), "ejections_in_a_row", m.Ejections())
}

// mirrorAfter captures the primary's answer and dispatches the planned
// copies. An answer that cannot be compared cancels them; one whose body
// broke while being read is the primary's failure.
func (p *Proxy) mirrorAfter(ctx *fasthttp.RequestCtx, snap *Snapshot, plan *mirrorPlan, sent time.Time, id []byte) error {
	body, ok, err := plan.capture(&ctx.Response)
	if !ok {
		plan.cancel()
		return err
	}
	plan.primary = time.Since(sent)
	p.dispatch(plan, snap, ctx.Response.StatusCode(), body, id)
	return nil
}

var (
	http11     = []byte("HTTP/1.1")
	schemeHTTP = []byte("http")
)

// stripPrefix removes prefix from the front of the path, keeping the
// query, and records it in X-Forwarded-Prefix as Traefik's StripPrefix
// does. The result always starts with "/".
func stripPrefix(req *fasthttp.Request, prefix, scratch []byte) {
	path := req.URI().Path()
	if !bytes.HasPrefix(path, prefix) {
		return
	}
	rest := path[len(prefix):]
	if len(rest) == 0 || rest[0] != '/' {
		scratch = append(scratch, '/')
	}
	scratch = append(scratch, rest...)
	req.URI().SetPathBytes(scratch)
	req.Header.SetBytesV("X-Forwarded-Prefix", prefix)
}

// peerAddr is the TCP peer's address.
func peerAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	a, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return a.Unmap()
}
