package proxy

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

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
