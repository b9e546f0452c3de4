package proxy

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/config"
)

// corsPolicy is a route's compiled cors block: the CORS protocol of the
// Fetch standard, answered at the gateway as nginx recipes and Envoy's
// cors filter do. An origin that is not allowed gets no CORS header at
// all, so the browser keeps the answer from the page.
type corsPolicy struct {
	anyOrigin   bool
	origins     map[string]bool
	methods     map[string]bool
	headers     map[string]bool // lower case
	allowMethod []byte          // Access-Control-Allow-Methods
	allowHeader []byte          // Access-Control-Allow-Headers
	expose      []byte          // Access-Control-Expose-Headers; empty: none
	credentials bool
	maxAge      []byte
}

var (
	keyOrigin         = []byte("Origin")
	keyRequestMethod  = []byte("Access-Control-Request-Method")
	keyRequestHeaders = []byte("Access-Control-Request-Headers")
	methodOptions     = []byte("OPTIONS")
	valueTrue         = []byte("true")
	valueStar         = []byte("*")
)

func compileCORS(c *config.CORS) *corsPolicy {
	if c == nil {
		return nil
	}
	p := &corsPolicy{origins: map[string]bool{}, methods: map[string]bool{}, headers: map[string]bool{},
		credentials: c.Credentials, maxAge: strconv.AppendInt(nil, int64(c.MaxAge.D().Seconds()), 10)}
	for _, o := range c.Origins {
		if o == "*" {
			p.anyOrigin = true
		}
		p.origins[o] = true
	}
	for _, m := range c.Methods {
		p.methods[m] = true
	}
	for _, h := range c.Headers {
		p.headers[strings.ToLower(h)] = true
	}
	p.allowMethod = []byte(strings.Join(c.Methods, ", "))
	p.allowHeader = []byte(strings.Join(c.Headers, ", "))
	p.expose = []byte(strings.Join(c.ExposeHeaders, ", "))
	return p
}

// isPreflight reports whether a request is a CORS preflight: OPTIONS with
// Origin and Access-Control-Request-Method. Its route is the one the
// method it asks about would reach.
func isPreflight(h *fasthttp.RequestHeader) bool {
	return bytes.Equal(h.Method(), methodOptions) && len(h.PeekBytes(keyRequestMethod)) > 0 && len(h.PeekBytes(keyOrigin)) > 0
}

// allowedOrigin reports whether origin may read the route's answers.
func (p *corsPolicy) allowedOrigin(origin []byte) bool {
	return len(origin) > 0 && (p.anyOrigin || p.origins[string(origin)])
}

// preflight answers a preflight request itself, 204 No Content: with the
// Access-Control-Allow-* headers when the origin, the method and every
// requested header are allowed, with none of them otherwise.
func (p *corsPolicy) preflight(ctx *fasthttp.RequestCtx, id []byte) {
	req, resp := &ctx.Request.Header, &ctx.Response
	resp.Reset()
	resp.SetStatusCode(fasthttp.StatusNoContent)
	resp.Header.SetBytesV(headerRequestID, id)
	resp.Header.Add("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	origin := req.PeekBytes(keyOrigin)
	if !p.allowedOrigin(origin) || !p.methods[string(req.PeekBytes(keyRequestMethod))] || !p.headersAllowed(req.PeekBytes(keyRequestHeaders)) {
		return
	}
	p.allowOrigin(&resp.Header, origin)
	resp.Header.SetBytesV("Access-Control-Allow-Methods", p.allowMethod)
	if len(p.allowHeader) > 0 {
		resp.Header.SetBytesV("Access-Control-Allow-Headers", p.allowHeader)
	}
	resp.Header.SetBytesV("Access-Control-Max-Age", p.maxAge)
}

// headersAllowed reports whether every header of an
// Access-Control-Request-Headers list is allowed.
func (p *corsPolicy) headersAllowed(list []byte) bool {
	for len(list) > 0 {
		var name []byte
		if i := bytes.IndexByte(list, ','); i >= 0 {
			name, list = list[:i], list[i+1:]
		} else {
			name, list = list, nil
		}
		name = bytes.TrimSpace(name)
		if len(name) > 0 && !p.headers[strings.ToLower(string(name))] {
			return false
		}
	}
	return true
}

// decorate marks an answer for the origin that asked, when it is allowed:
// the gateway's own errors too, so that a page can read a 401 or a 429.
func (p *corsPolicy) decorate(ctx *fasthttp.RequestCtx) {
	origin := ctx.Request.Header.PeekBytes(keyOrigin)
	h := &ctx.Response.Header
	h.Add("Vary", "Origin")
	if !p.allowedOrigin(origin) {
		return
	}
	p.allowOrigin(h, origin)
	if len(p.expose) > 0 {
		h.SetBytesV("Access-Control-Expose-Headers", p.expose)
	}
}

// allowOrigin writes Access-Control-Allow-Origin, and -Credentials when
// the route allows them. With credentials the origin itself is named, as
// the Fetch standard requires; "*" is sent only for a wildcard without.
func (p *corsPolicy) allowOrigin(h *fasthttp.ResponseHeader, origin []byte) {
	if p.anyOrigin && !p.credentials {
		h.SetBytesV("Access-Control-Allow-Origin", valueStar)
		return
	}
	h.SetBytesV("Access-Control-Allow-Origin", origin)
	if p.credentials {
		h.SetBytesV("Access-Control-Allow-Credentials", valueTrue)
	}
}

// addSecurityHeaders is server.security_headers: what nginx setups add
// with add_header, unless the backend said otherwise. HSTS only over TLS
// (RFC 6797 7.2: a plain-HTTP answer must not carry it).
func addSecurityHeaders(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	if len(h.Peek("X-Content-Type-Options")) == 0 {
		h.Set("X-Content-Type-Options", "nosniff")
	}
	if len(h.Peek("X-Frame-Options")) == 0 {
		h.Set("X-Frame-Options", "DENY")
	}
	if ctx.IsTLS() && len(h.Peek("Strict-Transport-Security")) == 0 {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}
