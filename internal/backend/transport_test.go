package backend

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// rawBackend answers every request on a connection with answer(n), n
// counting the requests of that connection from 1, written as it is; an
// answer ending in "CLOSE" is written without those letters and the
// connection is closed after it, and "PAUSE" in an answer is a 50ms wait
// between the writes of what comes before and after it. It returns the address and the
// connections accepted and closed so far.
func rawBackend(t *testing.T, answer func(n int) string) (string, *rawConns) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns := new(rawConns)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.accepted.Add(1)
			go func() {
				defer conns.closed.Add(1)
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 1; ; n++ {
					var req fasthttp.Request
					if err := req.Read(br); err != nil {
						return
					}
					a := answer(n)
					closeAfter := strings.HasSuffix(a, "CLOSE")
					for i, part := range strings.Split(strings.TrimSuffix(a, "CLOSE"), "PAUSE") {
						if i > 0 {
							time.Sleep(50 * time.Millisecond)
						}
						if _, err := io.WriteString(c, part); err != nil {
							return
						}
					}
					if closeAfter {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), conns
}

// rawConns counts a rawBackend's connections.
type rawConns struct{ accepted, closed atomic.Int64 }

func roundTrip(t *testing.T, tr *Transport, method string) (*fasthttp.Response, error) {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod(method)
	req.SetRequestURI("/x")
	req.Header.SetHost("backend")
	resp := new(fasthttp.Response)
	err := tr.Do(req, resp, time.Now().Add(2*time.Second))
	return resp, err
}

// body reads the answer's body as a client of the gateway would get it,
// closing a streamed one as fasthttp's server does once written.
func body(t *testing.T, resp *fasthttp.Response) string {
	t.Helper()
	if !resp.IsBodyStream() {
		return string(resp.Body())
	}
	b, err := io.ReadAll(resp.BodyStream())
	if err != nil {
		t.Fatalf("reading streamed body: %v", err)
	}
	if err := resp.CloseBodyStream(); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTransportAnswers(t *testing.T) {
	big := strings.Repeat("x", BufferLimit+1)
	for _, tc := range []struct {
		name, method, answer string
		want                 string
		streamed             bool
		reused               bool // a second request goes over the same connection
	}{
		{"small answer is buffered", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello", false, true},
		{"interim answer skipped", "GET", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", false, true},
		{"large answer is streamed", "GET", "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n" + big, big, true, true},
		{"chunked answer is streamed", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", true, true},
		{"trailer after a chunked answer is read with it", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nok\r\n0\r\nPAUSEX-T: v\r\n\r\n", "ok", true, true},
		{"server-sent events are streamed", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 12\r\n\r\ndata: one\n\n\n", "data: one\n\n\n", true, true},
		{"close-delimited answer ends its connection", "GET", "HTTP/1.0 200 OK\r\n\r\nto the endCLOSE", "to the end", true, false},
		{"no body for HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "", false, true},
		{"no body for 204", "GET", "HTTP/1.1 204 No Content\r\n\r\n", "", false, true},
		{"Connection: close is honoured", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nokCLOSE", "ok", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, conns := rawBackend(t, func(int) string { return tc.answer })
			tr := newTransport(addr, Settings{MaxConns: 4, Timeout: 2 * time.Second})
			defer tr.CloseIdleConnections()
			for i := range 2 {
				resp, err := roundTrip(t, tr, tc.method)
				if err != nil {
					t.Fatalf("request %d: %v", i+1, err)
				}
				if resp.IsBodyStream() != tc.streamed {
					t.Fatalf("streamed = %v, want %v", resp.IsBodyStream(), tc.streamed)
				}
				if got := body(t, resp); got != tc.want {
					t.Fatalf("request %d: body %.40q (%d bytes), want %.40q (%d bytes)", i+1, got, len(got), tc.want, len(tc.want))
				}
			}
			wantConns := int64(2)
			if tc.reused {
				wantConns = 1
			}
			if got := conns.accepted.Load(); got != wantConns {
				t.Fatalf("two requests used %d connections, want %d", got, wantConns)
			}
		})
	}
}

// A stream the client stopped reading is not reused: what is left of the
// body would be read as the next answer.
func TestTransportUnreadStreamClosesConnection(t *testing.T) {
	big := strings.Repeat("y", BufferLimit+10)
	addr, conns := rawBackend(t, func(int) string {
		return "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n" + big
	})
	tr := newTransport(addr, Settings{MaxConns: 4, Timeout: 2 * time.Second})
	defer tr.CloseIdleConnections()
	resp, err := roundTrip(t, tr, "GET")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.BodyStream(), make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	resp.CloseBodyStream() //nolint:errcheck
	resp, err = roundTrip(t, tr, "GET")
	if err != nil {
		t.Fatal(err)
	}
	if got := body(t, resp); got != big {
		t.Fatalf("second answer is %d bytes, want %d", len(got), len(big))
	}
	if got := conns.accepted.Load(); got != 2 {
		t.Fatalf("%d connections, want 2 (the half-read one dropped)", got)
	}
}

func TestTransportFailures(t *testing.T) {
	t.Run("body cut short", func(t *testing.T) {
		addr, _ := rawBackend(t, func(int) string { return "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcCLOSE" })
		tr := newTransport(addr, Settings{MaxConns: 4, Timeout: 2 * time.Second})
		if _, err := roundTrip(t, tr, "GET"); err == nil {
			t.Fatal("a body shorter than its Content-Length was accepted")
		}
	})
	t.Run("closed before answering", func(t *testing.T) {
		addr, _ := rawBackend(t, func(int) string { return "CLOSE" })
		tr := newTransport(addr, Settings{MaxConns: 4, Timeout: 2 * time.Second})
		if _, err := roundTrip(t, tr, "GET"); err != fasthttp.ErrConnectionClosed {
			t.Fatalf("err = %v, want %v", err, fasthttp.ErrConnectionClosed)
		}
	})
	t.Run("no answer before the deadline", func(t *testing.T) {
		addr, _ := rawBackend(t, func(int) string { time.Sleep(time.Second); return "" })
		tr := newTransport(addr, Settings{MaxConns: 4, Timeout: 2 * time.Second})
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.SetRequestURI("/x")
		req.Header.SetHost("backend")
		start := time.Now()
		err := tr.Do(req, new(fasthttp.Response), time.Now().Add(100*time.Millisecond))
		if err == nil {
			t.Fatal("no error after the deadline")
		}
		if !errors.Is(err, fasthttp.ErrTimeout) && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("err = %v, want a timeout", err)
		}
		if d := time.Since(start); d > 800*time.Millisecond {
			t.Fatalf("returned after %v, deadline was 100ms", d)
		}
	})
	t.Run("refused", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		tr := newTransport(addr, Settings{MaxConns: 4, Timeout: 2 * time.Second})
		if _, err := roundTrip(t, tr, "GET"); err == nil {
			t.Fatal("no error from a closed port")
		}
	})
}

// A keep-alive connection the backend closed while it sat in the pool
// (its keep-alive timeout is shorter than the pool's, or it restarted)
// must not fail the request that would have reused it.
func TestTransportConnectionClosedByTheBackend(t *testing.T) {
	const ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	send := func(tr *Transport, method, idempotencyKey string) error {
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.Header.SetMethod(method)
		req.SetRequestURI("/predict")
		req.Header.SetHost("backend")
		req.SetBodyString(`{"input":[1,2,3,4]}`)
		if idempotencyKey != "" {
			req.Header.Set("Idempotency-Key", idempotencyKey)
		}
		resp := new(fasthttp.Response)
		if err := tr.Do(req, resp, time.Now().Add(2*time.Second)); err != nil {
			return err
		}
		if string(resp.Body()) != "ok" {
			return errors.New("answer " + strconv.Quote(string(resp.Body())))
		}
		return nil
	}

	t.Run("closed while idle: checked before reuse, so even a POST goes out", func(t *testing.T) {
		var received atomic.Int64
		// Each connection is closed 50ms after its answer, unasked.
		addr, conns := rawBackend(t, func(int) string { received.Add(1); return ok + "PAUSECLOSE" })
		tr := newTransport(addr, Settings{MaxConns: 4, Timeout: 2 * time.Second})
		defer tr.CloseIdleConnections()
		for i := range 3 {
			if i > 0 {
				// Wait until the backend has closed the idle connection
				// and it has sat idle long enough to be checked.
				testutil.Eventually(t, 5*time.Second, "the backend closed the idle connection", func() bool { return conns.closed.Load() == int64(i) })
				time.Sleep(checkIdleAfter)
			}
			if err := send(tr, "POST", ""); err != nil {
				t.Fatalf("POST %d after the backend closed the idle connection: %v", i+1, err)
			}
		}
		if received.Load() != 3 || conns.accepted.Load() != 3 {
			t.Fatalf("the backend got %d requests on %d connections, want 3 on 3", received.Load(), conns.accepted.Load())
		}
	})

	// The backend closes a kept-alive connection as the next request
	// arrives on it, after the check: not a byte of an answer comes back.
	for _, tc := range []struct {
		name, method, key string
		resent            bool
	}{
		{"closed as the request arrived: a GET is sent again", "GET", "", true},
		{"closed as the request arrived: a PUT is sent again", "PUT", "", true},
		{"closed as the request arrived: a POST is not", "POST", "", false},
		{"closed as the request arrived: a POST with an Idempotency-Key is sent again", "POST", "k-1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var received atomic.Int64
			addr, conns := rawBackend(t, func(n int) string {
				received.Add(1)
				if n == 1 {
					return ok
				}
				return "CLOSE"
			})
			tr := newTransport(addr, Settings{MaxConns: 4, Timeout: 2 * time.Second})
			defer tr.CloseIdleConnections()
			if err := send(tr, tc.method, tc.key); err != nil {
				t.Fatal(err)
			}
			err := send(tr, tc.method, tc.key)
			switch {
			case tc.resent && err != nil:
				t.Fatalf("second %s: %v, want it sent again on a new connection", tc.method, err)
			case !tc.resent && err != fasthttp.ErrConnectionClosed:
				t.Fatalf("second %s: err %v, want %v and no second send", tc.method, err, fasthttp.ErrConnectionClosed)
			}
			wantReceived, wantConns := int64(2), int64(1)
			if tc.resent {
				wantReceived, wantConns = 3, 2
			}
			if received.Load() != wantReceived || conns.accepted.Load() != wantConns {
				t.Fatalf("the backend got %d requests on %d connections, want %d on %d",
					received.Load(), conns.accepted.Load(), wantReceived, wantConns)
			}
		})
	}
}
