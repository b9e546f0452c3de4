package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
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
