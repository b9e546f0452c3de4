package gateway

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// TestErrorTable sends each kind of bad request of SPEC section 3 over a
// real socket and checks the status, the JSON code, and that the gateway
// answers the next request normally.
func TestErrorTable(t *testing.T) {
	ok := testutil.Named(t, "ok")
	slow := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		time.Sleep(400 * time.Millisecond)
		ctx.SetBodyString("late")
	})
	garbage := garbageBackend(t)
	refused := testutil.ClosedAddr(t)

	g := startGateway(t, `
server:
  listen: "127.0.0.1:0"
  read_timeout: 300ms
  max_header_bytes: 2KiB
  max_headers: 20
admin: {listen: "127.0.0.1:0"}
pools:
  ok: {backends: [`+ok+`]}
  slow: {backends: [`+slow+`]}
  garbage: {backends: [`+garbage+`]}
  refused: {backends: [`+refused+`]}
routes:
  - {name: small, match: {path_prefix: /small}, pool: ok, max_body: 64}
  - {name: slow, match: {path_prefix: /slow}, pool: slow, timeout: 100ms}
  - {name: garbage, match: {path_prefix: /garbage}, pool: garbage}
  - {name: refused, match: {path_prefix: /refused}, pool: refused}
  - {name: ok, match: {path_prefix: /ok}, pool: ok}
`)
	addr := g.ClientAddr()

	cases := []struct {
		name   string
		raw    string
		status int
		code   string
	}{
		{"malformed request line", "GARBAGE\r\n\r\n", 400, "bad_request"},
		{"no Host header", "GET /ok HTTP/1.1\r\n\r\n", 400, "bad_request"},
		{"Content-Length with Transfer-Encoding", "POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad_request"},
		{"two Content-Length values", "POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd", 400, "bad_request"},
		{"no route", "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404, "no_route"},
		{"body over route max_body by Content-Length", "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("a", 100), 413, "body_too_large"},
		{"chunked body over route max_body", "POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + strings.Repeat("a", 100) + "\r\n0\r\n\r\n", 413, "body_too_large"},
		{"headers over max_header_bytes", "GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 3000) + "\r\n\r\n", 431, "headers_too_large"},
		{"more than max_headers", "GET /ok HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-H: 1\r\n", 25) + "\r\n", 431, "headers_too_large"},
		{"connection refused", "GET /refused HTTP/1.1\r\nHost: x\r\n\r\n", 502, "upstream_error"},
		{"backend answers garbage", "GET /garbage HTTP/1.1\r\nHost: x\r\n\r\n", 502, "upstream_error"},
		{"route timeout", "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", 504, "upstream_timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := testutil.Raw(t, addr, tc.raw, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode(), tc.status, resp.Body())
			}
			e := decodeError(t, resp.Body())
			if e.Error.Code != tc.code || e.Error.Message == "" || e.Error.RequestID == "" {
				t.Fatalf("error body %+v, want code %q with message and request id", e.Error, tc.code)
			}
			if got := string(resp.Header.Peek("X-Request-Id")); got != e.Error.RequestID {
				t.Fatalf("X-Request-Id %q differs from the body's %q", got, e.Error.RequestID)
			}
			if status, body, _ := get(t, g.url+"/ok"); status != 200 || body != "ok" {
				t.Fatalf("next request got %d %q: the gateway stopped serving", status, body)
			}
		})
	}

	t.Run("request too slow to arrive", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("GET /ok HTTP/1.1\r\nHost: x\r\n")) // and never the blank line
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		n, _ := conn.Read(buf)
		resp := string(buf[:n])
		if !strings.HasPrefix(resp, "HTTP/1.1 408") || !strings.Contains(resp, `"code":"request_timeout"`) {
			t.Fatalf("slow request got %q, want 408 request_timeout", resp)
		}
		if status, _, _ := get(t, g.url+"/ok"); status != 200 {
			t.Fatalf("next request got %d", status)
		}
	})
}

// garbageBackend accepts connections and answers each request with bytes
// that are not HTTP.
func garbageBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				_, _ = c.Read(buf)
				_, _ = c.Write([]byte("THIS IS NOT HTTP\r\n\r\n"))
			}()
		}
	}()
	return ln.Addr().String()
}

// TestRefusedConnectionTriesAnotherBackend: a request that could not be
// sent because a worker refused the connection goes to another backend,
// whatever its method, instead of failing.
func TestRefusedConnectionTriesAnotherBackend(t *testing.T) {
	live, dead := testutil.Named(t, "live"), testutil.ClosedAddr(t)
	g := startGateway(t, strings.Replace(onePool([]string{live, dead}, ""), "timeout: 2s}", "timeout: 2s, balance: round_robin}", 1))
	for i := range 20 {
		if status, body, _ := send(t, "POST", g.url+"/", `{"n":1}`); status != 200 || body != "live" {
			t.Fatalf("request %d: %d %q; a refused connection must go to the live backend", i, status, body)
		}
	}
	// After outlier.consecutive_failures (5 by default) refusals the dead
	// backend is ejected: no more attempts go to it.
	if m := metricsText(t, g); !strings.Contains(m, `backend="`+dead+`",outcome="connect_error",pool="p"} 5`+"\n") {
		t.Errorf("want exactly 5 refused attempts counted as connect_error, then none:\n%s", grepLines(m, "sluice_upstream_requests_total"))
	}
	var pools struct {
		Pools []struct {
			Backends []struct {
				Addr         string     `json:"addr"`
				Available    bool       `json:"available"`
				EjectedUntil *time.Time `json:"ejected_until"`
				Ejections    int64      `json:"ejections"`
			} `json:"backends"`
		} `json:"pools"`
	}
	adminJSON(t, g.admin+"/admin/pools", &pools)
	for _, b := range pools.Pools[0].Backends {
		ejected := b.EjectedUntil != nil && b.EjectedUntil.After(time.Now().Add(25*time.Second))
		if (b.Addr == dead) != (ejected && !b.Available && b.Ejections == 1) {
			t.Errorf("backend %s: healthy %v, ejected until %v, ejections %d; want only the dead one ejected for about 30s",
				b.Addr, b.Available, b.EjectedUntil, b.Ejections)
		}
	}
}

// grepLines keeps the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
