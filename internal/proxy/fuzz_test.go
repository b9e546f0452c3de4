package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/backend"
	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/experiments"
	"github.com/sluice-gw/sluice/internal/limits"
	"github.com/sluice-gw/sluice/internal/metrics"
	"github.com/sluice-gw/sluice/internal/redisconn"
	"github.com/sluice-gw/sluice/internal/rollout"
	"github.com/sluice-gw/sluice/internal/shadow"
	"github.com/sluice-gw/sluice/internal/testutil"
)

// FuzzRawRequest sends arbitrary bytes to the gateway's real server setup
// and checks what a client and a backend could observe: every answer is
// well-formed HTTP with a status from SPEC section 3 or the backend's 200,
// gateway errors are JSON, and whatever reaches the backend has a path
// starting with "/", no hop-by-hop header and the gateway's
// X-Forwarded-For, so a request can never steer or spoof past the gateway.
func FuzzRawRequest(f *testing.F) {
	for _, seed := range []string{
		"POST /v1/models/iris/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
		"GET /v1/models/iris HTTP/1.1\r\nHost: x\r\nConnection: X-A\r\nX-A: 1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
		"POST /v1/models/iris HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
		"GET /v1/models/iris/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://evil.example/v1/models/iris HTTP/1.1\r\nHost: x\r\n\r\n",
		"GARBAGE\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}

	var mu sync.Mutex
	var seen []*fasthttp.RequestHeader
	addr := testutil.Backend(f, func(ctx *fasthttp.RequestCtx) {
		h := &fasthttp.RequestHeader{}
		ctx.Request.Header.CopyTo(h)
		mu.Lock()
		seen = append(seen, h)
		mu.Unlock()
		ctx.SetBodyString("ok")
	})
	p := newBenchProxy(f, addr, "    max_body: 1KiB\n")
	p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv := &fasthttp.Server{
		Handler: p.Handle, HeaderReceived: p.HeaderReceived, ErrorHandler: p.ErrorHandler,
		ReadTimeout: time.Second, ReadBufferSize: 4096, NoDefaultServerHeader: true, Logger: quiet{},
	}
	go func() { _ = srv.Serve(ln) }()
	f.Cleanup(func() { _ = srv.Shutdown() })

	allowed := map[int]bool{200: true, 400: true, 404: true, 408: true, 413: true, 431: true, 502: true, 503: true, 504: true}
	f.Fuzz(func(t *testing.T, raw []byte) {
		mu.Lock()
		seen = seen[:0]
		mu.Unlock()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		go func() {
			_, _ = conn.Write(raw)
			// Half-close so a request missing its end fails fast.
			_ = conn.(*net.TCPConn).CloseWrite()
		}()
		br := bufio.NewReader(conn)
		for {
			var resp fasthttp.Response
			if err := resp.Read(br); err != nil {
				if err == io.EOF || isTimeout(err) || strings.Contains(err.Error(), "closed") {
					break
				}
				t.Fatalf("unreadable answer to %q: %v", raw, err)
			}
			if !allowed[resp.StatusCode()] {
				t.Fatalf("status %d for %q", resp.StatusCode(), raw)
			}
			if resp.StatusCode() != 200 && !bytes.HasPrefix(resp.Body(), []byte(`{"error":{"code":`)) {
				t.Fatalf("gateway error %d without JSON body: %q", resp.StatusCode(), resp.Body())
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, h := range seen {
			if uri := h.RequestURI(); len(uri) == 0 || uri[0] != '/' {
				t.Fatalf("backend saw request URI %q", uri)
			}
			for _, hop := range []string{"Keep-Alive", "Proxy-Connection", "Te", "Upgrade", "Proxy-Authorization"} {
				if len(h.Peek(hop)) > 0 {
					t.Fatalf("backend saw hop-by-hop %s for %q", hop, raw)
				}
			}
			if xff := string(h.Peek("X-Forwarded-For")); xff != "127.0.0.1" {
				t.Fatalf("backend saw X-Forwarded-For %q: not the peer alone", xff)
			}
		}
	})
}

type quiet struct{}

func (quiet) Printf(string, ...any) {}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// upstreamSeen is one request as a recording backend received it.
type upstreamSeen struct {
	backend string // which backend: a1, a2 (route /a/) or b (route /b/)
	uri     string // the request URI as it arrived, before any decoding
	raw     []byte // the header block as it arrived
	prefix  string // X-Forwarded-Prefix
	xff     string // X-Forwarded-For
}

// recorder is a set of named backends that remember what reached them.
type recorder struct {
	mu   sync.Mutex
	seen []upstreamSeen
}

func (r *recorder) backend(tb testing.TB, name string) string {
	return testutil.Backend(tb, func(ctx *fasthttp.RequestCtx) {
		h := &ctx.Request.Header
		s := upstreamSeen{
			backend: name,
			uri:     string(h.RequestURI()),
			raw:     append([]byte(nil), h.RawHeaders()...),
			prefix:  string(h.Peek("X-Forwarded-Prefix")),
			xff:     string(h.Peek("X-Forwarded-For")),
		}
		r.mu.Lock()
		r.seen = append(r.seen, s)
		r.mu.Unlock()
		ctx.SetBodyString(name)
	})
}

func (r *recorder) take() []upstreamSeen {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.seen
	r.seen = nil
	return s
}

// fuzzPeer is the address the fuzzed client connects from; no proxy is
// trusted, so it is all X-Forwarded-For may say upstream.
var fuzzPeer = &net.TCPAddr{IP: net.IPv4(10, 9, 8, 7), Port: 40000}

// fuzzSecret signs no token the fuzzer could know of.
const fuzzSecret = "fuzz-secret-0123456789abcdef-0123456789"

// fuzzKeysFile is a keys file holding the digest of a key made here and
// thrown away: no input can hold it.
func fuzzKeysFile(tb testing.TB) string {
	key, _, err := auth.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	return testutil.WriteFile(tb, tb.TempDir(), "keys.yaml", "keys:\n  - {name: only, sha256: "+auth.Digest(key)+"}\n")
}

// newHandleGateway compiles two routes on different pools, one of them a
// sticky split with a JSON override and one with a JSON-keyed rate limit,
// and serves them as internal/gateway does on an in-memory listener.
func newHandleGateway(tb testing.TB, rec *recorder) (send func(raw []byte) net.Conn) {
	tb.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
server: {listen: "127.0.0.1:0", max_header_bytes: 4KiB, max_body: 64KiB}
admin: {listen: "127.0.0.1:0"}
pools:
  a1: {backends: ["%s"]}
  a2: {backends: ["%s"]}
  b: {backends: ["%s"]}
  c: {backends: ["%s"]}
routes:
  - name: a
    match: {path_prefix: /a/}
    strip_prefix: /a
    max_body: 1KiB
    split:
      sticky: header:X-User-Id
      override: json:exp.variant
      variants:
        - {name: control, pool: a1, weight: 50}
        - {name: treatment, pool: a2, weight: 50}
  - name: b
    match: {path_prefix: /b/}
    pool: b
    rate_limit: {key: json:user.id, rate: 1000000/s, burst: 1000000}
  - name: c
    match: {path_prefix: /c/, methods: [POST]}
    pool: c
    auth: {api_keys: {keys_file: %q}, jwt: {secret: %q}}
    cors: {origins: ["https://app.example"], methods: [POST], headers: [X-API-Key]}
`, rec.backend(tb, "a1"), rec.backend(tb, "a2"), rec.backend(tb, "b"), rec.backend(tb, "c"), fuzzKeysFile(tb), fuzzSecret)))
	if err != nil {
		tb.Fatal(err)
	}
	m := metrics.New()
	p := New(m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	store := auth.NewStore(slog.New(slog.NewTextHandler(io.Discard, nil)), func(bool) {})
	tb.Cleanup(store.Close)
	p.Swap(Compile(&config.Loaded{Config: cfg}, 1, Deps{
		Auth:     store,
		Registry: backend.NewRegistry(), Metrics: m, Members: Configured, Experiments: experiments.NewRegistry(),
		Shadows: shadow.NewRegistry(), Limits: limits.NewRegistry(&redisconn.Conn{}), Cache: cache.NewRegistry(&redisconn.Conn{}),
		Rollouts: rollout.NewRegistry(slog.New(slog.NewTextHandler(io.Discard, nil))),
	}))
	s := cfg.Server
	// As gateway.clientServer builds it, with the timeouts cut short.
	srv := &fasthttp.Server{
		Handler:                      p.Handle,
		HeaderReceived:               p.HeaderReceived,
		ErrorHandler:                 p.ErrorHandler,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		ReadTimeout:                  150 * time.Millisecond,
		WriteTimeout:                 time.Second,
		IdleTimeout:                  20 * time.Millisecond,
		ReadBufferSize:               int(s.MaxHeaderBytes),
		MaxRequestBodySize:           int(s.MaxBody),
		CloseOnShutdown:              true,
		DisablePreParseMultipartForm: true,
		Logger:                       quiet{},
	}
	ln := &sentListener{InmemoryListener: fasthttputil.NewInmemoryListener(), next: make(chan []byte, 1)}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Shutdown(); _ = ln.Close() })
	return func(raw []byte) net.Conn {
		ln.next <- raw
		conn, err := ln.DialWithLocalAddr(fuzzPeer)
		if err != nil {
			tb.Fatal(err)
		}
		return conn
	}
}

// sentListener is an in-memory listener whose next connection has
// already sent raw and shut its write side: the server reads raw, then
// EOF, as from a TCP client that half-closed. (An in-memory pipe cannot
// half-close; without this, every unfinished request would cost the
// server's whole read timeout.)
type sentListener struct {
	*fasthttputil.InmemoryListener
	next chan []byte
}

func (l *sentListener) Accept() (net.Conn, error) {
	c, err := l.InmemoryListener.Accept()
	if err != nil {
		return nil, err
	}
	return &sentConn{Conn: c, sent: bytes.NewReader(<-l.next)}, nil
}

// sentConn reads what the client sent, then EOF; it writes to the client.
type sentConn struct {
	net.Conn
	sent *bytes.Reader
}

func (c *sentConn) Read(p []byte) (int, error) { return c.sent.Read(p) }

// gatewayStatuses are the answers the gateway writes itself.
var gatewayStatuses = map[int]bool{400: true, 401: true, 403: true, 404: true, 408: true, 413: true, 414: true, 429: true, 431: true, 502: true, 503: true, 504: true}

// FuzzHandle writes arbitrary bytes to the gateway as served in
// production and checks what the client and the backends could observe:
//
//   - the gateway answers or closes within a bounded time, and never
//     panics (a panic in the handler kills the fuzz worker);
//   - every answer is HTTP; every answer of its own has the JSON error body;
//   - what reached a backend reached the pool of the route its path
//     names: a path can never carry a request for /a/ to pool b or one
//     for /b/ to pools a1 or a2;
//   - a forwarded path starts with "/" and has no dot segments;
//   - no header that reached a backend holds CR, LF or NUL or is folded,
//     there is exactly one Host, and never Transfer-Encoding beside
//     Content-Length;
//   - X-Forwarded-For is the peer alone (no proxy is trusted);
//   - nothing reaches route c's backend, whose API key no input holds,
//     and no backend ever gets an X-Sluice-Identity (routes a and b are
//     public, so a client's own is removed); a CORS preflight for c is
//     answered 204 by the gateway itself.
func FuzzHandle(f *testing.F) {
	for _, seed := range []string{
		"GET /a/x HTTP/1.1\r\nHost: gw\r\n\r\n",
		"POST /a/predict?x=1 HTTP/1.1\r\nHost: gw\r\nX-User-Id: u1\r\nContent-Length: 29\r\n\r\n{\"exp\":{\"variant\":\"control\"}}",
		"POST /b/predict HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n{\"user\":{\"id\":\"u\"}}",
		"GET /b/x HTTP/1.1\r\nHost: gw\r\n\r\nGET /a/y HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /nowhere HTTP/1.1\r\nHost: gw\r\n\r\n",
		"POST /c/x HTTP/1.1\r\nHost: gw\r\nX-API-Key: sk_guess\r\nContent-Length: 2\r\n\r\n{}",
		"GET /c/x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer a.b.c\r\nX-Sluice-Identity: admin\r\n\r\n",
		"GET /a/x HTTP/1.1\r\nHost: gw\r\nX-Sluice-Identity: admin\r\n\r\n",
		"OPTIONS /c/x HTTP/1.1\r\nHost: gw\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: x-api-key\r\n\r\n",
		"GET /a/x HTTP/1.1\r\nHost: gw\r\nConnection: X-Secret, close\r\nX-Secret: 1\r\nKeep-Alive: 5\r\n\r\n",
		// Smuggling shapes.
		"POST /a/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /b/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n",
		"POST /a/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
		"POST /a/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc",
		"POST /a/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST /a/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding:\r\n chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET /a/x HTTP/1.1\r\nHost: gw\r\nX-Folded: a\r\n\tb\r\n\r\n",
		"GET /a/x HTTP/1.1\r\nHost: gw\r\nHost: other\r\n\r\n",
		"GET http://evil.example/b/x HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET http://gw/a/../b/x HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /a/%2e%2e/b/x HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /a/..%2fb/x HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /a/%2E%2E/%2E%2E/etc/passwd HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /b/../a/x HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET //b/x HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /a/./x/. HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /a/x\x00y HTTP/1.1\r\nHost: gw\r\n\r\n",
		"POST /b/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
		"POST /b/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=\"x\"\r\nabc\r\n0\r\nTrailer-X: 1\r\n\r\n",
		"POST /b/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 99999999999999999999\r\n\r\n",
		"POST /b/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
		"GET /a/x HTTP/1.0\r\n\r\n",
		"GET /a/x HTTP/1.1\r\nHost: gw\r\nX-Request-Id: a\"b\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}

	rec := &recorder{}
	send := newHandleGateway(f, rec)
	f.Fuzz(func(t *testing.T, raw []byte) {
		rec.take()
		conn := send(raw)
		defer conn.Close()
		// Bounded: the server gives up on the request after its read
		// timeout and on the connection after its idle timeout, and a
		// forwarded request gets the route's timeout. Far beyond them all,
		// the connection must be closed.
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(conn)
		answers := 0
		for {
			var resp fasthttp.Response
			err := resp.Read(br)
			if err != nil {
				if isTimeout(err) {
					t.Fatalf("no answer and no close within 10s for %q", raw)
				}
				if err == io.EOF || errorsIsClosed(err) {
					break
				}
				t.Fatalf("unreadable answer #%d to %q: %v", answers, raw, err)
			}
			answers++
			st := resp.StatusCode()
			if st == fasthttp.StatusNoContent && len(resp.Header.Peek("Vary")) > 0 {
				continue // a CORS preflight, answered by the gateway without a body
			}
			if st != 200 && !gatewayStatuses[st] {
				t.Fatalf("status %d for %q", st, raw)
			}
			if gatewayStatuses[st] && !bytes.HasPrefix(resp.Body(), []byte(`{"error":{"code":"`)) {
				t.Fatalf("gateway answer %d without the JSON error body: %q for %q", st, resp.Body(), raw)
			}
		}
		for _, s := range rec.take() {
			checkUpstream(t, raw, s)
		}
	})
}

func errorsIsClosed(err error) bool {
	return err == fasthttputil.ErrConnectionClosed || strings.Contains(err.Error(), "closed")
}

// checkUpstream holds one request a backend got to the properties of
// FuzzHandle.
func checkUpstream(t *testing.T, raw []byte, s upstreamSeen) {
	t.Helper()
	p := s.uri
	if len(p) == 0 || p[0] != '/' {
		t.Fatalf("backend %s got request URI %q for %q", s.backend, p, raw)
	}
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if bytes.Contains(bytes.ToLower(s.raw), []byte("x-sluice-identity")) {
		t.Fatalf("backend %s got an X-Sluice-Identity for %q", s.backend, raw)
	}
	switch s.backend {
	case "c":
		t.Fatalf("backend c (auth route) got %q for %q, which holds no valid key", s.uri, raw)
	case "a1", "a2":
		// strip_prefix rewrote the path from its normalised form. (Route
		// b forwards the request-target as the client wrote it, dot
		// segments and all: see TestForwardedPathIsNormalised.)
		if dotSegments(p) || dotSegments(lenientUnescape(p)) {
			t.Fatalf("backend %s got path %q with a dot segment for %q", s.backend, s.uri, raw)
		}
		if s.prefix != "/a" {
			t.Fatalf("backend %s (route a) got X-Forwarded-Prefix %q for %q", s.backend, s.prefix, raw)
		}
		if !clientAsked(raw, "/a/") {
			t.Fatalf("backend %s (route a) got %q but no request line of %q normalises under /a/", s.backend, s.uri, raw)
		}
	case "b":
		if s.prefix != "" {
			t.Fatalf("backend b got X-Forwarded-Prefix %q for %q", s.prefix, raw)
		}
		if clean := path.Clean(lenientUnescape(p)); !strings.HasPrefix(clean+"/", "/b/") {
			t.Fatalf("backend b (route b) got path %q (%q clean) for %q", s.uri, clean, raw)
		}
		if !clientAsked(raw, "/b/") {
			t.Fatalf("backend b got %q but no request line of %q normalises under /b/", s.uri, raw)
		}
	}
	if s.xff != fuzzPeer.IP.String() {
		t.Fatalf("backend %s got X-Forwarded-For %q, not the peer alone, for %q", s.backend, s.xff, raw)
	}
	hosts, length, encoding := 0, false, false
	for _, line := range bytes.Split(bytes.TrimSuffix(s.raw, []byte("\r\n")), []byte("\r\n")) {
		if len(line) == 0 {
			continue
		}
		if bytes.ContainsAny(line, "\r\n\x00") {
			t.Fatalf("backend %s got header line %q with CR, LF or NUL for %q", s.backend, line, raw)
		}
		if line[0] == ' ' || line[0] == '\t' {
			t.Fatalf("backend %s got a folded header line %q for %q", s.backend, line, raw)
		}
		name, _, _ := bytes.Cut(line, []byte(":"))
		switch {
		case bytes.EqualFold(name, []byte("Host")):
			hosts++
		case bytes.EqualFold(name, []byte("Content-Length")):
			length = true
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			encoding = true
		}
	}
	if hosts != 1 {
		t.Fatalf("backend %s got %d Host headers in %q for %q", s.backend, hosts, s.raw, raw)
	}
	if length && encoding {
		t.Fatalf("backend %s got Content-Length and Transfer-Encoding in %q for %q", s.backend, s.raw, raw)
	}
}

// dotSegments reports whether p has a "." or ".." segment.
func dotSegments(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// lenientUnescape decodes %XX escapes and leaves malformed ones as they
// are, as fasthttp does with a path.
func lenientUnescape(s string) string {
	unhex := func(c byte) (byte, bool) {
		switch {
		case '0' <= c && c <= '9':
			return c - '0', true
		case 'a' <= c && c <= 'f':
			return c - 'a' + 10, true
		case 'A' <= c && c <= 'F':
			return c - 'A' + 10, true
		}
		return 0, false
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				b.WriteByte(hi<<4 | lo)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// clientAsked is the independent oracle of FuzzHandle: whether any line of
// raw that looks like a request line names a path that, decoded and
// cleaned as RFC 3986 section 5.2.4 says, lies under prefix. A request
// reaching a route's pool must have asked for that route.
func clientAsked(raw []byte, prefix string) bool {
	for _, line := range bytes.Split(raw, []byte("\n")) {
		fields := bytes.Fields(line)
		if len(fields) < 2 {
			continue
		}
		for _, target := range fields[1:] {
			u := string(target)
			if i := strings.Index(u, "://"); i >= 0 {
				u = u[i+3:]
				if j := strings.IndexByte(u, '/'); j >= 0 {
					u = u[j:]
				} else {
					u = "/"
				}
			}
			if i := strings.IndexAny(u, "?#"); i >= 0 {
				u = u[:i]
			}
			if len(u) == 0 || u[0] != '/' {
				continue
			}
			if clean := path.Clean(lenientUnescape(u)); strings.HasPrefix(clean+"/", prefix) {
				return true
			}
		}
	}
	return false
}

// FuzzHopByHop parses a header block with a Connection header (or
// several) and checks removeRequestHopByHop: nothing that Connection names, and
// none of the fixed hop-by-hop headers, remains; every other header is as
// it was.
func FuzzHopByHop(f *testing.F) {
	f.Add("X-A: 1\r\nX-B: 2\r\nKeep-Alive: 5\r\nTe: trailers", "X-A, close")
	f.Add("X-A: 1\r\nConnection: X-B\r\nX-B: 2\r\nUpgrade: websocket", "X-A")
	f.Add("Content-Type: text/plain\r\nCookie: a=b\r\nX-Forwarded-For: 1.2.3.4", "Cookie, content-type , , x-forwarded-for")
	f.Add("Transfer-Encoding: chunked\r\nProxy-Authorization: Basic x\r\nX-Keep: 1", "keep-alive, CLOSE,Proxy-Connection")
	f.Add("X-A: 1\r\nX-A: 2\r\nHost: other", "Host,x-a")
	f.Fuzz(func(t *testing.T, block, connection string) {
		raw := "GET / HTTP/1.1\r\nHost: gw\r\nConnection: " + connection + "\r\n" + block + "\r\n\r\n"
		var h fasthttp.RequestHeader
		if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return
		}
		// What the Connection lines name, read independently of
		// removeRequestHopByHop.
		listed := map[string]bool{}
		names := map[string]bool{}
		connLines := 0
		for _, line := range strings.Split(raw, "\r\n")[1:] {
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			name = strings.TrimSpace(name)
			names[strings.ToLower(name)] = true
			if strings.EqualFold(name, "Connection") {
				if connLines++; connLines > 1 {
					// Known: only the first Connection line is read
					// (TestConnectionOnSecondLineIsRemoved, reported).
					return
				}
				for _, tok := range strings.Split(value, ",") {
					if tok = strings.TrimSpace(tok); tok != "" {
						listed[strings.ToLower(tok)] = true
					}
				}
			}
		}
		for _, hop := range hopHeaders {
			listed[strings.ToLower(string(hop))] = true
		}
		before := map[string][]string{}
		for name := range names {
			for _, v := range h.PeekAll(name) {
				before[name] = append(before[name], string(v))
			}
		}

		removeRequestHopByHop(&h)

		for name := range listed {
			if name == "close" || strings.ContainsAny(name, "\r\n\x00") {
				continue
			}
			if v := h.Peek(name); len(v) > 0 {
				t.Fatalf("%q still has %s: %q (Connection named it or it is hop-by-hop)\nafter: %q", raw, name, v, h.Header())
			}
		}
		if v := h.Peek("Connection"); len(v) > 0 && !strings.EqualFold(string(v), "close") {
			t.Fatalf("%q still has Connection: %q", raw, v)
		}
		for name, vs := range before {
			if listed[name] || name == "connection" {
				continue
			}
			var after []string
			for _, v := range h.PeekAll(name) {
				after = append(after, string(v))
			}
			if strings.Join(after, "\n") != strings.Join(vs, "\n") {
				t.Fatalf("%q: %s changed from %q to %q though nothing named it", raw, name, vs, after)
			}
		}
	})
}

// fuzzTrusted are the prefixes a fuzzed trusted set is drawn from.
var fuzzTrusted = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.1/32"),
	netip.MustParsePrefix("fd00::/8"),
	netip.MustParsePrefix("192.168.0.0/16"),
}

// FuzzForwarded checks clientAddr and setForwarded on arbitrary peers,
// X-Forwarded-For chains and trusted sets: an untrusted peer is the
// client whatever it sends; a trusted one's client is the peer or an
// address of its chain; X-Forwarded-For upstream ends with the peer (and
// is the peer alone for an untrusted one); no header value written holds
// CR, LF or NUL.
func FuzzForwarded(f *testing.F) {
	f.Add([]byte{10, 0, 0, 1}, "1.2.3.4, 10.0.0.2", "https", "h", uint8(1))
	f.Add([]byte{8, 8, 8, 8}, "1.2.3.4", "", "", uint8(15))
	f.Add([]byte{127, 0, 0, 1}, "::ffff:10.1.1.1,  garbage , 10.0.0.9", "http", "", uint8(3))
	f.Add([]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "fe80::1%eth0, 2001:db8::1", "", "x", uint8(4))
	f.Add([]byte{10, 0, 0, 1}, ",,,", "", "", uint8(1))
	f.Fuzz(func(t *testing.T, peerBytes []byte, xff, proto, fwdHost string, trustMask uint8) {
		peer, ok := netip.AddrFromSlice(peerBytes)
		if !ok {
			return
		}
		peer = peer.Unmap()
		var trusted []netip.Prefix
		for i, p := range fuzzTrusted {
			if trustMask&(1<<i) != 0 {
				trusted = append(trusted, p)
			}
		}

		got := clientAddr(peer, []byte(xff), trusted)
		if !isTrusted(peer, trusted) {
			if got != peer {
				t.Fatalf("untrusted peer %s with X-Forwarded-For %q: client %s", peer, xff, got)
			}
		} else if got != peer && !chainHas(xff, got) {
			t.Fatalf("trusted peer %s with X-Forwarded-For %q: client %s is neither", peer, xff, got)
		}

		raw := "GET / HTTP/1.1\r\nHost: gw\r\nX-Forwarded-For: " + xff + "\r\nX-Forwarded-Proto: " + proto +
			"\r\nX-Forwarded-Host: " + fwdHost + "\r\nForwarded: for=1.1.1.1\r\n\r\n"
		var ctx fasthttp.RequestCtx
		if err := ctx.Request.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return
		}
		sentXFF := string(ctx.Request.Header.Peek(headerForwardedFor))
		var scratch [128]byte
		setForwarded(&ctx, peer, trusted, scratch[:0])
		h := &ctx.Request.Header
		out := string(h.Peek(headerForwardedFor))
		if !strings.HasSuffix(out, peer.String()) {
			t.Fatalf("X-Forwarded-For %q upstream does not end with the peer %s", out, peer)
		}
		if !isTrusted(peer, trusted) {
			if out != peer.String() {
				t.Fatalf("untrusted peer %s: X-Forwarded-For %q upstream", peer, out)
			}
			if len(h.Peek("Forwarded")) > 0 {
				t.Fatalf("untrusted peer %s: Forwarded passed on", peer)
			}
		}
		if real := string(h.Peek(headerRealIP)); real != clientAddr(peer, []byte(sentXFF), trusted).String() {
			t.Fatalf("X-Real-Ip %q for peer %s and X-Forwarded-For %q", real, peer, sentXFF)
		}
		for name, value := range h.All() {
			if bytes.ContainsAny(value, "\r\n\x00") || bytes.ContainsAny(name, "\r\n\x00") {
				t.Fatalf("header %q: %q holds CR, LF or NUL (peer %s, X-Forwarded-For %q)", name, value, peer, xff)
			}
		}
	})
}

// chainHas reports whether a is one of the hops of xff.
func chainHas(xff string, a netip.Addr) bool {
	for _, hop := range strings.Split(xff, ",") {
		if h, err := netip.ParseAddr(strings.TrimSpace(hop)); err == nil && h.Unmap() == a {
			return true
		}
	}
	return false
}

// FuzzKeySources reads every kind of key source from a request built of
// fuzzed bytes: nothing panics, a key points into the request or into
// scratch and is no longer than what it was read from, a client_ip is
// the peer or a hop of X-Forwarded-For, and a JSON key on a huge or deeply
// nested body comes back in bounded time.
func FuzzKeySources(f *testing.F) {
	f.Add("X-User-Id: u1\r\nCookie: sid=abc; x=1", "/v1/x?user=u2&a=%41", []byte(`{"user":{"id":"u3"}}`), "X-User-Id", "user.id")
	f.Add("X-Forwarded-For: 1.2.3.4, 10.0.0.1", "/%2e%2e/a//b/./c", []byte(`{"a":[1,2,{"b":"c"}]}`), "sid", "a.b")
	f.Add("Cookie: a=\"quoted\"", "/?a=1&a=2&=x&%zz=1", []byte(`{"a":{"b":{"c":null}}}`), "a", "a.b.c")
	f.Add("", "/", []byte(strings.Repeat("[", 100000)), "x", "a")
	f.Add("", "/", []byte(strings.Repeat(`{"a":`, 50000)+"1"+strings.Repeat("}", 50000)), "x", "a.a.a")
	f.Add("", "/", []byte(`{"a":"`+strings.Repeat(`\"`, 50000)+`"}`), "x", "a")
	f.Add("", "/", []byte(`{"a":"\u00e9\ud83d\ude00", "b": 1e999}`), "x", "b")
	f.Fuzz(func(t *testing.T, headers, uri string, body []byte, name, jsonPath string) {
		raw := "POST " + uri + " HTTP/1.1\r\nHost: gw\r\n" + headers + "\r\n\r\n"
		var req fasthttp.Request
		if err := req.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return
		}
		req.SetBody(body)
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, fuzzPeer, nil)
		segs := strings.Split(jsonPath, ".")
		if len(segs) > 3 {
			segs = segs[:3]
		}
		bodyBuf := ctx.Request.Body()
		trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		for _, src := range []config.KeySource{
			{Kind: config.KeyHeader, Name: name},
			{Kind: config.KeyCookie, Name: name},
			{Kind: config.KeyQuery, Name: name},
			{Kind: config.KeyJSON, Path: segs},
			{Kind: config.KeyClientIP},
			{Kind: config.KeyPath},
		} {
			var scratch [128]byte
			start := time.Now()
			v := keyReader{src: src}.read(&ctx, trusted, scratch[:0])
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("%v key took %v on a %d-byte body", src.Kind, d, len(body))
			}
			if v == nil {
				continue
			}
			switch src.Kind {
			case config.KeyJSON:
				if !within(v, bodyBuf) {
					t.Fatalf("json key %q is not in the body %q", v, body)
				}
			case config.KeyClientIP:
				if !within(v, scratch[:]) {
					t.Fatalf("client_ip %q is not in scratch", v)
				}
				a, err := netip.ParseAddr(string(v))
				if err != nil {
					t.Fatalf("client_ip %q: %v", v, err)
				}
				if xff := string(ctx.Request.Header.Peek(headerForwardedFor)); a != netip.MustParseAddr("10.9.8.7") && !chainHas(xff, a) {
					t.Fatalf("client_ip %s is neither the peer nor in X-Forwarded-For %q", a, xff)
				}
			case config.KeyPath:
				if len(v) == 0 || v[0] != '/' || len(v) > len(uri)+1 {
					t.Fatalf("path key %q for URI %q", v, uri)
				}
			default:
				if len(v) > len(raw) {
					t.Fatalf("%v key %q is longer than the request %q", src.Kind, v, raw)
				}
			}
		}
	})
}

// within reports whether v lies inside buf's memory.
func within(v, buf []byte) bool {
	if len(v) == 0 {
		return true
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
	return p >= lo && p+uintptr(len(v)) <= lo+uintptr(cap(buf))
}

// TestConnectionOnSecondLineIsRemoved: RFC 9110 section 5.3 lets
// Connection come on several lines, and a header named on the second
// one is as hop-by-hop as one named on the first. Found by FuzzHopByHop:
// the removal read Peek("Connection"), the first line only, so X-B
// reaches the backend.
func TestConnectionOnSecondLineIsRemoved(t *testing.T) {
	raw := "GET / HTTP/1.1\r\nHost: gw\r\nConnection: X-A\r\nConnection: X-B\r\nX-A: 1\r\nX-B: 2\r\n\r\n"
	var h fasthttp.RequestHeader
	if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	removeRequestHopByHop(&h)
	for _, name := range []string{"X-A", "X-B"} {
		if v := h.Peek(name); len(v) > 0 {
			t.Errorf("%s: %q survived though Connection named it", name, v)
		}
	}
}

// TestForwardedPathIsNormalised: the route is matched on the normalised
// path, so the backend must get that path, not the client's spelling of
// it; a backend that resolves dot segments or %2F differently would
// otherwise serve another resource than the one the gateway routed (path
// confusion). Found by FuzzHandle: a route without strip_prefix forwards
// the raw request-target.
func TestForwardedPathIsNormalised(t *testing.T) {
	rec := &recorder{}
	send := newHandleGateway(t, rec)
	for _, target := range []string{"/a/../b/x", "/a/%2e%2e/b/x", "/a/..%2fb/x", "/b/./x", "//b/x"} {
		conn := send([]byte("GET " + target + " HTTP/1.1\r\nHost: gw\r\n\r\n"))
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		var resp fasthttp.Response
		if err := resp.Read(bufio.NewReader(conn)); err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		conn.Close()
		for _, s := range rec.take() {
			if s.uri != "/b/x" {
				t.Errorf("GET %s: backend %s got %q, want /b/x", target, s.backend, s.uri)
			}
		}
	}
}
