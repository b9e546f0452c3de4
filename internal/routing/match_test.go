package routing

import (
	"net/textproto"
	"testing"
)

// headers is a request's headers as matching sees them. Like fasthttp's
// RequestHeader.Peek, lookup ignores the case of the name, and a missing
// header peeks as empty.
type headers map[string]string

func (h headers) Peek(key string) []byte {
	for k, v := range h {
		if textproto.CanonicalMIMEHeaderKey(k) == textproto.CanonicalMIMEHeaderKey(key) {
			return []byte(v)
		}
	}
	return nil
}

type request struct {
	method, host, path string
	headers            headers
}

func TestMatch(t *testing.T) {
	iris := NewMatcher("/v1/models/iris", nil, "", nil)
	postOnly := NewMatcher("/", []string{"POST", "PUT"}, "", nil)
	api := NewMatcher("", nil, "api.example.com", nil)
	wildcard := NewMatcher("", nil, "*.example.com", nil)
	tenant := NewMatcher("", nil, "", map[string]string{"X-Tenant": "acme", "X-Plan": "gold"})
	emptyValue := NewMatcher("", nil, "", map[string]string{"X-Debug": ""})
	everything := NewMatcher("", nil, "", nil)

	cases := []struct {
		name     string
		matchers []Matcher
		req      request
		want     int
	}{
		// Path: a plain string prefix, as nginx "location /prefix" and
		// Envoy's "prefix" match.
		{"path equal to prefix", []Matcher{iris}, request{"POST", "h", "/v1/models/iris", nil}, 0},
		{"path under prefix", []Matcher{iris}, request{"POST", "h", "/v1/models/iris/predict", nil}, 0},
		{"path continuing prefix (plain string prefix)", []Matcher{iris}, request{"POST", "h", "/v1/models/iris-v2", nil}, 0},
		{"path shorter than prefix", []Matcher{iris}, request{"POST", "h", "/v1/models", nil}, -1},
		{"path elsewhere", []Matcher{iris}, request{"POST", "h", "/v2/models/iris", nil}, -1},
		{"path prefix is case-sensitive", []Matcher{iris}, request{"POST", "h", "/V1/models/iris", nil}, -1},
		{"empty prefix takes every path", []Matcher{everything}, request{"GET", "h", "/anything", nil}, 0},

		// Methods.
		{"method listed", []Matcher{postOnly}, request{"PUT", "h", "/x", nil}, 0},
		{"method not listed", []Matcher{postOnly}, request{"GET", "h", "/x", nil}, -1},
		{"methods are case-sensitive (RFC 9110 9.1)", []Matcher{postOnly}, request{"post", "h", "/x", nil}, -1},

		// Host: without its port, case-insensitively.
		{"host exact", []Matcher{api}, request{"GET", "api.example.com", "/", nil}, 0},
		{"host with port", []Matcher{api}, request{"GET", "api.example.com:8443", "/", nil}, 0},
		{"host in upper case", []Matcher{api}, request{"GET", "API.Example.COM", "/", nil}, 0},
		{"host other", []Matcher{api}, request{"GET", "web.example.com", "/", nil}, -1},
		{"host longer", []Matcher{api}, request{"GET", "api.example.com.evil.net", "/", nil}, -1},
		{"host missing", []Matcher{api}, request{"GET", "", "/", nil}, -1},

		// Wildcard host: any subdomain, not the bare domain.
		{"wildcard subdomain", []Matcher{wildcard}, request{"GET", "eu.example.com", "/", nil}, 0},
		{"wildcard deeper subdomain", []Matcher{wildcard}, request{"GET", "a.eu.example.com", "/", nil}, 0},
		{"wildcard with port and case", []Matcher{wildcard}, request{"GET", "EU.Example.com:443", "/", nil}, 0},
		{"wildcard not the bare domain", []Matcher{wildcard}, request{"GET", "example.com", "/", nil}, -1},
		{"wildcard not a lookalike domain", []Matcher{wildcard}, request{"GET", "badexample.com", "/", nil}, -1},
		{"wildcard not the domain with an empty label", []Matcher{wildcard}, request{"GET", ".example.com", "/", nil}, -1},

		// IPv6 literals keep their brackets; only a port after them goes.
		{"ipv6 host with port", []Matcher{NewMatcher("", nil, "[::1]", nil)}, request{"GET", "[::1]:8080", "/", nil}, 0},
		{"ipv6 host without port", []Matcher{NewMatcher("", nil, "[::1]", nil)}, request{"GET", "[::1]", "/", nil}, 0},

		// Headers: all present, exact values.
		{"headers all match", []Matcher{tenant}, request{"GET", "h", "/", headers{"X-Tenant": "acme", "X-Plan": "gold"}}, 0},
		{"header names ignore case", []Matcher{tenant}, request{"GET", "h", "/", headers{"x-tenant": "acme", "x-plan": "gold"}}, 0},
		{"one header missing", []Matcher{tenant}, request{"GET", "h", "/", headers{"X-Tenant": "acme"}}, -1},
		{"header value differs", []Matcher{tenant}, request{"GET", "h", "/", headers{"X-Tenant": "acme", "X-Plan": "silver"}}, -1},
		{"header values are exact, case included", []Matcher{tenant}, request{"GET", "h", "/", headers{"X-Tenant": "ACME", "X-Plan": "gold"}}, -1},
		{"header value prefix is not enough", []Matcher{tenant}, request{"GET", "h", "/", headers{"X-Tenant": "acme-corp", "X-Plan": "gold"}}, -1},
		// Peek cannot tell an empty header from a missing one, so a
		// required empty value never matches rather than matching all.
		{"empty required value never matches", []Matcher{emptyValue}, request{"GET", "h", "/", headers{"X-Debug": ""}}, -1},

		// Several conditions are a conjunction.
		{"all conditions hold", []Matcher{NewMatcher("/v1", []string{"POST"}, "api.example.com", map[string]string{"X-Tenant": "acme"})},
			request{"POST", "api.example.com", "/v1/x", headers{"X-Tenant": "acme"}}, 0},
		{"one condition fails", []Matcher{NewMatcher("/v1", []string{"POST"}, "api.example.com", map[string]string{"X-Tenant": "acme"})},
			request{"GET", "api.example.com", "/v1/x", headers{"X-Tenant": "acme"}}, -1},

		// Order: the first match wins, even when a later one is more specific.
		{"first match wins", []Matcher{everything, iris}, request{"POST", "h", "/v1/models/iris", nil}, 0},
		{"later match when earlier ones fail", []Matcher{api, postOnly, iris}, request{"POST", "h", "/v1/models/iris", nil}, 1},
		{"no match", []Matcher{api, iris}, request{"GET", "h", "/health", nil}, -1},
		{"no routes", nil, request{"GET", "h", "/", nil}, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.req.headers
			if h == nil {
				h = headers{}
			}
			got := Match(tc.matchers, []byte(tc.req.method), []byte(tc.req.host), []byte(tc.req.path), h)
			if got != tc.want {
				t.Errorf("Match(%s %s%s) = %d, want %d", tc.req.method, tc.req.host, tc.req.path, got, tc.want)
			}
		})
	}
}

// noHeaders peeks nothing without allocating, like a fasthttp header
// without the field.
type noHeaders struct{}

func (noHeaders) Peek(string) []byte { return nil }

// The hot path: a request walks every route before matching the last.
// Matching must not allocate.
func BenchmarkMatch(b *testing.B) {
	var ms []Matcher
	for _, p := range []string{"/v1/models/a", "/v1/models/b", "/v1/models/c", "/v2/", "/admin"} {
		ms = append(ms, NewMatcher(p, []string{"POST"}, "", nil))
		ms = append(ms, NewMatcher(p, nil, "*.example.com", nil))
	}
	ms = append(ms, NewMatcher("/v1/models/iris", []string{"GET", "POST"}, "api.example.com", nil))
	method, host, path := []byte("POST"), []byte("API.example.com:8080"), []byte("/v1/models/iris/predict")
	want := len(ms) - 1
	b.ReportAllocs()
	for b.Loop() {
		if Match(ms, method, host, path, noHeaders{}) != want {
			b.Fatal("wrong route")
		}
	}
}
