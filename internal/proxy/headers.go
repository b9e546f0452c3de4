package proxy

import (
	"bytes"
	"iter"
	"math/rand/v2"
	"net/netip"

	"github.com/valyala/fasthttp"
)

var (
	headerRequestID      = "X-Request-Id"
	headerVariant        = "X-Sluice-Variant"
	headerForwardedFor   = "X-Forwarded-For"
	headerForwardedProto = "X-Forwarded-Proto"
	headerForwardedHost  = "X-Forwarded-Host"
	headerRealIP         = "X-Real-Ip"
)

// The same names as bytes, for the per-request writes: fasthttp's
// SetCanonical takes a name that is already in canonical form as it is,
// where Set would normalise a copy on every call.
var (
	keyRequestID      = []byte(headerRequestID)
	keyVariant        = []byte(headerVariant)
	keyForwardedFor   = []byte(headerForwardedFor)
	keyForwardedProto = []byte(headerForwardedProto)
	keyForwardedHost  = []byte(headerForwardedHost)
	keyRealIP         = []byte(headerRealIP)
	valueHTTP         = []byte("http")
	valueHTTPS        = []byte("https")
)

// hopHeaders are the headers meaningful only for one connection, removed
// in both directions, as net/http/httputil.ReverseProxy does. Connection
// itself is handled apart: the headers it names go too.
var hopHeaders = [][]byte{
	[]byte("Keep-Alive"),          // RFC 9112 9.3 (HTTP/1.0 persistent connections)
	[]byte("Proxy-Connection"),    // non-standard, sent by old clients instead of Connection
	[]byte("Proxy-Authenticate"),  // RFC 9110 11.7.1: for the proxy the client talks to
	[]byte("Proxy-Authorization"), // RFC 9110 11.7.2: likewise
	[]byte("Te"),                  // RFC 9110 10.1.4: "only applicable to the immediate connection"
	[]byte("Trailer"),             // RFC 9110 6.6.2: fasthttp re-frames bodies, trailers are not forwarded
	[]byte("Transfer-Encoding"),   // RFC 9112 6.1: framing is per connection; fasthttp re-frames
	[]byte("Upgrade"),             // RFC 9110 7.8: protocol switches are not proxied
}

var (
	headerConnection = []byte("Connection")
	tokenClose       = []byte("close")
	tokenKeepAlive   = []byte("keep-alive")
)

// removeRequestHopByHop deletes Connection, the headers it names, and the
// fixed list from a request. The caller handles Connection: close itself,
// since fasthttp keeps it as a flag rather than a header. One walk over
// the header finds them; most requests have none, and then nothing else
// is done.
func removeRequestHopByHop(h *fasthttp.RequestHeader) {
	var named [8][]byte
	for _, name := range hopByHopIn(h.All(), named[:0]) {
		h.DelBytes(name)
	}
}

// AdminCookie is the operator console's session cookie, which carries the
// admin token (internal/admin sets it).
const AdminCookie = "sluice_admin"

var adminCookiePrefix = []byte(AdminCookie + "=")

// dropAdminCookie keeps the console's session cookie from a worker.
// Browsers do not keep cookies apart by port (RFC 6265, section 8.5), so
// a browser that logged in to the console on the admin port sends the
// cookie to the client port of the same host name too. A request without
// it costs a search of the Cookie header as received; only one that
// carries it has its cookies parsed and written anew.
func dropAdminCookie(h *fasthttp.RequestHeader) {
	if bytes.Contains(h.Peek(fasthttp.HeaderCookie), adminCookiePrefix) {
		h.DelCookie(AdminCookie)
	}
}

// removeResponseHopByHop is removeRequestHopByHop for an answer.
func removeResponseHopByHop(h *fasthttp.ResponseHeader) {
	var named [8][]byte
	for _, name := range hopByHopIn(h.All(), named[:0]) {
		h.DelBytes(name)
	}
}

// hopByHopIn appends to names the hop-by-hop headers of a header's fields.
// The names point into the header's own buffers, which deleting moves but
// does not overwrite, so they can be deleted after the walk.
func hopByHopIn(fields iter.Seq2[[]byte, []byte], names [][]byte) [][]byte {
	for key, value := range fields {
		names = appendHopByHop(names, key, value)
	}
	return names
}

// appendHopByHop appends key if it is a hop-by-hop header, and for
// Connection the names its value lists (RFC 9110 7.6.1; the list may be
// split over several Connection lines, and every name in any of them
// goes).
func appendHopByHop(names [][]byte, key, value []byte) [][]byte {
	if len(key) == 0 {
		return names
	}
	switch key[0] | 0x20 { // the first letters of the names below
	case 'c', 'k', 'p', 't', 'u':
	default:
		return names
	}
	if equalFold(key, headerConnection) {
		for len(value) > 0 {
			var token []byte
			if i := bytes.IndexByte(value, ','); i >= 0 {
				token, value = value[:i], value[i+1:]
			} else {
				token, value = value, nil
			}
			token = bytes.TrimSpace(token)
			if len(token) > 0 && !equalFold(token, tokenClose) && !equalFold(token, tokenKeepAlive) {
				names = append(names, token)
			}
		}
		return append(names, key)
	}
	for _, hop := range hopHeaders {
		if equalFold(key, hop) {
			return append(names, key)
		}
	}
	return names
}

// equalFold is bytes.EqualFold that gives up at once on a length
// mismatch.
func equalFold(a, b []byte) bool { return len(a) == len(b) && bytes.EqualFold(a, b) }

// clientAddr finds the client's address. From a trusted proxy, the
// X-Forwarded-For chain is walked from the right, skipping trusted hops
// (nginx's real_ip_recursive); from anyone else, the peer is the client
// and whatever X-Forwarded-For it sent is ignored.
func clientAddr(peer netip.Addr, xff []byte, trusted []netip.Prefix) netip.Addr {
	if !isTrusted(peer, trusted) {
		return peer
	}
	client := peer
	for len(xff) > 0 {
		var hop []byte
		if i := bytes.LastIndexByte(xff, ','); i >= 0 {
			hop, xff = xff[i+1:], xff[:i]
		} else {
			hop, xff = xff, nil
		}
		addr, err := netip.ParseAddr(string(bytes.TrimSpace(hop)))
		if err != nil {
			break // a garbled hop ends what can be believed
		}
		client = addr.Unmap()
		if !isTrusted(client, trusted) {
			break
		}
	}
	return client
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// setForwarded writes X-Forwarded-For (appended for a trusted peer, reset
// for any other), X-Real-IP, X-Forwarded-Proto and X-Forwarded-Host. A
// peer that is not trusted cannot set any of them, nor RFC 7239 Forwarded.
func setForwarded(ctx *fasthttp.RequestCtx, peer netip.Addr, trusted []netip.Prefix, scratch []byte) []byte {
	h := &ctx.Request.Header
	fromTrusted := isTrusted(peer, trusted)
	xff := h.Peek(headerForwardedFor)

	client := clientAddr(peer, xff, trusted)
	scratch = client.AppendTo(scratch[:0])
	h.SetCanonical(keyRealIP, scratch)

	scratch = scratch[:0]
	if fromTrusted && len(xff) > 0 {
		scratch = append(append(scratch, xff...), ", "...)
	}
	scratch = peer.AppendTo(scratch)
	h.SetCanonical(keyForwardedFor, scratch)

	if !fromTrusted || len(h.Peek(headerForwardedProto)) == 0 {
		if ctx.IsTLS() {
			h.SetCanonical(keyForwardedProto, valueHTTPS)
		} else {
			h.SetCanonical(keyForwardedProto, valueHTTP)
		}
	}
	if !fromTrusted || len(h.Peek(headerForwardedHost)) == 0 {
		h.SetCanonical(keyForwardedHost, h.Host())
	}
	if !fromTrusted {
		h.Del("Forwarded")
	}
	return scratch
}

// maxRequestIDLen bounds a client's X-Request-Id; longer ones are replaced.
const maxRequestIDLen = 128

// saneRequestID reports whether a client's X-Request-Id can be passed on
// and logged as it is: 1 to 128 visible ASCII characters, no quote or
// backslash (it is echoed in JSON error bodies).
func saneRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > maxRequestIDLen {
		return false
	}
	for _, c := range id {
		if c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// newRequestID writes a random UUID (version 4, RFC 9562) into dst.
func newRequestID(dst *[36]byte) []byte {
	const hex = "0123456789abcdef"
	var raw [16]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	for i := 0; i < 8; i++ {
		raw[i], raw[8+i] = byte(hi>>(8*i)), byte(lo>>(8*i))
	}
	raw[6] = raw[6]&0x0f | 0x40
	raw[8] = raw[8]&0x3f | 0x80
	j := 0
	for i, b := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j], dst[j+1] = hex[b>>4], hex[b&0xf]
		j += 2
	}
	return dst[:]
}
