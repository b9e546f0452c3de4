package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/testutil"
)

// The pieces of the request path that BenchmarkProxyPlain runs together,
// one at a time, so that a regression in any of them shows by itself and
// is not lost in the noise of a loopback round trip. Route matching is
// routing's BenchmarkMatch; split and sticky selection BenchmarkChooseVariant.

// benchID is the request id the rewrites set.
var benchID = []byte("7f9c2a1e-4b6d-4e0f-9a51-3c2d8e7b6a10")

// clientRequest is a request as a Python client sends it, straight to the
// gateway: keep-alive, credentials, a trace header and its own request id.
func clientRequest(body string) string {
	return "POST /v1/models/iris/predict HTTP/1.1\r\n" +
		"Host: gateway.local\r\n" +
		"User-Agent: python-requests/2.32.3\r\n" +
		"Accept-Encoding: gzip, deflate\r\n" +
		"Accept: application/json\r\n" +
		"Connection: keep-alive\r\n" +
		"Content-Type: application/json\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n", len(body)) +
		"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTAwMTIzNDUifQ.c2lnbmF0dXJl\r\n" +
		"X-Request-Id: 7f9c2a1e-4b6d-4e0f-9a51-3c2d8e7b6a10\r\n" +
		"X-User-Id: user-0012345\r\n" +
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n" +
		"\r\n" + body
}

// parseRequest reads raw as the server would, so the request holds its
// raw header block like one off the wire.
func parseRequest(tb testing.TB, raw string) *fasthttp.Request {
	tb.Helper()
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatalf("parse %q: %v", raw, err)
	}
	return &req
}

// jsonBody builds a prediction request of about size bytes: a batch of
// flower measurements, as a client would send it.
func jsonBody(size int) string {
	var b strings.Builder
	b.WriteString(`{"model":"iris","parameters":{"explain":false,"top_k":3},"instances":[`)
	for i := 0; b.Len() < size-90; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"sepal_length":%.1f,"sepal_width":%.1f,"petal_length":%.1f,"petal_width":%.1f}`,
			i, 4.3+float64(i%36)/10, 2.0+float64(i%24)/10, 1.0+float64(i%59)/10, 0.1+float64(i%25)/10)
	}
	b.WriteString(`]}`)
	return b.String()
}

// jsonAnswer builds a worker's answer of about size bytes.
func jsonAnswer(size int) string {
	var b strings.Builder
	b.WriteString(`{"model":"iris","model_version":"1","predictions":[`)
	labels := []string{"setosa", "versicolor", "virginica"}
	for i := 0; b.Len() < size-50; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"label":%q,"score":0.%02d}`, i, labels[i%3], 50+i%50)
	}
	b.WriteString(`]}`)
	return b.String()
}

const smallBody = `{"input":[5.1,3.5,1.4,0.2]}`

// BenchmarkRequestRewrite is what forward does to the client's request
// before sending it: remove hop-by-hop headers (and those Connection
// names), write X-Forwarded-For, X-Real-Ip, X-Forwarded-Proto and
// X-Forwarded-Host, and set X-Request-Id. Each iteration rewrites a fresh
// copy of a parsed request: copy_only is the copy alone, so the rewrite's
// cost is copy_and_rewrite minus copy_only (the handler rewrites the
// request in place and copies nothing). Budget: 0 allocs/op for both, as
// on the plain proxy path (SPEC section 8); the copy reuses the buffers
// of the request it fills.
//
//   - client: a client's request straight from the internet, peer not
//     trusted, so any forwarding headers are replaced.
//   - trusted_peer: from a load balancer the gateway trusts, with a
//     forwarding chain to walk and extend. Its budget is 0 allocs/op too;
//     each hop walked costs one allocation while clientAddr hands
//     netip.ParseAddr a string made from the header's bytes.
//   - hop_headers: a client that sends every kind of hop-by-hop header,
//     with one more named in Connection.
func BenchmarkRequestRewrite(b *testing.B) {
	trustedLB := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, bc := range []struct {
		name    string
		raw     string
		peer    net.IP
		trusted []netip.Prefix
		// The forwarding headers as sent.
		wantXFF, wantReal, wantProto, wantHost string
	}{
		{"client", clientRequest(smallBody), net.IPv4(203, 0, 113, 9), trustedLB, "203.0.113.9", "203.0.113.9", "http", "gateway.local"},
		{
			"trusted_peer",
			strings.Replace(clientRequest(smallBody), "Connection: keep-alive\r\n",
				"Connection: keep-alive\r\nX-Forwarded-For: 198.51.100.4, 10.1.2.3\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: api.example.com\r\n", 1),
			net.IPv4(10, 0, 0, 2), trustedLB, "198.51.100.4, 10.1.2.3, 10.0.0.2", "198.51.100.4", "https", "api.example.com",
		},
		{
			"hop_headers",
			strings.Replace(clientRequest(smallBody), "Connection: keep-alive\r\n",
				"Connection: keep-alive, X-Debug-Hop\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTe: trailers\r\nX-Debug-Hop: 1\r\n", 1),
			net.IPv4(203, 0, 113, 9), nil, "203.0.113.9", "203.0.113.9", "http", "gateway.local",
		},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tmpl := parseRequest(b, bc.raw)
			remote := &net.TCPAddr{IP: bc.peer, Port: 40000}

			b.Run("copy_only", func(b *testing.B) {
				var ctx fasthttp.RequestCtx
				ctx.Init(tmpl, remote, nil) // once: Init itself allocates
				b.ReportAllocs()
				for b.Loop() {
					tmpl.CopyTo(&ctx.Request)
				}
				if !bytes.Equal(ctx.Request.Body(), tmpl.Body()) || len(ctx.Request.Header.RawHeaders()) == 0 {
					b.Fatal("the copy lost the body or the raw headers")
				}
			})

			b.Run("copy_and_rewrite", func(b *testing.B) {
				var ctx fasthttp.RequestCtx
				ctx.Init(tmpl, remote, nil)
				var scratch [128]byte
				b.ReportAllocs()
				for b.Loop() {
					tmpl.CopyTo(&ctx.Request)
					req := &ctx.Request
					removeRequestHopByHop(&req.Header)
					setForwarded(&ctx, peerAddr(&ctx), bc.trusted, scratch[:0])
					req.Header.SetBytesV(headerRequestID, benchID)
				}
				h := &ctx.Request.Header
				for name, want := range map[string]string{
					headerForwardedFor:   bc.wantXFF,
					headerRealIP:         bc.wantReal,
					headerForwardedProto: bc.wantProto,
					headerForwardedHost:  bc.wantHost,
					headerRequestID:      string(benchID),
					"Keep-Alive":         "",
					"Proxy-Connection":   "",
					"Te":                 "",
					"X-Debug-Hop":        "",
					"X-User-Id":          "user-0012345",
				} {
					if got := string(h.Peek(name)); got != want {
						b.Errorf("%s: %q, want %q", name, got, want)
					}
				}
				if len(h.PeekAll("Connection")) != 0 {
					b.Errorf("Connection %q forwarded", h.PeekAll("Connection"))
				}
				if b.Failed() {
					b.FailNow()
				}
			})
		})
	}
}

// BenchmarkResponseRewrite is what forward does to the worker's answer
// before the client gets it: remove hop-by-hop headers, speak HTTP/1.1,
// set X-Request-Id. As in BenchmarkRequestRewrite, each iteration works on
// a fresh copy of a parsed answer's header, and copy_only is the copy
// alone. Budget: 0 allocs/op, as on the plain proxy path (SPEC section 8).
func BenchmarkResponseRewrite(b *testing.B) {
	var tmpl fasthttp.ResponseHeader
	raw := "HTTP/1.0 200 OK\r\n" +
		"Server: uvicorn\r\n" +
		"Date: Tue, 03 Jun 2025 10:00:00 GMT\r\n" +
		"Content-Type: application/json\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n", len(predictionJSON)) +
		"Connection: keep-alive\r\n" +
		"Keep-Alive: timeout=5, max=100\r\n" +
		"X-Model-Version: 1\r\n" +
		"\r\n"
	if err := tmpl.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		b.Fatal(err)
	}

	b.Run("copy_only", func(b *testing.B) {
		var h fasthttp.ResponseHeader
		b.ReportAllocs()
		for b.Loop() {
			tmpl.CopyTo(&h)
		}
		if h.StatusCode() != 200 || len(h.Peek("X-Model-Version")) == 0 {
			b.Fatal("the copy lost the status or a header")
		}
	})

	b.Run("copy_and_rewrite", func(b *testing.B) {
		var h fasthttp.ResponseHeader
		b.ReportAllocs()
		for b.Loop() {
			tmpl.CopyTo(&h)
			removeResponseHopByHop(&h)
			h.SetProtocol(http11)
			h.SetBytesV(headerRequestID, benchID)
		}
		if !bytes.Equal(h.Protocol(), http11) {
			b.Fatalf("protocol %q, want HTTP/1.1", h.Protocol())
		}
		if got := h.Peek(headerRequestID); !bytes.Equal(got, benchID) {
			b.Fatalf("X-Request-Id %q, want %q", got, benchID)
		}
		if len(h.Peek("Keep-Alive")) != 0 || len(h.PeekAll("Connection")) != 0 {
			b.Fatalf("hop-by-hop headers left: Keep-Alive %q, Connection %q", h.Peek("Keep-Alive"), h.PeekAll("Connection"))
		}
		if len(h.Peek("X-Model-Version")) == 0 || h.ContentLength() != len(predictionJSON) {
			b.Fatal("an end-to-end header was removed")
		}
	})
}

// BenchmarkEdgeChecks is what Handle checks of every request before it
// routes it: the raw header block (framing, names), the request-target,
// and the HTTP version. Budget: 0 allocs/op, as on the plain proxy path
// (SPEC section 8): they only read.
func BenchmarkEdgeChecks(b *testing.B) {
	req := parseRequest(b, clientRequest(smallBody))

	b.Run("checkHeaders", func(b *testing.B) {
		raw := req.Header.RawHeaders()
		if len(raw) == 0 {
			b.Fatal("no raw header block")
		}
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		for b.Loop() {
			if v := checkHeaders(raw); v != headersOK {
				b.Fatalf("verdict %d on a good header block", v)
			}
		}
	})

	for _, bc := range []struct{ name, target string }{
		{"badTarget/plain", "/v1/models/iris/predict"},
		{"badTarget/query_and_escapes", "/v1/models/iris%20v2/predict?explain=false&tag=a%2Fb&trace=00-4bf92f3577b34da6"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			target := []byte(bc.target)
			b.ReportAllocs()
			for b.Loop() {
				if badTarget(target) {
					b.Fatalf("%q refused", target)
				}
			}
		})
	}

	b.Run("knownVersion", func(b *testing.B) {
		proto := req.Header.Protocol()
		b.ReportAllocs()
		for b.Loop() {
			if !knownVersion(proto) {
				b.Fatalf("%q refused", proto)
			}
		}
	})
}

// BenchmarkRequestID is naming a request, as the first thing Handle does:
// a client's X-Request-Id is checked and kept (sane_client_id), or a new
// UUID is made (new_id). Budget: 0 allocs/op, as on the plain proxy path
// (SPEC section 8): the id lives in the handler's stack buffer.
func BenchmarkRequestID(b *testing.B) {
	b.Run("sane_client_id", func(b *testing.B) {
		id := append([]byte(nil), benchID...)
		b.ReportAllocs()
		for b.Loop() {
			if !saneRequestID(id) {
				b.Fatalf("%q refused", id)
			}
		}
	})

	b.Run("new_id", func(b *testing.B) {
		var buf [36]byte
		var id []byte
		b.ReportAllocs()
		for b.Loop() {
			id = newRequestID(&buf)
		}
		if len(id) != 36 || id[14] != '4' || !saneRequestID(id) {
			b.Fatalf("%q is not a version 4 UUID", id)
		}
	})
}

// BenchmarkCacheKey is the cache key of a POST with a JSON body on a
// cached route, as the handler builds it before a lookup: route, pool
// version, method, path, query, and the digest of the body in canonical
// form (cache's BenchmarkCanonical and BenchmarkBodyDigest measure the
// body alone). The URI is parsed already, as routing leaves it. Budget: 0
// allocs/op, since every request of a cached route pays it, hit or miss:
// the canonical form is built in a pooled buffer and the fields on the
// stack.
func BenchmarkCacheKey(b *testing.B) {
	addr := testutil.ClosedAddr(b)
	for _, bc := range []struct{ name, body string }{
		{"small", smallBody},
		{"4KiB", jsonBody(4 << 10)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			snap := newBenchProxy(b, addr, "    cache: {ttl: 1h}\n").Snapshot()
			route := snap.Routes[0]
			v := route.Variants[route.active]
			var ctx fasthttp.RequestCtx
			parseRequest(b, clientRequest(bc.body)).CopyTo(&ctx.Request)
			ctx.Request.SetRequestURI("/v1/models/iris/predict?explain=false")
			_ = ctx.Path() // routing parses the URI before the key is made
			var scratch [128]byte
			want := route.cache.key(&ctx, route, v, snap.trusted, scratch[:0])
			if want == (cache.Key{}) {
				b.Fatal("empty key")
			}
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				if k := route.cache.key(&ctx, route, v, snap.trusted, scratch[:0]); k != want {
					b.Fatalf("key %x, then %x for the same request", want, k)
				}
			}
		})
	}
}

// BenchmarkMirrorCopy is what a mirrored request costs the client's
// goroutine before the copy leaves for the shadow pool: the plan (sample,
// in-flight slot, a pooled request), the copy of the rewritten request
// with its shadow mark, and the capture of the primary's answer, streamed
// from the worker as the transport delivers it, into memory the
// comparison keeps. Each iteration then gives back the slot and the
// request, as the background send does when it ends; the send itself, and
// the job and goroutine that carry it, are in BenchmarkProxyPlain's
// shadow_10pct. Bodies (request and answer) are small or about 4 KiB.
//
// Budget: 1 alloc/op, of the answer's size: the captured body outlives the
// handler (the comparison reads it after fasthttp has recycled the
// response), so it cannot come from fasthttp's buffers. The request copy
// reuses the pooled request's buffers and allocates nothing, but for the
// odd pooled request a collection dropped, which is why B/op runs a little
// over the answer's size.
func BenchmarkMirrorCopy(b *testing.B) {
	addr := testutil.ClosedAddr(b)
	for _, bc := range []struct{ name, body, answer string }{
		{"small", smallBody, predictionJSON},
		{"4KiB", jsonBody(4 << 10), jsonAnswer(4 << 10)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			snap := newBenchProxy(b, addr, "    shadow: {pool: iris2, percent: 100, max_in_flight: 1024}\n").Snapshot()
			route := snap.Routes[0]
			v := route.Variants[route.active]
			if route.mirror == nil {
				b.Fatal("the route has no mirror")
			}
			var ctx fasthttp.RequestCtx
			parseRequest(b, clientRequest(bc.body)).CopyTo(&ctx.Request)
			answer := []byte(bc.answer)
			var stream bytes.Reader
			var scratch [128]byte
			first := true
			b.SetBytes(int64(len(bc.body) + len(answer)))
			b.ReportAllocs()
			for b.Loop() {
				plan := route.mirror.plan(&ctx, v.index, snap.trusted, scratch[:0])
				if plan.shadow == nil {
					b.Fatal("a request of a 100% shadow was not mirrored")
				}
				plan.copyFrom(&ctx.Request)

				// The primary's answer as the transport hands it over.
				ctx.Response.Reset()
				stream.Reset(answer)
				ctx.Response.SetBodyStream(&stream, len(answer))
				captured, ok, err := plan.capture(&ctx.Response)
				if !ok || err != nil || len(captured) != len(answer) || len(plan.shadow.Body()) != len(bc.body) {
					b.Fatalf("capture ok=%v err=%v, %d of %d bytes; copy has %d of %d body bytes",
						ok, err, len(captured), len(answer), len(plan.shadow.Body()), len(bc.body))
				}
				if first {
					first = false
					if !bytes.Equal(captured, answer) || !bytes.Equal(ctx.Response.Body(), answer) {
						b.Fatal("the captured answer, or the one left for the client, differs from the worker's")
					}
					if !bytes.Equal(plan.shadow.Body(), ctx.Request.Body()) || string(plan.shadow.Header.Peek(headerShadow)) != "1" ||
						string(plan.shadow.Header.Peek("X-User-Id")) != "user-0012345" {
						b.Fatal("the copy is not the request, marked as a shadow")
					}
				}

				route.mirror.state.Release()
				fasthttp.ReleaseRequest(plan.shadow)
			}
			if n := route.mirror.state.InFlight(); n != 0 {
				b.Fatalf("%d mirror slots still taken", n)
			}
		})
	}
}
