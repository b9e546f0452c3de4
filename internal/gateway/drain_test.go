package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// TestDrainFinishesInFlightRequests: on shutdown the gateway stops
// accepting, lets a running request finish with Connection: close, and
// returns once it has.
func TestDrainFinishesInFlightRequests(t *testing.T) {
	entered := make(chan struct{}, 1)
	slow := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		entered <- struct{}{}
		time.Sleep(300 * time.Millisecond)
		ctx.SetBodyString("finished")
	})
	path := testutil.WriteFile(t, t.TempDir(), "gateway.yaml", onePool([]string{slow}, ""))
	g, err := New(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}

	type result struct {
		resp *http.Response
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := httpClient.Get("http://" + g.ClientAddr() + "/")
		if err != nil {
			done <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{resp: resp, body: string(b)}
	}()
	<-entered

	shutdownStart := time.Now()
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatalf("drain: %v", err)
	}
	r := <-done
	if r.err != nil || r.resp.StatusCode != 200 || r.body != "finished" {
		t.Fatalf("in-flight request during drain: %+v", r)
	}
	if !r.resp.Close {
		t.Errorf("response during drain lacks Connection: close")
	}
	if elapsed := time.Since(shutdownStart); elapsed < 100*time.Millisecond {
		t.Errorf("shutdown returned after %v, before the in-flight request could finish", elapsed)
	}
	if c, err := net.DialTimeout("tcp", g.ClientAddr(), time.Second); err == nil {
		c.Close()
		t.Errorf("client port still accepts connections after shutdown")
	}
}

// TestDrainTimeoutBoundsShutdown: a request that outlives drain_timeout
// does not hold the gateway up.
func TestDrainTimeoutBoundsShutdown(t *testing.T) {
	entered := make(chan struct{}, 1)
	stuck := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		entered <- struct{}{}
		time.Sleep(3 * time.Second)
	})
	yaml := strings.Replace(onePool([]string{stuck}, ""), `server: {listen: "127.0.0.1:0"}`,
		`server: {listen: "127.0.0.1:0", drain_timeout: 200ms}`, 1)
	path := testutil.WriteFile(t, t.TempDir(), "gateway.yaml", yaml)
	g, err := New(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = httpClient.Get("http://" + g.ClientAddr() + "/") }()
	<-entered
	start := time.Now()
	err = g.Shutdown(context.Background())
	if err == nil {
		t.Fatalf("shutdown with a request still running reported a clean drain")
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("shutdown took %v with drain_timeout 200ms", elapsed)
	}
}

// TestDrainCompletes500InFlight: 500 requests in flight, each held ~1 s by
// the backend, when the gateway is told to shut down (what SIGTERM does):
// every one of them completes with 200 and Connection: close (the client
// does not reuse a connection the gateway is about to close), and a new
// connection made after the drain has started is refused.
func TestDrainCompletes500InFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("500 concurrent requests")
	}
	const n = 500
	var entered atomic.Int64
	allIn := make(chan struct{})
	slow := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		if entered.Add(1) == n {
			close(allIn)
		}
		time.Sleep(time.Second)
		ctx.SetBodyString("finished")
	})
	yaml := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", drain_timeout: 20s}
admin: {listen: "127.0.0.1:0"}
pools:
  p: {backends: [%s], max_conns: 1000, timeout: 10s}
routes:
  - name: main
    pool: p
`, slow)
	path := testutil.WriteFile(t, t.TempDir(), "gateway.yaml", yaml)
	g, err := New(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown(context.Background()) })
	addr := g.ClientAddr()

	// Each request on its own keep-alive connection.
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: n, MaxConnsPerHost: n, IdleConnTimeout: time.Minute}}
	defer client.CloseIdleConnections()
	type result struct {
		status int
		close  bool
		body   string
		err    error
	}
	results := make(chan result, n)
	for range n {
		go func() {
			resp, err := client.Get("http://" + addr + "/")
			if err != nil {
				results <- result{err: err}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- result{status: resp.StatusCode, close: resp.Close, body: string(b)}
		}()
	}
	select {
	case <-allIn:
	case <-time.After(20 * time.Second):
		t.Fatalf("only %d of %d requests reached the backend", entered.Load(), n)
	}

	drained := make(chan error, 1)
	shutdownStart := time.Now()
	go func() { drained <- g.Shutdown(context.Background()) }()

	// A new connection once the drain has started is refused (allow the
	// shutdown goroutine a moment to close the listener).
	refused := false
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			refused = true
			break
		}
		c.Close()
	}
	if !refused {
		t.Errorf("the client port still accepted new connections 500ms into the drain")
	}

	codes := map[int]int{}
	var noClose, errs int
	var firstErr error
	for range n {
		r := <-results
		switch {
		case r.err != nil:
			errs++
			if firstErr == nil {
				firstErr = r.err
			}
		case r.status != 200 || r.body != "finished":
			codes[r.status]++
		default:
			codes[200]++
			if !r.close {
				noClose++
			}
		}
	}
	if err := <-drained; err != nil {
		t.Errorf("drain: %v", err)
	}
	elapsed := time.Since(shutdownStart)
	t.Logf("%d requests: %v, %d transport errors; drain took %v", n, codes, errs, elapsed)
	if codes[200] != n {
		t.Errorf("%d of %d in-flight requests completed with 200 (%v, %d errors, first %v)", codes[200], n, codes, errs, firstErr)
	}
	if noClose > 0 {
		t.Errorf("%d responses during the drain lack Connection: close", noClose)
	}
	if elapsed > 10*time.Second {
		t.Errorf("drain took %v for requests that take 1 s", elapsed)
	}
}
