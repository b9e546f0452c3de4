package proxy

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// Edge validation: what the gateway refuses at the door on top of what
// fasthttp's parser refuses already (bad Content-Length, chunk sizes and
// extensions, duplicate or unknown Transfer-Encoding, Transfer-Encoding on
// HTTP/1.0, a missing, doubled or malformed Host, CR, LF or NUL in a field
// value, control bytes in the request-target). The policy is the strict one
// of Envoy and nginx, and README "What a client sees" lists it.

// headerVerdict is what one pass over the raw header block found.
type headerVerdict uint8

const (
	headersOK         headerVerdict = iota
	headersUnderscore               // a field name holds '_': the field is dropped
	headersBad                      // malformed: answered 400
	headersBadFraming               // the body's end is in doubt: 400, and the connection closes
)

// tchar marks the bytes allowed in a field name (RFC 9110 5.1 and 5.6.2).
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		t[c] = true
	}
	return t
}()

// checkHeaders reads the header block as received (fasthttp rewrites its
// parsed framing headers once it has read the body, so the raw block is
// the one truth about framing) and judges it in one pass:
//   - Content-Length together with Transfer-Encoding is refused: RFC 9112
//     6.3 lets a server drop the Content-Length, but a front end and a back
//     end that disagree on which header frames the body is how request
//     smuggling works (Envoy and nginx both refuse it);
//   - a Transfer-Encoding other than exactly "chunked" is refused (RFC 9112
//     6.3: chunked must be the final coding; fasthttp reads "identity" as
//     no body at all and would take the body for the next request);
//   - obs-fold, a line starting with a space or tab, is refused (RFC 9112
//     5.2 allows a server to answer 400);
//   - a field name that is not a token (a space in it, or before the
//     colon) is refused (RFC 9110 5.1, RFC 9112 5.1: "MUST respond 400");
//   - a name holding '_' is reported, for dropRiskyHeaders.
func checkHeaders(raw []byte) headerVerdict {
	var length, encoding, underscore bool
	for len(raw) > 0 {
		var line []byte
		line, raw = cutLine(raw)
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			return headersBad // obs-fold
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			return headersBad
		}
		name := line[:i]
		for _, c := range name {
			if !tchar[c] {
				return headersBad
			}
			if c == '_' {
				underscore = true
			}
		}
		switch {
		case bytes.EqualFold(name, strContentLength):
			length = true
		case bytes.EqualFold(name, strTransferEncoding):
			encoding = true
			if !bytes.EqualFold(bytes.TrimSpace(line[i+1:]), strChunked) {
				return headersBadFraming
			}
		}
	}
	switch {
	case length && encoding:
		return headersBadFraming
	case underscore:
		return headersUnderscore
	}
	return headersOK
}

// cutLine splits the first line (up to '\n', which it drops) off a raw
// header block.
func cutLine(raw []byte) (line, rest []byte) {
	if i := bytes.IndexByte(raw, '\n'); i >= 0 {
		return raw[:i], raw[i+1:]
	}
	return raw, nil
}

var (
	strContentLength    = []byte("Content-Length")
	strTransferEncoding = []byte("Transfer-Encoding")
	strChunked          = []byte("chunked")
)

// dropUnderscoreHeaders deletes every field whose name holds '_', as nginx
// does by default (underscores_in_headers off). Many backends (CGI, WSGI,
// Rack, PHP) map '-' and '_' to the same variable, so X_User_Id could
// stand in for the X-User-Id the gateway keyed on, or overwrite it. It
// runs before routing, so no route, sticky key or limit reads them.
func dropUnderscoreHeaders(h *fasthttp.RequestHeader) {
	raw := h.RawHeaders()
	for len(raw) > 0 {
		var line []byte
		line, raw = cutLine(raw)
		if i := bytes.IndexByte(line, ':'); i > 0 && bytes.IndexByte(line[:i], '_') >= 0 {
			h.DelBytes(line[:i])
		}
	}
}

// badTarget reports whether a request-target (as received) is refused.
// fasthttp has refused control bytes already. On top of that:
//   - in absolute form, a scheme other than http or https, or an empty
//     authority;
//   - a fragment: RFC 9112 3.2 gives '#' no place in a request-target, and
//     Envoy rejects it by default (http_reject_path_with_fragment);
//   - any byte outside ASCII, UTF-8 or not: RFC 3986 2 wants it
//     percent-encoded, and a raw one reads differently in every backend;
//   - broken percent-encoding ("%zz", "%2" at the end), as nginx refuses;
//   - in the path, an encoded '/', '\\' or control byte, and a dot segment
//     spelled with an encoded dot ("%2e%2e"): fasthttp decodes and resolves
//     them before routing, so "/a/%2e%2e/b" would be matched as "/b" while
//     a backend that decodes on its own could see other segments; Envoy's
//     path_with_escaped_slashes_action REJECT_REQUEST is the model.
//
// Plain dot segments are resolved by fasthttp before routing, as nginx
// does, and what is forwarded is the resolved path.
func badTarget(target []byte) bool {
	if len(target) > 0 && target[0] != '/' {
		// Absolute form: skip scheme and authority; fasthttp has checked
		// the scheme, and the authority is Host's to check.
		i := bytes.Index(target, []byte("://"))
		if i < 0 {
			return false // asterisk or authority form
		}
		// Only http and https name a resource the gateway serves, and an
		// empty authority leaves the request with no Host at all
		// (regression: "A:///b/" reached a worker without one).
		if scheme := target[:i]; !bytes.EqualFold(scheme, []byte("http")) && !bytes.EqualFold(scheme, []byte("https")) {
			return true
		}
		rest := target[i+3:]
		j := bytes.IndexByte(rest, '/')
		if j == 0 || len(rest) == 0 {
			return true
		}
		if j < 0 {
			return bytes.IndexByte(rest, '#') >= 0
		}
		target = rest[j:]
	}
	inPath := true
	var segLen, dots int
	var encodedDot bool
	for i := 0; i < len(target); i++ {
		c := target[i]
		switch {
		case c >= 0x80 || c == '#':
			return true
		case inPath && c == '?':
			if encodedDot && dots == segLen && dots <= 2 {
				return true
			}
			inPath = false
		case c == '%':
			if i+2 >= len(target) || unhex[target[i+1]] < 0 || unhex[target[i+2]] < 0 {
				return true
			}
			d := byte(unhex[target[i+1]])<<4 | byte(unhex[target[i+2]])
			i += 2
			if !inPath {
				continue
			}
			if d == '/' || d == '\\' || d < 0x20 || d == 0x7f {
				return true
			}
			segLen++
			if d == '.' {
				dots++
				encodedDot = true
			}
		case inPath && c == '/':
			if encodedDot && dots == segLen && dots <= 2 {
				return true
			}
			segLen, dots, encodedDot = 0, 0, false
		case inPath:
			segLen++
			if c == '.' {
				dots++
			}
		}
	}
	return inPath && encodedDot && dots == segLen && dots <= 2
}

// unhex is a hex digit's value, or -1.
var unhex = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = int8(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c], t[c-'a'+'A'] = int8(c-'a'+10), int8(c-'a'+10)
	}
	return t
}()

// knownVersion reports whether a request's HTTP version is one the
// gateway speaks: 1.0 or 1.1. fasthttp reads any "HTTP/x.y" (HTTP/0.0,
// HTTP/1.7) as a request to serve, and a worker would get the version as
// sent; nginx refuses what it does not know too.
func knownVersion(proto []byte) bool {
	return bytes.Equal(proto, http11) || bytes.Equal(proto, http10)
}

var http10 = []byte("HTTP/1.0")
