package gateway

// Acceptance tests of issue 6 (resilience), one per acceptance point, each
// over real loopback sockets with in-process fasthttp backends:
//
//	1 TestKilledBackendUnderLoad
//	2 TestHungBackendTimesOutAndItsBreakerOpens
//	3 TestHalfFailingBackendTripsItsBreakerByRatio
//	4 TestDownPoolFallsBackOrAnswersFast503
//	5 TestRetriesStayWithinTheBudget
//	6 TestResilienceStateSurvivesReload
//
// Timings are asserted only where the acceptance names one, and then with
// headroom for a loaded two-core machine running the race detector.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// backendStatus is one backend of /admin/pools.
type backendStatus struct {
	Addr                string     `json:"addr"`
	Available           bool       `json:"available"`
	Healthy             bool       `json:"healthy"`
	Breaker             string     `json:"breaker"`
	BreakerOpenUntil    *time.Time `json:"breaker_open_until"`
	EjectedUntil        *time.Time `json:"ejected_until"`
	ConsecutiveFailures int64      `json:"consecutive_failures"`
	Ejections           int64      `json:"ejections"`
	InFlight            int64      `json:"in_flight"`
	Requests            uint64     `json:"requests"`
	Failures            uint64     `json:"failures"`
}

// backendStatusOf reads one backend of one pool from /admin/pools.
func backendStatusOf(t *testing.T, g *testGateway, pool, addr string) backendStatus {
	t.Helper()
	var v struct {
		Pools []struct {
			Name     string          `json:"name"`
			Backends []backendStatus `json:"backends"`
		} `json:"pools"`
	}
	adminJSON(t, g.admin+"/admin/pools", &v)
	for _, p := range v.Pools {
		for _, b := range p.Backends {
			if p.Name == pool && b.Addr == addr {
				return b
			}
		}
	}
	t.Fatalf("/admin/pools has no backend %s in pool %s", addr, pool)
	return backendStatus{}
}

// counting is a backend that answers 200 with name and counts requests.
func counting(t *testing.T, name string, hits *atomic.Int64) string {
	return testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		hits.Add(1)
		ctx.SetBodyString(name)
	})
}

// killable is a backend on a fixed loopback address that a test kills the
// way a worker process dies, its listener gone and every open connection
// closed at once, and later starts again on the same address. Traffic is
// answered with its name after latency; GET /health at once. Each life
// counts the traffic requests its handler got and the responses it wrote
// in full, so that a kill knows exactly which requests it left unanswered.
type killable struct {
	t       *testing.T
	name    string
	addr    string
	latency time.Duration
	hits    atomic.Int64 // traffic requests over all lives
	held    atomic.Int64 // handlers waiting on hold now

	mu   sync.Mutex
	life *backendLife  // nil while killed
	hold chan struct{} // while set, traffic requests wait for it to close
}

// backendLife is one run of a killable backend, start to kill.
type backendLife struct {
	srv      *fasthttp.Server
	ln       net.Listener
	mu       sync.Mutex
	conns    map[*trackedConn]struct{}
	dead     bool
	received atomic.Int64 // traffic requests read
	answered atomic.Int64 // of those, responses written in full
}

// trackedConn is one accepted connection. mu orders response writes
// against the kill: a response is either written in full before the kill
// closes the connection, or its write fails.
type trackedConn struct {
	net.Conn
	life   *backendLife
	mu     sync.Mutex
	owed   int  // traffic requests read and not answered yet; under mu
	probes bool // it carries health probes; under mu
}

func (c *trackedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.Conn.Write(p)
	// fasthttp writes each (small) response with one flush, and the
	// gateway never pipelines: one write is one response.
	if err == nil && c.owed > 0 {
		c.owed--
		c.life.answered.Add(1)
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.life.mu.Lock()
	delete(c.life.conns, c)
	c.life.mu.Unlock()
	return c.Conn.Close()
}

type trackingListener struct {
	net.Listener
	life *backendLife
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, life: l.life}
	l.life.mu.Lock()
	defer l.life.mu.Unlock()
	if l.life.dead {
		c.Close() // accepted as the kill closed the listener
	} else {
		l.life.conns[tc] = struct{}{}
	}
	return tc, nil
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

func newKillable(t *testing.T, name string, latency time.Duration) *killable {
	k := &killable{t: t, name: name, addr: testutil.RestartableAddr(t), latency: latency}
	k.start()
	t.Cleanup(func() {
		k.mu.Lock()
		alive := k.life != nil
		k.mu.Unlock()
		if alive {
			k.kill()
		}
	})
	return k
}

func (k *killable) handle(ctx *fasthttp.RequestCtx) {
	c, ok := ctx.Conn().(*trackedConn)
	if !ok {
		k.t.Errorf("connection %T is not tracked", ctx.Conn())
		return
	}
	if string(ctx.Path()) == "/health" {
		c.mu.Lock()
		c.probes = true
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	c.owed++
	c.mu.Unlock()
	c.life.received.Add(1)
	k.hits.Add(1)
	k.mu.Lock()
	hold := k.hold
	k.mu.Unlock()
	if hold != nil {
		k.held.Add(1)
		<-hold
		k.held.Add(-1)
	}
	time.Sleep(k.latency)
	ctx.SetBodyString(k.name)
}

// start serves on the backend's address; after a kill the port is free
// at once (Go listeners set SO_REUSEADDR).
func (k *killable) start() {
	ln, err := net.Listen("tcp", k.addr)
	if err != nil {
		k.t.Fatalf("start %s again on %s: %v", k.name, k.addr, err)
	}
	l := &backendLife{conns: map[*trackedConn]struct{}{}}
	l.ln = &trackingListener{Listener: ln, life: l}
	l.srv = &fasthttp.Server{Handler: k.handle, Logger: quietLogger{}}
	go func() { _ = l.srv.Serve(l.ln) }()
	k.mu.Lock()
	k.life = l
	k.mu.Unlock()
}

// holdAnswers makes traffic requests wait, from now until the kill, so
// that a kill catches requests in flight however the machine schedules.
func (k *killable) holdAnswers() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.hold = make(chan struct{})
}

// kill ends the backend's life as a crash would and returns, once its
// handlers have run out, the traffic requests it read and never answered
// (in flight on it), and the connections it had open then that carried
// neither such a request nor health probes (idle ones, from its side).
func (k *killable) kill() (unanswered, idle int64) {
	k.mu.Lock()
	l := k.life
	k.life = nil
	k.mu.Unlock()

	l.mu.Lock()
	l.dead = true
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	_ = l.ln.Close()
	for _, c := range conns {
		c.mu.Lock()
		if c.owed == 0 && !c.probes {
			idle++
		}
		_ = c.Conn.Close() // as the kernel closes a dead process's sockets
		c.mu.Unlock()
	}
	k.mu.Lock()
	if k.hold != nil {
		close(k.hold) // the held handlers' answers now fail to write
		k.hold = nil
	}
	k.mu.Unlock()
	// fasthttp closes each connection once it is done serving it,
	// after the handler and the failed write of its answer.
	eventually(k.t, 10*time.Second, k.name+"'s handlers to run out after the kill", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.conns) == 0
	})
	return l.received.Load() - l.answered.Load(), idle
}

// Acceptance 1: one of three backends is killed under 64-connection load.
// GET, retried on what a kill causes, never fails; POST fails only for
// the requests that were in flight on the killed backend. The backend is
// ejected at once, found unhealthy within unhealthy_after probes, and once
// it is started again on the same address it is back in rotation within
// about healthy_after x interval and takes requests again.
func TestKilledBackendUnderLoad(t *testing.T) {
	const (
		interval     = 100 * time.Millisecond
		healthyAfter = 2
	)
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			a, b := newKillable(t, "a", 5*time.Millisecond), newKillable(t, "b", 5*time.Millisecond)
			victim := newKillable(t, "victim", 5*time.Millisecond)
			// The breaker keeps its defaults (5 failures in a row, open
			// for 10 s): the health checks must bring the backend back
			// whatever a kill did to it.
			g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  p:
    backends: [%s, %s, %s]
    timeout: 2s
    health: {interval: %v, timeout: %v, unhealthy_after: 2, healthy_after: %d}
    outlier: {consecutive_failures: 3, eject_for: 30s}
routes:
  - name: main
    match: {path_prefix: /}
    pool: p
    timeout: 3s
    retries: {attempts: 2, on: [connect_error, bad_response, timeout]}
`, a.addr, b.addr, victim.addr, interval, interval, healthyAfter))
			eventually(t, 5*time.Second, "every backend in rotation", func() bool {
				for _, k := range []*killable{a, b, victim} {
					if !backendStatusOf(t, g, "p", k.addr).Available {
						return false
					}
				}
				return true
			})

			load := startTraffic(g.url+"/predict", method, `{"input":[5.1,3.5,1.4,0.2]}`, 64)
			stopped := false
			defer func() {
				if !stopped {
					load.stop()
				}
			}()
			// Half a second of load first: the retry budget counts the
			// requests of the last ten seconds.
			time.Sleep(500 * time.Millisecond)
			eventually(t, 10*time.Second, "the victim taking traffic", func() bool { return victim.hits.Load() >= 100 })
			victim.holdAnswers()
			eventually(t, 5*time.Second, "requests held on the victim", func() bool { return victim.held.Load() >= 2 })

			unanswered, idle := victim.kill()
			killed := time.Now()
			t.Logf("killed with %d requests in flight on it and %d idle connections to it", unanswered, idle)
			if unanswered == 0 {
				t.Fatal("no request was in flight on the victim when it was killed: not a kill under load")
			}

			// Failed attempts eject it (outlier: 3 in a row); failing
			// probes take it out (unhealthy_after 2 x 100 ms).
			eventually(t, 2*time.Second, "the killed backend ejected", func() bool {
				s := backendStatusOf(t, g, "p", victim.addr)
				return !s.Available && s.EjectedUntil != nil && s.Ejections >= 1
			})
			eventually(t, 2*time.Second, "the killed backend unhealthy", func() bool {
				return !backendStatusOf(t, g, "p", victim.addr).Healthy
			})
			if wait := time.Until(killed.Add(time.Second)); wait > 0 {
				time.Sleep(wait) // a second down
			}

			victim.start()
			back := time.Now()
			hits := victim.hits.Load()
			var last backendStatus
			defer func() {
				if t.Failed() {
					t.Logf("the victim as /admin/pools last showed it: %+v", last)
				}
			}()
			eventually(t, 5*time.Second, "the restarted backend in rotation", func() bool {
				last = backendStatusOf(t, g, "p", victim.addr)
				return last.Available
			})
			// healthy_after x interval is 200 ms; jitter (10 ms a probe),
			// the probe in flight and a loaded machine add to it, so the
			// bound is five times that.
			took := time.Since(back)
			t.Logf("back in rotation %v after it returned", took)
			if took > 5*healthyAfter*interval {
				t.Errorf("back in rotation %v after it returned, want about %v", took, healthyAfter*interval)
			}
			eventually(t, 5*time.Second, "the restarted backend taking requests", func() bool { return victim.hits.Load() > hits+10 })
			time.Sleep(200 * time.Millisecond)

			stopped = true
			total, failed, codes, first := load.stop()
			t.Logf("%d %s requests: %v", total, method, codes)
			if method == "GET" {
				if failed != 0 {
					t.Fatalf("%d of %d GET requests failed (first: %s), want 0: a GET is retried on what a kill causes", failed, total, first)
				}
				return
			}
			// A POST that reached the killed backend is not retried: the
			// requests it read and never answered fail, and nothing else
			// may, with one exception the gateway cannot tell apart. A
			// keep-alive connection idle in the gateway's pool when the
			// kill closed it can still be picked for one more request
			// before the close is noticed (fasthttp does not watch idle
			// connections); that request was written onto a dead
			// connection, may have reached the socket, and is not safe
			// to send again. Each such connection carries at most one
			// (a failed connection is dropped, and the first failure
			// makes the gateway close the others), so idle bounds them.
			// (A connection the kernel had accepted but the server not
			// yet, at the kill, would be one more; with idle
			// connections to pick the gateway seldom dials, and the
			// bound has room: the measured excess is a few, idle 8-20.)
			if failed < unanswered || failed > unanswered+idle {
				t.Fatalf("%d of %d POST requests failed (first: %s); want the %d in flight on the killed backend, plus at most one on each of its %d idle connections",
					failed, total, first, unanswered, idle)
			}
			if failed != codes[502] {
				t.Fatalf("failures %v: want only 502 for the requests lost in flight", codes)
			}
		})
	}
}

// Acceptance 2: a backend that accepts requests and never answers. Its
// requests get 504 upstream_timeout at the route timeout, however many
// retries on timeout the route allows (the route timeout bounds them all);
// three in a row open its breaker (admin and sluice_breaker_state say so);
// while open, requests skip it; once it answers again, the half-open probe
// after open_for closes the breaker.
func TestHungBackendTimesOutAndItsBreakerOpens(t *testing.T) {
	const routeTimeout = 300 * time.Millisecond
	var hanging atomic.Bool
	hanging.Store(true)
	release := make(chan struct{})
	var once sync.Once
	answerAgain := func() {
		once.Do(func() {
			hanging.Store(false)
			close(release)
		})
	}
	var stuckHits atomic.Int64
	stuck := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		stuckHits.Add(1)
		if hanging.Load() {
			<-release
		}
		ctx.SetBodyString("stuck")
	})
	t.Cleanup(answerAgain) // runs before the backend's shutdown, which waits for its handlers
	good := testutil.Named(t, "good")
	// Round robin, so that the hung backend keeps its turn (least_pending
	// would avoid it for its pending requests alone); outlier ejection out
	// of the way: this is the breaker's test.
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  p:
    backends: [%s, %s]
    balance: round_robin
    timeout: 5s
    breaker: {consecutive_failures: 3, open_for: 1s}
    outlier: {consecutive_failures: 1000}
routes:
  - name: main
    pool: p
    timeout: %v
    retries: {attempts: 2, on: [timeout, connect_error]}
`, stuck, good, routeTimeout))

	timeouts := 0
	for i := 0; stuckHits.Load() < 3; i++ {
		if i == 20 {
			t.Fatalf("the hung backend got %d of 20 requests under round robin", stuckHits.Load())
		}
		start := time.Now()
		status, body, _ := get(t, g.url+"/")
		took := time.Since(start)
		switch status {
		case 200:
			if body != "good" {
				t.Fatalf("200 from %q", body)
			}
		case 504:
			timeouts++
			if code := decodeError(t, []byte(body)).Error.Code; code != "upstream_timeout" {
				t.Fatalf("504 with code %q, want upstream_timeout", code)
			}
			// At the route timeout, not at retries x timeout or the
			// pool's 5 s: the bound leaves room for a loaded machine.
			if took < routeTimeout*9/10 || took >= 3*routeTimeout {
				t.Errorf("504 after %v, want at the route timeout %v", took, routeTimeout)
			}
		default:
			t.Fatalf("status %d %s", status, body)
		}
	}
	if timeouts != 3 {
		t.Fatalf("%d timeouts for 3 requests to the hung backend", timeouts)
	}

	s := backendStatusOf(t, g, "p", stuck)
	if s.Breaker != "open" || s.Available || s.BreakerOpenUntil == nil {
		t.Fatalf("after 3 timeouts in a row: %+v; want the breaker open", s)
	}
	if v := metricValue(t, g, `sluice_breaker_state{backend="`+stuck+`",pool="p"}`); v != "2" {
		t.Fatalf("sluice_breaker_state %s, want 2 (open)", v)
	}
	hits, sent := stuckHits.Load(), 0
	for ; sent < 50 && time.Now().Before(s.BreakerOpenUntil.Add(-200*time.Millisecond)); sent++ {
		if status, body, _ := get(t, g.url+"/"); status != 200 || body != "good" {
			t.Fatalf("breaker open: %d %q, want the good backend's answer", status, body)
		}
	}
	if sent < 5 {
		t.Fatalf("only %d requests fitted in the breaker's open time", sent)
	}
	if n := stuckHits.Load() - hits; n != 0 {
		t.Fatalf("%d attempts reached the hung backend while its breaker was open", n)
	}

	answerAgain()
	eventually(t, 5*time.Second, "a half-open probe closing the breaker", func() bool {
		if status, body, _ := get(t, g.url+"/"); status != 200 {
			t.Fatalf("after the backend answers again: %d %s", status, body)
		}
		return backendStatusOf(t, g, "p", stuck).Breaker == "closed"
	})
	if stuckHits.Load() == hits {
		t.Fatal("the breaker closed without a probe reaching the backend")
	}
	if v := metricValue(t, g, `sluice_breaker_state{backend="`+stuck+`",pool="p"}`); v != "0" {
		t.Fatalf("sluice_breaker_state %s after the probe, want 0 (closed)", v)
	}
	hits = stuckHits.Load()
	for range 10 {
		get(t, g.url+"/")
	}
	if stuckHits.Load()-hits != 5 {
		t.Fatalf("the recovered backend got %d of 10 requests, want its round-robin half", stuckHits.Load()-hits)
	}
}

// Acceptance 3: a backend that answers 500 to every other request trips
// its breaker by failure ratio: it never fails twice in a row, so with
// consecutive_failures set high only the ratio can, once min_requests
// attempts are in the window. Clients see its 500s up to the trip and
// none after; the other backends take all the load.
func TestHalfFailingBackendTripsItsBreakerByRatio(t *testing.T) {
	var flakyHits, aHits, bHits atomic.Int64
	flaky := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		if flakyHits.Add(1)%2 == 0 {
			ctx.SetStatusCode(500)
			ctx.SetBodyString("flaky failed")
			return
		}
		ctx.SetBodyString("flaky")
	})
	a, b := counting(t, "a", &aHits), counting(t, "b", &bHits)
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  p:
    backends: [%s, %s, %s]
    balance: round_robin
    breaker: {failure_ratio: 0.5, min_requests: 20, consecutive_failures: 1000, open_for: 1m}
    outlier: {consecutive_failures: 1000}
routes:
  - {name: main, pool: p, retries: {attempts: 0}}
`, flaky, a, b))

	// Round robin gives it every third request: at its 20th attempt
	// (min_requests), 10 of 20 have failed, ratio 0.5, and it trips.
	codes := map[int]int{}
	for range 90 {
		status, _, _ := get(t, g.url+"/")
		codes[status]++
	}
	if flakyHits.Load() != 20 || codes[500] != 10 || codes[200] != 80 {
		t.Fatalf("the flaky backend got %d requests, clients saw %v; want 20 and 10 500s, the last at the trip",
			flakyHits.Load(), codes)
	}
	s := backendStatusOf(t, g, "p", flaky)
	if s.Breaker != "open" || s.Available || s.Requests != 20 || s.Failures != 10 {
		t.Fatalf("flaky backend %+v; want its breaker open after 10 of 20 failed", s)
	}

	before := aHits.Load() + bHits.Load()
	beforeA := aHits.Load()
	load := startTraffic(g.url+"/", "GET", "", 64)
	time.Sleep(time.Second)
	total, failed, codesUnderLoad, first := load.stop()
	if failed != 0 {
		t.Fatalf("%d of %d requests failed under load with the breaker open (%v, first: %s)", failed, total, codesUnderLoad, first)
	}
	if flakyHits.Load() != 20 {
		t.Fatalf("the flaky backend got %d requests while its breaker was open", flakyHits.Load()-20)
	}
	shareA := float64(aHits.Load()-beforeA) / float64(aHits.Load()+bHits.Load()-before)
	if aHits.Load()+bHits.Load()-before != total || shareA < 0.4 || shareA > 0.6 {
		t.Fatalf("the other backends got %d of %d requests, %.0f%% to a; want all, shared evenly",
			aHits.Load()+bHits.Load()-before, total, 100*shareA)
	}
}

// Acceptance 4: a pool whose every backend is down. With a fallback, the
// fallback pool answers, X-Sluice-Variant names it and requests are
// counted under it; without one, clients get a 503 unavailable whose
// Retry-After says when the first backend may be back, fast.
func TestDownPoolFallsBackOrAnswersFast503(t *testing.T) {
	dead1, dead2 := testutil.ClosedAddr(t), testutil.ClosedAddr(t)
	var spareHits atomic.Int64
	spare := counting(t, "spare", &spareHits)
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  main:
    backends: [%s, %s]
    outlier: {consecutive_failures: 1, eject_for: 20s, max_ejected_percent: 100}
  spare: {backends: [%s]}
routes:
  - name: fb
    match: {path_prefix: /fb}
    pool: main
    fallback: spare
    retries: {attempts: 2, on: [connect_error]}
  - {name: nofb, match: {path_prefix: /nofb}, pool: main}
`, dead1, dead2, spare))

	// The first request finds both backends refusing (each is ejected)
	// and is answered by the fallback; so is every later one, without
	// another attempt on the dead pool.
	for i := range 50 {
		status, body, h := get(t, g.url+"/fb")
		if status != 200 || body != "spare" || h.Get("X-Sluice-Variant") != "spare" {
			t.Fatalf("request %d: %d %q, X-Sluice-Variant %q; want the fallback pool's answer, marked spare",
				i, status, body, h.Get("X-Sluice-Variant"))
		}
	}
	for _, dead := range []string{dead1, dead2} {
		if s := backendStatusOf(t, g, "main", dead); s.Available || s.EjectedUntil == nil {
			t.Fatalf("dead backend %+v; want it ejected", s)
		}
		if n := metricValue(t, g, `sluice_upstream_requests_total{backend="`+dead+`",outcome="connect_error",pool="main"}`); n != "1" {
			t.Fatalf("%s attempts on dead backend %s, want 1 before it was ejected", n, dead)
		}
	}
	if n := metricValue(t, g, `sluice_requests_total{code="200",route="fb",variant="spare"}`); n != "50" {
		t.Fatalf("requests_total under variant spare: %s, want 50", n)
	}
	if spareHits.Load() != 50 {
		t.Fatalf("the fallback pool got %d requests, want 50", spareHits.Load())
	}

	status, body, h := get(t, g.url+"/nofb")
	secs, _ := strconv.Atoi(h.Get("Retry-After"))
	if status != 503 || decodeError(t, []byte(body)).Error.Code != "unavailable" || secs < 18 || secs > 20 {
		t.Fatalf("pool down, no fallback: %d %s, Retry-After %q; want 503 unavailable, back in about 20s",
			status, body, h.Get("Retry-After"))
	}

	// p99 of 500 sequential 503s on one keep-alive connection, measured
	// at the client. A scheduling hiccup of the loaded test machine can
	// spoil one round's tail, so the bound is on the median of three.
	client := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	p99s := make([]time.Duration, 3)
	for round := range p99s {
		lat := make([]time.Duration, 500)
		for i := range lat {
			start := time.Now()
			resp, err := client.Get(g.url + "/nofb")
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			lat[i] = time.Since(start)
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("got %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
		}
		slices.Sort(lat)
		p99s[round] = lat[len(lat)*99/100]
	}
	t.Logf("p99 of 503s per round: %v", p99s)
	// What makes the 503 fast is that it comes from known state: no
	// request dials the dead backends again. Timing on a shared test
	// machine only gets a sanity bound (a dial or an attempt timeout would
	// take far longer); the sub-millisecond figure is measured by the
	// benchmarks.
	for _, dead := range []string{dead1, dead2} {
		if n := metricValue(t, g, `sluice_upstream_requests_total{backend="`+dead+`",outcome="connect_error",pool="main"}`); n != "1" {
			t.Fatalf("%s attempts on dead backend %s after 1,500 requests, want still 1: the 503s dialed", n, dead)
		}
	}
	slices.Sort(p99s)
	if p99s[1] >= 50*time.Millisecond {
		t.Fatalf("p99 of the 503s %v (median of rounds %v), want far under any dial or attempt timeout", p99s[1], p99s)
	}
}

// Acceptance 5: every backend answers 500 and the route retries 500
// (attempts 2, budget_percent 20). The breakers and outlier ejection are
// set so that they do not stop the traffic. Under 64 connections for
// 10 s, the budget's window, attempts counted at the backends stay within
// (1 + 20%) x client requests. So they do under 8 connections, where the
// floor of 3 retries in flight, once granted on top of a spent budget,
// let nearly every request have its retries.
func TestRetriesStayWithinTheBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("13 s of load")
	}
	for _, tc := range []struct {
		clients int
		run     time.Duration
	}{{64, 10 * time.Second}, {8, 3 * time.Second}} {
		t.Run(fmt.Sprintf("%d connections", tc.clients), func(t *testing.T) {
			var attempts atomic.Int64
			backends := []string{failing(t, &attempts), failing(t, &attempts), failing(t, &attempts)}
			// Ejection is capped at 10000 failures in a row, which a
			// backend may reach in 10 s: eject_for 1ms keeps such an
			// ejection from mattering.
			g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  p:
    backends: [%s]
    breaker: {consecutive_failures: 1000000, min_requests: 1000000}
    outlier: {consecutive_failures: 10000, eject_for: 1ms}
routes:
  - {name: main, pool: p, retries: {attempts: 2, on: ["500"], budget_percent: 20}}
`, strings.Join(backends, ", ")))

			load := startTraffic(g.url+"/", "GET", "", tc.clients)
			time.Sleep(tc.run)
			total, _, codes, _ := load.stop()
			sent := attempts.Load()
			retries := sent - total
			t.Logf("%d client requests, %d attempts: %d retries, %.2f%%", total, sent, retries, 100*float64(retries)/float64(total))
			if codes[500] != total {
				t.Fatalf("answers %v, want every request answered with the backends' 500", codes)
			}
			// A retry is counted before it is granted, so racing
			// retries cannot overspend the budget. The floor of 3
			// retries in flight applies only while 20% of the window's
			// requests comes to fewer than 3 (its first 15 requests),
			// and what it grants then comes out of the share of the
			// requests that follow. The 3 allowed over are for counts
			// lost when a one-second bucket turns over (the budget is
			// "a bound, not a ledger", retry.go).
			if float64(sent) > 1.2*float64(total)+3 {
				t.Fatalf("%d attempts for %d requests: %d retries, over the 20%% budget", sent, total, retries)
			}
			// And the budget is what stops them: without it there would
			// be two retries per request.
			if retries < total/10 {
				t.Fatalf("only %d retries for %d requests: the budget was not used", retries, total)
			}
		})
	}
}

// Acceptance 6: a config reload that keeps the backends keeps what is
// known about them. One backend is unhealthy by its probes, one ejected
// by outlier detection, one behind an open breaker; after a reload that
// adds a route, each is in the same state, with the same end times, and
// traffic still skips all three.
func TestResilienceStateSurvivesReload(t *testing.T) {
	var sickProbeFails atomic.Bool
	sickProbeFails.Store(true)
	var sickHits, badHits, trippedHits atomic.Int64
	sick := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/health" {
			if sickProbeFails.Load() {
				ctx.SetStatusCode(503)
			}
			return
		}
		sickHits.Add(1)
		ctx.SetBodyString("sick")
	})
	bad, tripped := failing(t, &badHits), failing(t, &trippedHits)
	ok1, ok2, ok3 := testutil.Named(t, "ok1"), testutil.Named(t, "ok2"), testutil.Named(t, "ok3")
	// Probes every hour: the first, at once, finds the sick backend
	// failing; then its health endpoint passes, but the next probe is an
	// hour away, so only kept state keeps it out after the reload.
	cfg := func(extra string) string {
		return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  hc:
    backends: [%s, %s]
    health: {interval: 1h, timeout: 1s, unhealthy_after: 1, healthy_after: 2}
  ej:
    backends: [%s, %s]
    balance: round_robin
    outlier: {consecutive_failures: 2, eject_for: 1m}
    breaker: {consecutive_failures: 1000, min_requests: 1000}
  br:
    backends: [%s, %s]
    balance: round_robin
    breaker: {consecutive_failures: 2, open_for: 1m}
    outlier: {consecutive_failures: 1000}
routes:
  - {name: hc, match: {path_prefix: /hc}, pool: hc}
  - {name: ej, match: {path_prefix: /ej}, pool: ej}
  - {name: br, match: {path_prefix: /br}, pool: br}
%s`, sick, ok1, bad, ok2, tripped, ok3, extra)
	}
	g := startGateway(t, cfg(""))
	eventually(t, 5*time.Second, "the sick backend's probe failing", func() bool {
		return !backendStatusOf(t, g, "hc", sick).Healthy
	})
	sickProbeFails.Store(false)
	for range 4 {
		get(t, g.url+"/ej")
		get(t, g.url+"/br")
	}
	hcBefore, ejBefore, brBefore := backendStatusOf(t, g, "hc", sick), backendStatusOf(t, g, "ej", bad), backendStatusOf(t, g, "br", tripped)
	if hcBefore.Available || hcBefore.Healthy {
		t.Fatalf("sick backend %+v; want unhealthy", hcBefore)
	}
	if ejBefore.Available || ejBefore.EjectedUntil == nil || ejBefore.Breaker != "closed" {
		t.Fatalf("failing backend %+v; want ejected, breaker closed", ejBefore)
	}
	if brBefore.Available || brBefore.Breaker != "open" || brBefore.BreakerOpenUntil == nil || brBefore.EjectedUntil != nil {
		t.Fatalf("tripped backend %+v; want its breaker open, not ejected", brBefore)
	}
	hits := [3]int64{sickHits.Load(), badHits.Load(), trippedHits.Load()}

	replaceFile(t, g.path, cfg("  - {name: extra, match: {path_prefix: /extra}, pool: hc}\n"))
	eventually(t, 5*time.Second, "the reload", func() bool { return g.Snapshot().Generation == 2 })

	hc, ej, br := backendStatusOf(t, g, "hc", sick), backendStatusOf(t, g, "ej", bad), backendStatusOf(t, g, "br", tripped)
	if hc.Available || hc.Healthy {
		t.Errorf("after the reload the sick backend is %+v; its unhealthy verdict was lost", hc)
	}
	if ej.Available || ej.EjectedUntil == nil || !ej.EjectedUntil.Equal(*ejBefore.EjectedUntil) || ej.Ejections != ejBefore.Ejections {
		t.Errorf("after the reload the ejected backend is %+v; want the same ejection as before (%v)", ej, ejBefore.EjectedUntil)
	}
	if br.Available || br.Breaker != "open" || br.BreakerOpenUntil == nil || !br.BreakerOpenUntil.Equal(*brBefore.BreakerOpenUntil) {
		t.Errorf("after the reload the tripped backend is %+v; want its breaker open as before (until %v)", br, brBefore.BreakerOpenUntil)
	}
	for _, route := range []string{"/hc", "/ej", "/br", "/extra"} {
		for range 10 {
			if status, body, _ := get(t, g.url+route); status != 200 || !strings.HasPrefix(body, "ok") {
				t.Fatalf("%s after the reload: %d %q, want an answer from a good backend", route, status, body)
			}
		}
	}
	if now := [3]int64{sickHits.Load(), badHits.Load(), trippedHits.Load()}; now != hits {
		t.Fatalf("requests to the sick, ejected and tripped backends went from %v to %v after the reload", hits, now)
	}
}

// TestWorkerWithAShortKeepAliveTimeout: a worker that closes idle
// keep-alive connections sooner than the gateway's pool would (uvicorn's
// default is 5 s, gunicorn's 2 s) must not cost the next request after a
// quiet spell anything: not a 502, not an ejection. The worker here closes
// them after 150ms; each prediction is a POST, which could not simply be
// sent again.
func TestWorkerWithAShortKeepAliveTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opened, closed atomic.Int64
	srv := &http.Server{
		IdleTimeout: 150 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, `{"prediction":"setosa"}`) //nolint:errcheck
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				opened.Add(1)
			case http.StateClosed:
				closed.Add(1)
			}
		},
	}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { srv.Close() })

	g := startGateway(t, onePool([]string{ln.Addr().String()}, ""))
	for i := range 4 {
		if i > 0 {
			eventually(t, 5*time.Second, "the worker closed its idle connection", func() bool { return closed.Load() == opened.Load() })
		}
		if code, body, _ := send(t, "POST", g.url+"/predict", `{"input":[5.1,3.5,1.4,0.2]}`); code != 200 {
			t.Fatalf("prediction %d after a quiet spell: %d %s", i+1, code, body)
		}
	}
	if n := opened.Load(); n < 4 {
		t.Fatalf("the worker saw %d connections for 4 requests spaced past its keep-alive timeout; want 4 (each stale one dropped)", n)
	}
	var v poolsView
	adminJSON(t, g.admin+"/admin/pools", &v)
	if b := v.Pools[0].Backends[0]; b.Failures != 0 || b.Conns != 1 {
		t.Fatalf("/admin/pools after the quiet spells: %d failures, %d connections; want 0 failures (the worker closed them while idle) and 1 connection (the last request's)", b.Failures, b.Conns)
	}
}
