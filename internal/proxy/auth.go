package proxy

import (
	"bytes"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/audit"
	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/limits"
	"github.com/sluice-gw/sluice/internal/metrics"
)

// routeAuth is a route's compiled auth block: who may call it, and what
// the backend is told about them.
type routeAuth struct {
	keys      *auth.KeysHandle // nil without api_keys
	keyHeader []byte
	jwt       *auth.JWTHandle // nil without jwt
	pass      bool            // forward the credentials
	route     string
	tags      []string
	decisions *metrics.AuthSeries
	// challenge is the WWW-Authenticate value of a 401 without a token.
	challenge []byte
}

// headerIdentity tells the backend who called: the API key's name or the
// token's sub. A client's own is always removed.
var (
	headerIdentity = "X-Sluice-Identity"
	keyIdentity    = []byte(headerIdentity)
	keyAuthorize   = []byte("Authorization")
	bearerPrefix   = []byte("bearer ")
)

// identityKey is the request user value that holds the caller's
// *auth.Identity once authenticated.
type identityKey struct{}

// identityOf is the identity a request authenticated as; nil when none.
func identityOf(ctx *fasthttp.RequestCtx) *auth.Identity {
	id, _ := ctx.UserValue(identityKey{}).(*auth.Identity)
	return id
}

// Failures of authentication (SPEC section 3).
var (
	FailUnauthorized = Failure{401, "unauthorized", "missing or invalid API key or token"}
	FailForbidden    = Failure{403, "forbidden", "the credential is valid but not allowed on this route"}
)

// compileAuth builds a route's auth; nil for a public route.
func compileAuth(cfg *config.Config, rc *config.Route, store *auth.Store, m *metrics.Metrics) *routeAuth {
	a := cfg.AuthFor(rc)
	if a == nil {
		return nil
	}
	ra := &routeAuth{pass: a.PassCredentials, route: rc.Name, tags: rc.Tags, decisions: m.Auth(rc.Name)}
	var challenge []byte
	if a.APIKeys != nil {
		h := store.Keys(a.APIKeys.KeysFile)
		ra.keys = &h
		ra.keyHeader = []byte(a.APIKeys.Header)
		challenge = append(challenge, `APIKey realm="sluice", header="`+a.APIKeys.Header+`"`...)
	}
	if a.JWT != nil {
		h := store.JWT(a.JWT)
		ra.jwt = &h
		if len(challenge) > 0 {
			challenge = append(challenge, ", "...)
		}
		challenge = append(challenge, `Bearer realm="sluice"`...)
	}
	ra.challenge = challenge
	return ra
}

// handles are the auth files the route reads, for the store's Retain.
func (a *routeAuth) handles() []any {
	var hs []any
	if a.keys != nil {
		hs = append(hs, *a.keys)
	}
	if a.jwt != nil {
		hs = append(hs, *a.jwt)
	}
	return hs
}

// verdict is the outcome of authenticating one request.
type verdict struct {
	who     *auth.Identity // nil when refused
	key     *auth.Key      // the API key used; nil for a token
	limiter *limits.Local  // the key's own rate limit; nil when none
	fail    Failure        // when refused
	reason  string         // why refused, for the audit log; never the credential
	code    string         // RFC 6750 error code for a refused token
}

// check authenticates a request: an API key when the request has the
// key header, else a bearer token. A pure function of the request, the
// route and the keys in force.
func (a *routeAuth) check(ctx *fasthttp.RequestCtx, now time.Time) verdict {
	if a.keys != nil {
		if presented := ctx.Request.Header.PeekBytes(a.keyHeader); len(presented) > 0 {
			return a.checkKey(presented)
		}
	}
	if a.jwt != nil {
		if token, ok := bearerToken(ctx.Request.Header.PeekBytes(keyAuthorize)); ok {
			return a.checkToken(token, now)
		}
	}
	return verdict{fail: FailUnauthorized, reason: "no credentials"}
}

func (a *routeAuth) checkKey(presented []byte) verdict {
	keys := a.keys.Current()
	if keys == nil {
		return verdict{fail: FailUnauthorized, reason: "keys file not loaded"}
	}
	k := keys.Set.Lookup(presented)
	switch {
	case k == nil:
		return verdict{fail: FailUnauthorized, reason: "unknown API key"}
	case !k.Allows(a.route, a.tags):
		return verdict{who: k.Identity(), fail: FailForbidden, reason: "API key not allowed on this route"}
	}
	return verdict{who: k.Identity(), key: k, limiter: keys.Limiter(k)}
}

func (a *routeAuth) checkToken(token []byte, now time.Time) verdict {
	v := a.jwt.Current()
	if v == nil {
		return verdict{fail: FailUnauthorized, reason: "jwt keys not loaded", code: "invalid_token"}
	}
	who, err := v.Verify(token, now)
	if err != nil {
		te, ok := err.(*auth.TokenError)
		if !ok {
			return verdict{fail: FailUnauthorized, reason: "invalid token", code: "invalid_token"}
		}
		f := FailUnauthorized
		if te.Status == fasthttp.StatusForbidden {
			f = FailForbidden
		}
		return verdict{fail: f, reason: te.Reason, code: te.Code}
	}
	if !headerSafe(who.Name) {
		return verdict{fail: FailUnauthorized, reason: "sub is not a valid header value", code: "invalid_token"}
	}
	return verdict{who: who}
}

// bearerToken returns the token of an "Authorization: Bearer TOKEN" value
// (RFC 6750 2.1; the scheme is case-insensitive).
func bearerToken(v []byte) ([]byte, bool) {
	if len(v) <= len(bearerPrefix) || !equalFold(v[:len(bearerPrefix)], bearerPrefix) {
		return nil, false
	}
	token := bytes.TrimSpace(v[len(bearerPrefix):])
	return token, len(token) > 0
}

// headerSafe reports whether s can go in a header value as it is.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// refuse answers a request that failed authentication: 401 with
// WWW-Authenticate (RFC 9110 11.6.1, RFC 6750 3) or 403.
func (a *routeAuth) refuse(ctx *fasthttp.RequestCtx, v verdict, id []byte) {
	writeFailure(ctx, v.fail, id)
	h := &ctx.Response.Header
	switch {
	case v.code != "" && a.jwt != nil:
		// A presented token: name the error, in the bearer challenge.
		var buf [160]byte
		b := append(buf[:0], `Bearer realm="sluice", error="`...)
		b = append(b, v.code...)
		b = append(b, '"')
		h.SetBytesV("WWW-Authenticate", b)
	case v.fail.Status == fasthttp.StatusUnauthorized:
		h.SetBytesV("WWW-Authenticate", a.challenge)
	}
	if v.fail.Status == fasthttp.StatusUnauthorized {
		a.decisions.Unauthorized.Inc()
	} else {
		a.decisions.Forbidden.Inc()
	}
}

// forwardIdentity removes the credentials (unless the route passes them)
// and tells the backend who called. Called once the request is admitted,
// before it is cached, forwarded or mirrored.
func (a *routeAuth) forwardIdentity(req *fasthttp.Request, who *auth.Identity) {
	if !a.pass {
		if a.keys != nil {
			req.Header.DelBytes(a.keyHeader)
		}
		if a.jwt != nil {
			req.Header.DelBytes(keyAuthorize)
		}
	}
	req.Header.Set(headerIdentity, who.Name)
}

// auditEntry is the audit line of a decision on ctx.
func auditEntry(ctx *fasthttp.RequestCtx, route string, v verdict, status int, id []byte, client string) audit.Entry {
	e := audit.Entry{
		Time: time.Now().UTC(), RequestID: string(id), Route: route,
		Method: string(ctx.Method()), Path: string(ctx.Path()), Status: status, ClientIP: client, Reason: v.reason,
	}
	if v.who != nil {
		e.Identity, e.Kind = v.who.Name, v.who.Kind
	}
	switch {
	case v.fail.Status == fasthttp.StatusUnauthorized:
		e.Decision = metrics.AuthUnauthorized
	case v.fail.Status == fasthttp.StatusForbidden:
		e.Decision = metrics.AuthForbidden
	default:
		e.Decision = metrics.AuthAllowed
	}
	return e
}
