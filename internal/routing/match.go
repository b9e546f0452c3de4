// Package routing holds the gateway's routing decisions as pure functions:
// which route a request matches, and which backend of a pool answers it.
// Nothing here does I/O or reads a clock; the caller passes in the request's
// parts, a health view of the backends and a random number, so every
// decision can be tested from a table.
package routing

import "bytes"

// Matcher is one route's match condition, compiled for the hot path.
type Matcher struct {
	PathPrefix []byte
	Methods    [][]byte // empty: any
	Host       []byte   // lower case, no port; empty: any
	HostSuffix bool     // Host was "*.example.com": Host holds ".example.com"
	Headers    []HeaderMatch
}

// HeaderMatch requires a header to be present with exactly Value.
type HeaderMatch struct {
	Name  string
	Value []byte
}

// NewMatcher compiles a match condition. methods must be upper case and host
// lower case, as config.Parse leaves them.
func NewMatcher(pathPrefix string, methods []string, host string, headers map[string]string) Matcher {
	m := Matcher{PathPrefix: []byte(pathPrefix)}
	for _, meth := range methods {
		m.Methods = append(m.Methods, []byte(meth))
	}
	if len(host) > 2 && host[:2] == "*." {
		m.Host, m.HostSuffix = []byte(host[1:]), true
	} else if host != "" {
		m.Host = []byte(host)
	}
	for name, value := range headers {
		m.Headers = append(m.Headers, HeaderMatch{Name: name, Value: []byte(value)})
	}
	return m
}

// HeaderPeeker is what matching needs of request headers;
// *fasthttp.RequestHeader satisfies it.
type HeaderPeeker interface {
	Peek(key string) []byte
}

// Match returns the index of the first matcher that takes the request, or
// -1. path is the normalised path; host is the Host header as sent.
func Match(ms []Matcher, method, host, path []byte, h HeaderPeeker) int {
	for i := range ms {
		if ms[i].matches(method, host, path, h) {
			return i
		}
	}
	return -1
}

func (m *Matcher) matches(method, host, path []byte, h HeaderPeeker) bool {
	// Plain string prefix, as nginx "location /prefix" and Envoy's "prefix".
	if !bytes.HasPrefix(path, m.PathPrefix) {
		return false
	}
	if len(m.Methods) > 0 && !containsBytes(m.Methods, method) {
		return false
	}
	if len(m.Host) > 0 && !m.hostMatches(host) {
		return false
	}
	for _, hm := range m.Headers {
		if v := h.Peek(hm.Name); !bytes.Equal(v, hm.Value) || (len(v) == 0 && len(hm.Value) == 0) {
			// An empty required value still needs the header to be present;
			// Peek cannot tell, so an empty value never matches.
			return false
		}
	}
	return true
}

func (m *Matcher) hostMatches(host []byte) bool {
	host = stripPort(host)
	if m.HostSuffix {
		return len(host) > len(m.Host) && equalFoldASCII(host[len(host)-len(m.Host):], m.Host)
	}
	return equalFoldASCII(host, m.Host)
}

// stripPort drops ":port" from a Host value, leaving IPv6 brackets alone.
func stripPort(host []byte) []byte {
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && bytes.IndexByte(host[i:], ']') < 0 {
		return host[:i]
	}
	return host
}

func containsBytes(list [][]byte, v []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, v) {
			return true
		}
	}
	return false
}

// equalFoldASCII compares host names; want is already lower case.
func equalFoldASCII(got, want []byte) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		c := got[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}
