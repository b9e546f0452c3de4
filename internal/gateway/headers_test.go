package gateway

import (
	"bufio"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// recorder is a backend that remembers the last request's headers and
// URI, and answers with the response headers the test asks for.
type recorder struct {
	mu       sync.Mutex
	headers  http.Header
	uri      string
	respHdrs [][2]string
}

func (r *recorder) handle(ctx *fasthttp.RequestCtx) {
	h := http.Header{}
	for k, v := range ctx.Request.Header.All() {
		h.Add(string(k), string(v))
	}
	if ctx.Request.Header.ConnectionClose() {
		h.Set("Connection", "close")
	}
	r.mu.Lock()
	r.headers, r.uri = h, string(ctx.RequestURI())
	for _, kv := range r.respHdrs {
		ctx.Response.Header.Add(kv[0], kv[1])
	}
	r.mu.Unlock()
	ctx.SetBodyString("ok")
}

func (r *recorder) last() (http.Header, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.headers, r.uri
}

func TestHopByHopHeadersNeverCross(t *testing.T) {
	rec := &recorder{respHdrs: [][2]string{
		{"Connection", "X-Backend-Secret"},
		{"X-Backend-Secret", "s3"},
		{"Keep-Alive", "timeout=5"},
		{"Proxy-Authenticate", "Basic"},
		{"Upgrade", "h2c"},
		{"X-Model", "kept"},
	}}
	g := startGateway(t, onePool([]string{testutil.Backend(t, rec.handle)}, ""))

	raw := "GET /predict HTTP/1.1\r\nHost: gw.example\r\n" +
		"Connection: keep-alive, X-Client-Secret\r\nX-Client-Secret: s1\r\n" +
		"Keep-Alive: timeout=5\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\n" +
		"TE: trailers\r\nUpgrade: websocket\r\nTrailer: X-T\r\nX-Model-Input: kept\r\n\r\n"
	resp, err := testutil.Raw(t, g.ClientAddr(), raw, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
	}
	got, _ := rec.last()
	for _, h := range []string{"X-Client-Secret", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Te", "Upgrade", "Trailer"} {
		if v := got.Get(h); v != "" {
			t.Errorf("backend received hop-by-hop %s: %q", h, v)
		}
	}
	if got.Get("Connection") == "close" {
		t.Errorf("backend was asked to close its connection")
	}
	if got.Get("X-Model-Input") != "kept" {
		t.Errorf("end-to-end header lost: %v", got)
	}
	for _, h := range []string{"X-Backend-Secret", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
		if v := resp.Header.Peek(h); len(v) > 0 {
			t.Errorf("client received hop-by-hop %s: %q", h, v)
		}
	}
	if string(resp.Header.Peek("X-Model")) != "kept" {
		t.Errorf("end-to-end response header lost")
	}
	if resp.ConnectionClose() {
		t.Errorf("client connection closed although neither side asked")
	}
}

// The console's session cookie carries the admin token, and a browser
// that logged in on the admin port sends it to the client port of the
// same host too (cookies ignore ports): it never reaches a worker. Other
// cookies reach it as the client sent them.
func TestAdminCookieNeverReachesAWorker(t *testing.T) {
	rec := &recorder{}
	g := startGateway(t, onePool([]string{testutil.Backend(t, rec.handle)}, ""))
	for _, tc := range []struct{ sent, want string }{
		{"theme=dark; sluice_admin=s3cret-token; lang=en", "theme=dark; lang=en"},
		{"sluice_admin=s3cret-token", ""},
		{"theme=dark; lang=en", "theme=dark; lang=en"},
		{"not_sluice_admin=1", "not_sluice_admin=1"},
	} {
		raw := "GET /predict HTTP/1.1\r\nHost: gw.example\r\nCookie: " + tc.sent + "\r\n\r\n"
		resp, err := testutil.Raw(t, g.ClientAddr(), raw, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
		}
		got, _ := rec.last()
		if c := got.Get("Cookie"); c != tc.want {
			t.Errorf("sent Cookie %q, the worker got %q, want %q", tc.sent, c, tc.want)
		}
	}
}

func TestClientConnectionCloseIsHonoured(t *testing.T) {
	rec := &recorder{}
	g := startGateway(t, onePool([]string{testutil.Backend(t, rec.handle)}, ""))
	resp, err := testutil.Raw(t, g.ClientAddr(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.ConnectionClose() {
		t.Fatalf("client asked to close but the response keeps the connection")
	}
	if h, _ := rec.last(); h.Get("Connection") == "close" {
		t.Fatalf("the client's Connection: close was forwarded to the backend")
	}
}

func TestForwardedHeaders(t *testing.T) {
	rec := &recorder{}
	addr := testutil.Backend(t, rec.handle)

	t.Run("untrusted peer cannot spoof", func(t *testing.T) {
		g := startGateway(t, onePool([]string{addr}, ""))
		get(t, g.url+"/", "X-Forwarded-For", "6.6.6.6", "X-Real-IP", "6.6.6.6",
			"X-Forwarded-Proto", "https", "X-Forwarded-Host", "evil.example", "Forwarded", "for=6.6.6.6", "Host", "gw.example")
		h, _ := rec.last()
		want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Real-Ip": "127.0.0.1",
			"X-Forwarded-Proto": "http", "X-Forwarded-Host": "gw.example", "Forwarded": ""}
		for k, v := range want {
			if h.Get(k) != v {
				t.Errorf("%s = %q, want %q", k, h.Get(k), v)
			}
		}
	})
	t.Run("trusted proxy chain is walked", func(t *testing.T) {
		g := startGateway(t, strings.Replace(onePool([]string{addr}, ""),
			`server: {listen: "127.0.0.1:0"}`, `server: {listen: "127.0.0.1:0", trusted_proxies: [127.0.0.0/8, 10.0.0.0/8]}`, 1))
		get(t, g.url+"/", "X-Forwarded-For", "203.0.113.7, 10.1.2.3", "X-Forwarded-Proto", "https", "Host", "gw.example")
		h, _ := rec.last()
		if got := h.Get("X-Forwarded-For"); got != "203.0.113.7, 10.1.2.3, 127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q, want the chain with the peer appended", got)
		}
		if got := h.Get("X-Real-Ip"); got != "203.0.113.7" {
			t.Errorf("X-Real-IP = %q, want the first untrusted hop 203.0.113.7", got)
		}
		if got := h.Get("X-Forwarded-Proto"); got != "https" {
			t.Errorf("X-Forwarded-Proto from a trusted proxy = %q, want it kept", got)
		}
	})
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestRequestID(t *testing.T) {
	rec := &recorder{}
	g := startGateway(t, onePool([]string{testutil.Backend(t, rec.handle)}, ""))
	cases := []struct {
		name, sent string
		kept       bool
	}{
		{"sane id is kept", "trace-0af7651916cd43dd8448eb211c80319c", true},
		{"none sent", "", false},
		{"too long", strings.Repeat("a", 129), false},
		{"with a quote", `abc"def`, false},
		{"with a space", "abc def", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hdrs []string
			if tc.sent != "" {
				hdrs = []string{"X-Request-Id", tc.sent}
			}
			_, _, respHdr := get(t, g.url+"/", hdrs...)
			backendSaw, _ := rec.last()
			got := respHdr.Get("X-Request-Id")
			if got != backendSaw.Get("X-Request-Id") {
				t.Fatalf("client got %q, backend saw %q", got, backendSaw.Get("X-Request-Id"))
			}
			if tc.kept && got != tc.sent {
				t.Fatalf("id %q replaced by %q", tc.sent, got)
			}
			if !tc.kept && !uuidRE.MatchString(got) {
				t.Fatalf("generated id %q is not a UUIDv4", got)
			}
		})
	}
}

func TestStripPrefixKeepsQuery(t *testing.T) {
	rec := &recorder{}
	g := startGateway(t, onePool([]string{testutil.Backend(t, rec.handle)}, "    strip_prefix: /v1/models/iris\n"))
	for _, tc := range []struct{ path, want string }{
		{"/v1/models/iris/predict?x=1&y=2", "/predict?x=1&y=2"},
		{"/v1/models/iris", "/"},
		{"/v1/models/iris-x", "/-x"},
		{"/other", "/other"},
	} {
		get(t, g.url+tc.path)
		h, uri := rec.last()
		if uri != tc.want {
			t.Errorf("%s forwarded as %s, want %s", tc.path, uri, tc.want)
		}
		if tc.path != "/other" && h.Get("X-Forwarded-Prefix") != "/v1/models/iris" {
			t.Errorf("X-Forwarded-Prefix = %q", h.Get("X-Forwarded-Prefix"))
		}
	}
}

func TestMatchByMethodHostAndHeader(t *testing.T) {
	a, b, c := testutil.Named(t, "a"), testutil.Named(t, "b"), testutil.Named(t, "c")
	g := startGateway(t, `
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools: {a: {backends: [`+a+`]}, b: {backends: [`+b+`]}, c: {backends: [`+c+`]}}
routes:
  - {name: beta, match: {path_prefix: /m, headers: {X-Beta: "1"}}, pool: c}
  - {name: api, match: {path_prefix: /m, host: "*.api.example", methods: [POST]}, pool: b}
  - {name: any, match: {path_prefix: /m, methods: [GET, POST]}, pool: a}
`)
	cases := []struct {
		method, host string
		hdrs         []string
		want         int
		body         string
	}{
		{"POST", "eu.api.example:8080", nil, 200, "b"},
		{"POST", "EU.API.EXAMPLE", nil, 200, "b"},
		{"POST", "api.example", nil, 200, "a"},
		{"GET", "eu.api.example", nil, 200, "a"},
		{"GET", "x", []string{"X-Beta", "1"}, 200, "c"},
		{"DELETE", "x", nil, 404, ""},
	}
	for _, tc := range cases {
		status, body, hdr := send(t, tc.method, g.url+"/m", "", append([]string{"Host", tc.host}, tc.hdrs...)...)
		if status != tc.want || (tc.body != "" && body != tc.body) {
			t.Errorf("%s host %s %v: got %d %q, want %d %q", tc.method, tc.host, tc.hdrs, status, body, tc.want, tc.body)
		}
		if tc.want == 200 && hdr.Get("X-Sluice-Variant") != tc.body {
			t.Errorf("X-Sluice-Variant = %q, want pool %q", hdr.Get("X-Sluice-Variant"), tc.body)
		}
	}
}

// TestStreamedResponseIsNotBuffered checks that server-sent events reach
// the client while the backend is still writing.
func TestStreamedResponseIsNotBuffered(t *testing.T) {
	release := make(chan struct{})
	backend := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			_, _ = w.WriteString("data: first\n\n")
			_ = w.Flush()
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
			_, _ = w.WriteString("data: second\n\n")
			_ = w.Flush()
		})
	})
	g := startGateway(t, onePool([]string{backend}, ""))

	conn, err := net.Dial("tcp", g.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	_, _ = conn.Write([]byte("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"))
	r := bufio.NewReader(conn)
	var seen strings.Builder
	for !strings.Contains(seen.String(), "data: first") {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("first event did not arrive before the backend finished: %v; got %q", err, seen.String())
		}
		seen.WriteString(line)
	}
	if strings.Contains(seen.String(), "data: second") {
		t.Fatal("second event arrived before it was written")
	}
	close(release)
	for !strings.Contains(seen.String(), "data: second") {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("second event: %v", err)
		}
		seen.WriteString(line)
	}
}
