package proxy

import (
	"net/netip"

	"github.com/buger/jsonparser"
	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/config"
)

// keyReader reads one key source (SPEC section 2) from a request.
type keyReader struct {
	src config.KeySource
}

// read returns the key's value, or nil when the request has none. The
// result may point into the request or into scratch; use it before either
// changes. A JSON field is found by scanning the body in place, never by
// decoding it into maps.
func (k keyReader) read(ctx *fasthttp.RequestCtx, trusted []netip.Prefix, scratch []byte) []byte {
	switch k.src.Kind {
	case config.KeyHeader:
		return ctx.Request.Header.Peek(k.src.Name)
	case config.KeyCookie:
		return ctx.Request.Header.Cookie(k.src.Name)
	case config.KeyQuery:
		return ctx.QueryArgs().Peek(k.src.Name)
	case config.KeyJSON:
		v, typ, _, err := jsonparser.Get(ctx.Request.Body(), k.src.Path...)
		if err != nil || typ == jsonparser.Null || typ == jsonparser.Object || typ == jsonparser.Array {
			return nil
		}
		return v
	case config.KeyClientIP:
		client := peerAddr(ctx)
		// Looking a header up costs more than the rest of this: only a
		// trusted peer's X-Forwarded-For is read at all.
		if isTrusted(client, trusted) {
			client = clientAddr(client, ctx.Request.Header.Peek(headerForwardedFor), trusted)
		}
		return client.AppendTo(scratch[:0])
	case config.KeyPath:
		return ctx.Path()
	case config.KeyAPIKey:
		if id := identityOf(ctx); id != nil && id.Kind == auth.KindAPIKey {
			return append(scratch[:0], id.Name...)
		}
	case config.KeyJWTClaim:
		id := identityOf(ctx)
		if id == nil || id.Kind != auth.KindJWT {
			return nil
		}
		v, typ, _, err := jsonparser.Get(id.Claims, k.src.Path...)
		if err != nil || typ == jsonparser.Null || typ == jsonparser.Object || typ == jsonparser.Array {
			return nil
		}
		return v
	}
	return nil
}
