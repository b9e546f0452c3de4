package proxy

import (
	"bytes"
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

// hopHeaders are the headers meaningful only for one connection, removed
// in both directions, as net/http/httputil.ReverseProxy does. Connection
// itself is handled apart: the headers it names go too.
var hopHeaders = []string{
	"Keep-Alive",          // RFC 9112 9.3 (HTTP/1.0 persistent connections)
	"Proxy-Connection",    // non-standard, sent by old clients instead of Connection
	"Proxy-Authenticate",  // RFC 9110 11.7.1: for the proxy the client talks to
	"Proxy-Authorization", // RFC 9110 11.7.2: likewise
	"Te",                  // RFC 9110 10.1.4: "only applicable to the immediate connection"
	"Trailer",             // RFC 9110 6.6.2: fasthttp re-frames bodies, trailers are not forwarded
	"Transfer-Encoding",   // RFC 9112 6.1: framing is per connection; fasthttp re-frames
	"Upgrade",             // RFC 9110 7.8: protocol switches are not proxied
}

// removeHopByHop deletes the headers named in Connection, then the fixed
// list. The caller handles Connection: close itself, since fasthttp keeps
// it as a flag rather than a header.
func removeHopByHop(h interface {
	PeekAll(string) [][]byte
	DelBytes([]byte)
	Del(string)
}) {
	// The list may be split over several Connection lines (RFC 9110 5.3);
	// every name in any of them is hop-by-hop. The names are deleted after
	// the walk, which reads the header's own buffers.
	var named [8][]byte
	toDelete := named[:0]
	for _, conn := range h.PeekAll("Connection") {
		for len(conn) > 0 {
			var token []byte
			if i := bytes.IndexByte(conn, ','); i >= 0 {
				token, conn = conn[:i], conn[i+1:]
			} else {
				token, conn = conn, nil
			}
			token = bytes.TrimSpace(token)
			if len(token) > 0 && !bytes.EqualFold(token, []byte("close")) && !bytes.EqualFold(token, []byte("keep-alive")) {
				toDelete = append(toDelete, token)
			}
		}
	}
	for _, token := range toDelete {
		h.DelBytes(token)
	}
	h.Del("Connection")
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

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
	h.SetBytesV(headerRealIP, scratch)

	scratch = scratch[:0]
	if fromTrusted && len(xff) > 0 {
		scratch = append(append(scratch, xff...), ", "...)
	}
	scratch = peer.AppendTo(scratch)
	h.SetBytesV(headerForwardedFor, scratch)

	if !fromTrusted || len(h.Peek(headerForwardedProto)) == 0 {
		if ctx.IsTLS() {
			h.Set(headerForwardedProto, "https")
		} else {
			h.Set(headerForwardedProto, "http")
		}
	}
	if !fromTrusted || len(h.Peek(headerForwardedHost)) == 0 {
		h.SetBytesV(headerForwardedHost, h.Host())
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
