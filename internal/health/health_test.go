package health

import (
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// patience bounds every wait for something that should happen: generous,
// so that a loaded 2-core CI machine does not fail a test that is right.
const patience = 5 * time.Second

// quiet is how long a test watches for something that must not happen.
// It can only let a bug slip by on a slow machine, never fail a good run.
const quiet = 300 * time.Millisecond

// outcome is one Report call.
type outcome struct {
	target Target
	ok     bool
	detail string
	at     time.Time
}

// recorder collects reports.
type recorder struct {
	mu  sync.Mutex
	got []outcome
}

func (r *recorder) report(t Target, ok bool, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, outcome{t, ok, detail, time.Now()})
}

// of returns the reports for t so far.
func (r *recorder) of(t Target) []outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []outcome
	for _, o := range r.got {
		if o.target == t {
			out = append(out, o)
		}
	}
	return out
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// waitReports waits until t has at least n reports and returns them.
func (r *recorder) waitReports(tb testing.TB, t Target, n int) []outcome {
	tb.Helper()
	var got []outcome
	waitFor(tb, "reports for "+t.Addr, func() bool {
		got = r.of(t)
		return len(got) >= n
	})
	return got
}

// waitFor polls cond until it holds, failing the test after patience.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	testutil.Eventually(tb, patience, what, cond)
}

// newChecker returns a checker that is closed when the test ends.
func newChecker(t *testing.T) (*Checker, *recorder) {
	r := &recorder{}
	c := New(r.report)
	t.Cleanup(c.Close)
	return c, r
}

// serve runs a fasthttp server with h on a fresh loopback port until the
// test ends; tune, if given, adjusts the server first.
func serve(t *testing.T, h fasthttp.RequestHandler, tune ...func(*fasthttp.Server)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Idle workers go quickly, so that goroutine counts settle.
	s := &fasthttp.Server{Handler: h, CloseOnShutdown: true, MaxIdleWorkerDuration: 20 * time.Millisecond}
	for _, f := range tune {
		f(s)
	}
	done := make(chan struct{})
	go func() { _ = s.Serve(ln); close(done) }()
	t.Cleanup(func() { _ = s.Shutdown(); <-done })
	return ln.Addr().String()
}

// status is a handler answering code, counting its calls in hits.
func status(code int, hits *atomic.Int64) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if hits != nil {
			hits.Add(1)
		}
		ctx.SetStatusCode(code)
	}
}

// hanging accepts connections and never answers: a backend that is alive
// at the TCP level but stuck.
func hanging(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// slow settings: one probe at once, the next an hour later.
func slow(path string) Settings {
	return Settings{Path: path, Interval: time.Hour, Timeout: 2 * time.Second}
}

func TestProbeOutcomes(t *testing.T) {
	big := strings.Repeat("x", 2*maxBody)
	tests := []struct {
		name   string
		addr   func(t *testing.T) string
		ok     bool
		detail string
	}{
		{"healthy", func(t *testing.T) string { return serve(t, status(200, nil)) }, true, ""},
		{"204 is 2xx", func(t *testing.T) string { return serve(t, status(204, nil)) }, true, ""},
		{"unavailable", func(t *testing.T) string { return serve(t, status(503, nil)) }, false, "status 503"},
		{"redirect is not healthy", func(t *testing.T) string { return serve(t, status(302, nil)) }, false, "status 302"},
		{"refused", func(t *testing.T) string { return testutil.ClosedAddr(t) }, false, "connection refused"},
		{"2xx with a body over the limit passes", func(t *testing.T) string {
			return serve(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString(big) })
		}, true, ""},
		{"5xx with a body over the limit fails on its status", func(t *testing.T) string {
			return serve(t, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(500); ctx.SetBodyString(big) })
		}, false, "status 500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, r := newChecker(t)
			target := Target{Addr: tt.addr(t), Settings: slow("/health")}
			c.Set([]Target{target})
			got := r.waitReports(t, target, 1)[0]
			if got.ok != tt.ok || got.detail != tt.detail {
				t.Errorf("report = (%v, %q), want (%v, %q)", got.ok, got.detail, tt.ok, tt.detail)
			}
		})
	}
}

func TestProbeRequest(t *testing.T) {
	type seen struct{ method, uri, host, ua string }
	reqs := make(chan seen, 1)
	addr := serve(t, func(ctx *fasthttp.RequestCtx) {
		reqs <- seen{string(ctx.Method()), string(ctx.RequestURI()), string(ctx.Host()), string(ctx.UserAgent())}
	})
	c, _ := newChecker(t)
	c.Set([]Target{{Addr: addr, Settings: slow("/ready?deep=1")}})
	select {
	case got := <-reqs:
		want := seen{"GET", "/ready?deep=1", addr, "sluice-health-check"}
		if got != want {
			t.Errorf("probe = %+v, want %+v", got, want)
		}
	case <-time.After(patience):
		t.Fatal("no probe arrived")
	}
}

func TestHangingBackendTimesOut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	c, r := newChecker(t)
	target := Target{Addr: hanging(t), Settings: Settings{Path: "/health", Interval: time.Hour, Timeout: timeout}}
	start := time.Now()
	c.Set([]Target{target})
	got := r.waitReports(t, target, 1)[0]
	if got.ok || got.detail != "timeout after 300ms" {
		t.Errorf("report = (%v, %q), want (false, %q)", got.ok, got.detail, "timeout after 300ms")
	}
	if took := got.at.Sub(start); took < timeout {
		t.Errorf("timeout reported after %v, before the %v timeout", took, timeout)
	}
}

func TestFirstProbeIsImmediate(t *testing.T) {
	c, r := newChecker(t)
	target := Target{Addr: serve(t, status(200, nil)), Settings: slow("/health")}
	c.Set([]Target{target})
	// An hour's interval: a report within patience is the immediate probe.
	r.waitReports(t, target, 1)
}

func TestSetSameTargetKeepsItsSchedule(t *testing.T) {
	var hits atomic.Int64
	c, r := newChecker(t)
	target := Target{Addr: serve(t, status(200, &hits)), Settings: slow("/health")}
	c.Set([]Target{target})
	r.waitReports(t, target, 1)

	c.Set([]Target{target})         // a reload that keeps the target
	c.Set([]Target{target, target}) // and one that lists it twice
	time.Sleep(quiet)
	if n := len(r.of(target)); n != 1 {
		t.Errorf("%d reports, want 1: Set restarted or re-probed an unchanged target", n)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("%d probes reached the backend, want 1", n)
	}
}

func TestDuplicateTargetsProbedOnce(t *testing.T) {
	var hits atomic.Int64
	c, r := newChecker(t)
	target := Target{Addr: serve(t, status(200, &hits)), Settings: slow("/health")}
	c.Set([]Target{target, target, target})
	r.waitReports(t, target, 1)
	time.Sleep(quiet)
	if n := hits.Load(); n != 1 {
		t.Errorf("%d probes for one target listed three times, want 1", n)
	}
}

func TestSetWithoutTargetStopsIt(t *testing.T) {
	fast := Settings{Path: "/health", Interval: 5 * time.Millisecond, Timeout: 2 * time.Second}
	c, r := newChecker(t)
	gone := Target{Addr: serve(t, status(200, nil)), Settings: fast}
	kept := Target{Addr: serve(t, status(503, nil)), Settings: fast}
	c.Set([]Target{gone, kept})
	r.waitReports(t, gone, 3)
	r.waitReports(t, kept, 3)

	c.Set([]Target{kept})
	before := len(r.of(gone))
	keptBefore := len(r.of(kept))
	time.Sleep(quiet)
	if after := len(r.of(gone)); after != before {
		t.Errorf("%d reports for a removed target after Set returned", after-before)
	}
	r.waitReports(t, kept, keptBefore+3) // the other target carries on
}

// The prober of a removed target must leave an hour-long wait at once.
func TestRemovedProberExitsDuringItsWait(t *testing.T) {
	c, r := newChecker(t)
	target := Target{Addr: serve(t, status(200, nil)), Settings: slow("/health")}
	c.Set([]Target{target})
	r.waitReports(t, target, 1)
	c.Set(nil)
	waitFor(t, "prober goroutine to exit", func() bool { return proberGoroutines() == 0 })
}

func TestChangedSettingsRestartTheProber(t *testing.T) {
	paths := make(chan string, 10)
	addr := serve(t, func(ctx *fasthttp.RequestCtx) { paths <- string(ctx.Path()) })
	c, r := newChecker(t)
	old := Target{Addr: addr, Settings: slow("/health")}
	c.Set([]Target{old})
	r.waitReports(t, old, 1)

	changed := Target{Addr: addr, Settings: slow("/ready")}
	c.Set([]Target{changed})
	// An hour's interval: this is the new prober's own first probe.
	r.waitReports(t, changed, 1)
	time.Sleep(quiet)
	if n := len(r.of(old)); n != 1 {
		t.Errorf("%d reports under the old settings, want 1", n)
	}
	close(paths)
	var got []string
	for p := range paths {
		got = append(got, p)
	}
	if strings.Join(got, " ") != "/health /ready" {
		t.Errorf("probed paths %v, want [/health /ready]", got)
	}
}

func TestCloseStopsEveryProberAndWaits(t *testing.T) {
	fast := Settings{Path: "/health", Interval: 5 * time.Millisecond, Timeout: 200 * time.Millisecond}
	healthy := serve(t, status(200, nil))
	failing := serve(t, status(503, nil))
	stuck := hanging(t)
	refused := testutil.ClosedAddr(t)
	time.Sleep(50 * time.Millisecond) // let the servers' own goroutines start
	baseline := runtime.NumGoroutine()

	r := &recorder{}
	c := New(r.report)
	targets := []Target{
		{Addr: healthy, Settings: fast},
		{Addr: failing, Settings: fast},
		{Addr: stuck, Settings: fast},
		{Addr: refused, Settings: fast},
	}
	c.Set(targets)
	for _, tg := range targets {
		r.waitReports(t, tg, 2)
	}

	c.Close()
	if n := proberGoroutines(); n != 0 {
		t.Fatalf("%d prober goroutines still running after Close returned", n)
	}
	reported := r.total()

	c.Set(targets) // after Close: nothing starts
	c.Close()      // and closing twice is fine
	time.Sleep(quiet)
	if n := r.total() - reported; n != 0 {
		t.Errorf("%d reports after Close returned", n)
	}
	if n := proberGoroutines(); n != 0 {
		t.Errorf("Set after Close started %d probers", n)
	}
	// fasthttp's idle-connection cleaner and the servers' connection
	// goroutines wind down shortly after the probers closed their
	// connections; nothing may be left once they have.
	waitFor(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })
}

// A backend that closes idle keep-alive connections sooner than the
// interval (uvicorn does after 5s) must not fail every probe that picks
// up the closed connection.
func TestBackendIdleTimeoutShorterThanIntervalDoesNotFailProbes(t *testing.T) {
	addr := serve(t, status(200, nil), func(s *fasthttp.Server) { s.IdleTimeout = 20 * time.Millisecond })
	c, r := newChecker(t)
	target := Target{Addr: addr, Settings: Settings{Path: "/health", Interval: 100 * time.Millisecond, Timeout: 2 * time.Second}}
	c.Set([]Target{target})
	for _, o := range r.waitReports(t, target, 5) {
		if !o.ok {
			t.Errorf("probe failed on a healthy backend: %q", o.detail)
		}
	}
}

func TestWaitIsIntervalPlusJitter(t *testing.T) {
	p := newProber(Target{Addr: "127.0.0.1:1", Settings: Settings{Interval: time.Second, Jitter: 100 * time.Millisecond}}, nil)
	spread := false
	for range 1000 {
		d := p.next()
		if d < time.Second || d >= time.Second+100*time.Millisecond {
			t.Fatalf("wait %v outside [1s, 1.1s)", d)
		}
		spread = spread || d != time.Second
	}
	if !spread {
		t.Error("1000 waits without any jitter")
	}
	if d := newProber(Target{Settings: Settings{Interval: time.Second}}, nil).next(); d != time.Second {
		t.Errorf("wait without jitter = %v, want 1s", d)
	}
}

func TestZeroSettingsUseTheSpecDefaults(t *testing.T) {
	p := newProber(Target{Addr: "127.0.0.1:1"}, nil)
	if p.path != "/health" || p.interval != 2*time.Second || p.timeout != 500*time.Millisecond {
		t.Errorf("defaults = %q, %v, %v; want /health, 2s, 500ms", p.path, p.interval, p.timeout)
	}
}

// proberGoroutines counts the goroutines running a prober.
func proberGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Count(string(buf), "internal/health.(*prober).run(")
}
