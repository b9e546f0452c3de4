package gateway

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// A backend whose health endpoint fails leaves rotation after
// unhealthy_after probes although it still answers requests: /readyz says
// which route lost its backend and sluice_backend_up drops to 0. When its
// health endpoint passes again it is back after healthy_after probes, and
// a reload that drops the health block forgets an old verdict.
func TestFailingHealthChecksTakeABackendOutAndBackIn(t *testing.T) {
	var sick atomic.Bool
	var probes atomic.Int64
	addr := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/health" {
			probes.Add(1)
			if string(ctx.UserAgent()) != "sluice-health-check" {
				t.Errorf("probe with User-Agent %q", ctx.UserAgent())
			}
			if sick.Load() {
				ctx.SetStatusCode(503)
			}
			return
		}
		ctx.SetBodyString("ok")
	})
	cfg := func(health string) string {
		return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  p: {backends: [%s]%s}
routes:
  - {name: main, pool: p}
`, addr, health)
	}
	g := startGateway(t, cfg(", health: {interval: 50ms, timeout: 50ms, unhealthy_after: 2, healthy_after: 3}"))
	eventually(t, 5*time.Second, "first probes", func() bool { return probes.Load() >= 2 })
	if status, _, _ := get(t, g.url+"/"); status != 200 {
		t.Fatalf("healthy backend: %d", status)
	}

	sick.Store(true)
	eventually(t, 5*time.Second, "the backend out of rotation", func() bool {
		status, _, _ := get(t, g.url+"/")
		return status == 503
	})
	status, body, _ := get(t, g.admin+"/readyz")
	if status != 503 || !strings.Contains(body, "route main: pool p has no available backend") {
		t.Fatalf("/readyz with the only backend unhealthy: %d %q", status, body)
	}
	if up := metricValue(t, g, `sluice_backend_up{backend="`+addr+`",pool="p"}`); up != "0" {
		t.Fatalf("sluice_backend_up %s, want 0", up)
	}

	sick.Store(false)
	before := probes.Load()
	eventually(t, 5*time.Second, "the backend back in rotation", func() bool {
		status, _, _ := get(t, g.url+"/")
		return status == 200
	})
	if n := probes.Load() - before; n < 3 {
		t.Fatalf("back after %d passing probes, want healthy_after = 3", n)
	}

	// Out again, then the health block goes: the old verdict must not
	// keep it out.
	sick.Store(true)
	eventually(t, 5*time.Second, "out again", func() bool {
		status, _, _ := get(t, g.url+"/")
		return status == 503
	})
	replaceFile(t, g.path, cfg(""))
	eventually(t, 5*time.Second, "reload", func() bool { return g.Snapshot().Generation == 2 })
	if status, _, _ := get(t, g.url+"/"); status != 200 {
		t.Fatalf("after the health block was removed: %d; the old verdict kept the backend out", status)
	}
	n := probes.Load()
	time.Sleep(200 * time.Millisecond)
	if probes.Load() > n+1 {
		t.Fatalf("%d probes after the health block was removed", probes.Load()-n)
	}
}

// metricValue reads one sample from the admin /metrics page.
func metricValue(t *testing.T, g *testGateway, series string) string {
	t.Helper()
	_, page, _ := get(t, g.admin+"/metrics")
	for _, line := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	t.Fatalf("no %s in /metrics", series)
	return ""
}

// A backend that fails its health checks loses the gateway's idle
// keep-alive connections to it at once: they belong to a worker that is
// failing (dead, if it crashed), and handing one out once it is back
// would fail a request and eject it again. The pool otherwise keeps idle
// connections for 30 s.
func TestHealthTransitionsCloseIdleConnections(t *testing.T) {
	var sick atomic.Bool
	var mu sync.Mutex
	traffic := map[net.Conn]bool{} // connections that carried a request: open?
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if string(ctx.Path()) == "/health" {
				if sick.Load() {
					ctx.SetStatusCode(503)
				}
				return
			}
			mu.Lock()
			traffic[ctx.Conn()] = true
			mu.Unlock()
			ctx.SetBodyString("ok")
		},
		ConnState: func(c net.Conn, s fasthttp.ConnState) {
			if s == fasthttp.StateClosed {
				mu.Lock()
				if _, ok := traffic[c]; ok {
					traffic[c] = false
				}
				mu.Unlock()
			}
		},
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	addr := ln.Addr().String()
	open := func() (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range traffic {
			if o {
				n++
			}
		}
		return n
	}
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  p: {backends: [%s], health: {interval: 50ms, timeout: 50ms, unhealthy_after: 2, healthy_after: 2}}
routes:
  - {name: main, pool: p}
`, addr))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if status, _, _ := get(t, g.url+"/"); status != 200 {
				t.Errorf("request to a healthy backend: %d", status)
			}
		})
	}
	wg.Wait()
	if open() == 0 {
		t.Fatal("no keep-alive connection to the backend after traffic")
	}

	sick.Store(true)
	eventually(t, 5*time.Second, "the backend unhealthy", func() bool { return !backendStatusOf(t, g, "p", addr).Healthy })
	eventually(t, 5*time.Second, "its idle connections closed", func() bool { return open() == 0 })
}
