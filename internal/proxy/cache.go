package proxy

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/metrics"
)

const headerCache = "X-Sluice-Cache"

// routeCache is a route's compiled cache block; its store lives in the
// cache registry and outlives the snapshot.
type routeCache struct {
	store    *cache.Store
	vary     []keyReader
	coalesce bool
	maxEntry int // largest body stored
	series   *metrics.CacheSeries
	// variesOnAuthorization: the key holds the Authorization header, so
	// credentialed requests may be cached.
	variesOnAuthorization bool
}

// compileCache builds a route's cache, nil when it has none.
func compileCache(rc *config.Route, reg *cache.Registry, m *metrics.Metrics) *routeCache {
	cc := rc.Cache
	if cc == nil {
		return nil
	}
	c := &routeCache{
		store:    reg.Store(rc.Name, cache.Settings{TTL: cc.TTL.D(), MaxBytes: int64(cc.MaxBytes), Shared: cc.Shared}),
		coalesce: cc.Coalesce,
		maxEntry: int(cc.MaxBytes / maxEntryShare),
		series:   m.Cache(rc.Name),
	}
	for _, v := range cc.Vary {
		src, _ := config.ParseKeySource(v) // validated
		c.vary = append(c.vary, keyReader{src: src})
		if src.Kind == config.KeyHeader && strings.EqualFold(src.Name, fasthttp.HeaderAuthorization) {
			c.variesOnAuthorization = true
		}
	}
	return c
}

// maxEntryShare: an answer larger than max_bytes / maxEntryShare is not
// stored, so that one answer cannot push out most of the cache.
const maxEntryShare = 8

// key is the request's cache key: route, the pool that would answer and
// its backends (a canary step, a blue-green flip or new workers change it,
// so one model's answer is never served for another's), method, path and
// query, the vary values, and the body's canonical digest.
func (c *routeCache) key(ctx *fasthttp.RequestCtx, route *Route, v *Variant, trusted []netip.Prefix, scratch []byte) cache.Key {
	var fieldBuf [512]byte
	f := fieldBuf[:0]
	f = cache.AppendKeyField(f, []byte(route.Name))
	f = cache.AppendKeyField(f, v.Pool.version)
	f = cache.AppendKeyField(f, ctx.Method())
	f = cache.AppendKeyField(f, ctx.Path())
	f = cache.AppendKeyField(f, ctx.URI().QueryString())
	for _, k := range c.vary {
		f = cache.AppendKeyField(f, k.read(ctx, trusted, scratch[:0]))
	}
	return cache.MakeKey(f, cache.BodyDigest(ctx.Request.Header.ContentType(), ctx.Request.Body()))
}

// cached serves a request of a cached route: from the cache when it holds
// the answer, else from upstream (once for concurrent identical misses
// with coalesce), storing what may be stored. It returns who answered,
// the status, and whether this request went upstream itself.
func (p *Proxy) cached(ctx *fasthttp.RequestCtx, snap *Snapshot, route *Route, v *Variant, id []byte, start time.Time, scratch []byte) (*Variant, int, bool) {
	c := route.cache
	field := ctx.Request.Header.Peek(fasthttp.HeaderCacheControl)
	cc := parseCacheControl(field)
	if len(field) == 0 && bytes.EqualFold(ctx.Request.Header.Peek(fasthttp.HeaderPragma), []byte("no-cache")) {
		cc.noCache = true // RFC 9111 5.4: an HTTP/1.0 client's no-cache
	}
	// RFC 9111 3.5: a shared cache does not answer one user's
	// credentialed request with another's answer; a route that varies on
	// the credentials keys them apart and may cache. HEAD answers have no
	// body to store.
	if cc.noStore || ctx.IsHead() || len(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)) > 0 && !c.variesOnAuthorization {
		c.series.Bypass.Inc()
		served, status := p.forwardMirrored(ctx, snap, route, v, id, start, scratch)
		ctx.Response.Header.Set(headerCache, "bypass")
		return served, status, true
	}
	key := c.key(ctx, route, v, snap.trusted, scratch)
	if !cc.noCache {
		if e, _ := c.store.Get(key, v.Pool.Name, start); e != nil {
			c.series.Hit.Inc()
			writeEntry(ctx, fasthttp.StatusOK, e, id, start)
			ctx.Response.Header.Set(headerVariant, v.Name)
			ctx.Response.Header.Set(headerCache, "hit")
			return v, fasthttp.StatusOK, false
		}
	}
	if !c.coalesce {
		c.series.Miss.Inc()
		served, status, _ := p.fill(ctx, snap, route, v, id, start, scratch, key)
		return served, status, true
	}
	// The first of concurrent identical misses fills; the others wait for
	// its answer, which the leader's own timeouts bound.
	led := false
	var served *Variant
	var status int
	res, _, _ := c.store.Coalesce(key, func() (any, error) {
		led = true
		var a *sharedAnswer
		served, status, a = p.fill(ctx, snap, route, v, id, start, scratch, key)
		return a, nil
	})
	if led {
		c.series.Miss.Inc()
		return served, status, true
	}
	if a, _ := res.(*sharedAnswer); a != nil {
		c.series.Coalesced.Inc()
		writeEntry(ctx, a.status, a.entry, id, start)
		ctx.Response.Header.Set(headerVariant, a.served.Name)
		ctx.Response.Header.Set(headerCache, "miss")
		return a.served, a.status, false
	}
	// The leader's answer was its own (private, or not readable whole):
	// this request goes upstream itself.
	c.series.Miss.Inc()
	served, status, _ = p.fill(ctx, snap, route, v, id, start, scratch, key)
	return served, status, true
}

// sharedAnswer is a leader's answer handed to the requests that waited on
// it: a stored answer, or the failure every one of them gets.
type sharedAnswer struct {
	status int
	entry  *cache.Entry
	served *Variant
}

// fill sends a missed request upstream and stores the answer when it may
// be stored. The answer for coalesced followers is nil when it is not to
// be shared: a 200 that may not be stored, any other status below 500,
// or a body that could not be read whole.
func (p *Proxy) fill(ctx *fasthttp.RequestCtx, snap *Snapshot, route *Route, v *Variant, id []byte, start time.Time, scratch []byte, key cache.Key) (*Variant, int, *sharedAnswer) {
	c := route.cache
	served, status := p.forwardMirrored(ctx, snap, route, v, id, start, scratch)
	ctx.Response.Header.Set(headerCache, "miss")
	resp := &ctx.Response
	storable := status == fasthttp.StatusOK && served == v && mayStore(resp)
	if !storable && status < 500 {
		return served, status, nil
	}
	body, ok, err := captureBody(resp, c.maxEntry)
	if err != nil || !ok {
		return served, status, nil
	}
	e := cache.NewEntry(route.Name, v.Pool.Name, storedHeaders(resp), body, start, c.store.TTL())
	if storable {
		c.store.Put(key, e)
	}
	return served, status, &sharedAnswer{status: status, entry: e, served: served}
}

// forwardMirrored sends the request upstream with its mirror copies, as an
// uncached route does.
func (p *Proxy) forwardMirrored(ctx *fasthttp.RequestCtx, snap *Snapshot, route *Route, v *Variant, id []byte, start time.Time, scratch []byte) (*Variant, int) {
	var plan mirrorPlan
	if route.mirror != nil {
		plan = route.mirror.plan(ctx, v.index, snap.trusted, scratch[:0])
	}
	served, status := p.forward(ctx, snap, route, v, id, start, scratch[:0], &plan)
	ctx.Response.Header.SetCanonical(keyVariant, served.label)
	return served, status
}

// cacheControl is what a Cache-Control field says that matters here.
type cacheControl struct{ noStore, noCache, private bool }

// parseCacheControl reads the directives of a Cache-Control value (RFC
// 9111 5.2), case-insensitively, ignoring arguments.
func parseCacheControl(v []byte) cacheControl {
	var cc cacheControl
	for len(v) > 0 {
		var d []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			d, v = v[:i], v[i+1:]
		} else {
			d, v = v, nil
		}
		if i := bytes.IndexByte(d, '='); i >= 0 {
			d = d[:i]
		}
		d = bytes.TrimSpace(d)
		switch {
		case bytes.EqualFold(d, []byte("no-store")):
			cc.noStore = true
		case bytes.EqualFold(d, []byte("no-cache")):
			cc.noCache = true
		case bytes.EqualFold(d, []byte("private")):
			cc.private = true
		}
	}
	return cc
}

// mayStore reports whether the worker allows its answer to be stored for
// everyone: not Cache-Control no-store or private, nor no-cache (a shared
// cache must not serve that without asking the worker again, RFC 9111
// 5.2.2), and no cookie being set (a user's own).
func mayStore(resp *fasthttp.Response) bool {
	cc := parseCacheControl(resp.Header.Peek(fasthttp.HeaderCacheControl))
	for range resp.Header.Cookies() {
		return false
	}
	return !cc.noStore && !cc.noCache && !cc.private
}

// storedHeaders are the answer's headers worth replaying: all but the
// per-request and per-connection ones, which a hit sets afresh.
func storedHeaders(resp *fasthttp.Response) [][2][]byte {
	var hs [][2][]byte
	for k, v := range resp.Header.All() {
		switch string(k) {
		case fasthttp.HeaderContentLength, fasthttp.HeaderDate, fasthttp.HeaderConnection, fasthttp.HeaderTransferEncoding,
			fasthttp.HeaderSetCookie, headerRequestID, headerVariant, headerCache, "Age":
			continue
		}
		hs = append(hs, [2][]byte{k, v})
	}
	return hs
}

// writeEntry answers from a cached or shared answer, with the request's
// own id and, for a 200, its Age (RFC 9111 5.1).
func writeEntry(ctx *fasthttp.RequestCtx, status int, e *cache.Entry, id []byte, now time.Time) {
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(status)
	e.Headers(func(k, v []byte) { resp.Header.AddBytesKV(k, v) })
	resp.Header.SetBytesV(headerRequestID, id)
	if status == fasthttp.StatusOK {
		var buf [20]byte
		resp.Header.SetBytesV("Age", strconv.AppendInt(buf[:0], int64(max(0, now.Sub(e.Stored)/time.Second)), 10))
	}
	resp.SetBodyRaw(e.Body())
}
