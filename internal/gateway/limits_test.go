package gateway

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// okBackend answers every request 200 at once.
func okBackend(t *testing.T) string {
	return testutil.Backend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString(`{"ok":true}`) })
}

// paced is one request of a paced run: when it was sent, how long its
// answer took, and the status (0 for a transport error).
type paced struct {
	at      time.Duration // since the run started
	latency time.Duration
	status  int
}

// pace sends n requests, request i at start + i*every (workers senders
// share them out; a sender that falls behind sends at once), each built by
// prepare, and returns them in order and the run's length from the first
// send to the last.
func pace(t *testing.T, n int, every time.Duration, workers int, prepare func(i int, req *fasthttp.Request)) ([]paced, time.Duration) {
	t.Helper()
	out := make([]paced, n)
	client := &fasthttp.Client{MaxConnsPerHost: workers * 2, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for i := w; i < n; i += workers {
				time.Sleep(time.Until(start.Add(time.Duration(i) * every)))
				req.Reset()
				prepare(i, req)
				sent := time.Now()
				status := 0
				if err := client.Do(req, resp); err == nil {
					status = resp.StatusCode()
				}
				out[i] = paced{at: sent.Sub(start), latency: time.Since(sent), status: status}
			}
		})
	}
	wg.Wait()
	last := slices.MaxFunc(out, func(a, b paced) int { return int(a.at - b.at) })
	return out, last.at
}

// count tallies statuses of the requests sent in [from, to).
func count(reqs []paced, from, to time.Duration) map[int]int {
	codes := map[int]int{}
	for _, r := range reqs {
		if r.at >= from && r.at < to {
			codes[r.status]++
		}
	}
	return codes
}

// p99 is the 99th percentile latency of the requests sent in [from, to).
func p99(reqs []paced, from, to time.Duration) time.Duration {
	var ls []time.Duration
	for _, r := range reqs {
		if r.at >= from && r.at < to {
			ls = append(ls, r.latency)
		}
	}
	if len(ls) == 0 {
		return 0
	}
	slices.Sort(ls)
	return ls[len(ls)*99/100]
}

func keyed(url, key string) func(int, *fasthttp.Request) {
	return func(_ int, req *fasthttp.Request) {
		req.SetRequestURI(url)
		req.Header.Set("X-API-Key", key)
	}
}

// within fails unless got is want ± share.
func within(t *testing.T, what string, got int, want, share float64) {
	t.Helper()
	if float64(got) < want*(1-share) || float64(got) > want*(1+share) {
		t.Errorf("%s: %d, want %.0f ± %.0f%%", what, got, want, share*100)
	} else {
		t.Logf("%s: %d (want %.0f ± %.0f%%)", what, got, want, share*100)
	}
}

// Acceptance: one key limited to 100/s with burst 20, driven at 1,000/s
// for 10 s, gets the burst plus 100 per second admitted, within 2%; every
// refusal is a well-formed 429.
func TestLocalRateLimitAdmitsBurstPlusRate(t *testing.T) {
	if testing.Short() {
		t.Skip("a 10 s paced run")
	}
	g := startGateway(t, onePool([]string{okBackend(t)}, `    rate_limit: {key: header:X-API-Key, rate: 100/s, burst: 20}`))
	reqs, run := pace(t, 10_000, time.Millisecond, 8, keyed(g.url+"/predict", "team-a"))
	codes := count(reqs, 0, time.Hour)
	if codes[200]+codes[429] != 10_000 {
		t.Fatalf("answers %v: want only 200 and 429", codes)
	}
	within(t, fmt.Sprintf("admitted in %v at 1,000/s", run.Round(time.Millisecond)), codes[200], 20+100*run.Seconds(), 0.02)
	t.Logf("against the nominal 10 s: %d admitted, want 1020 ± 2%% when the run keeps its pace (it took %v)", codes[200], run.Round(time.Millisecond))
	if got := metricValue(t, g, `sluice_ratelimit_decisions_total{decision="limited",route="main"}`); got != strconv.Itoa(codes[429]) {
		t.Errorf("limited decisions metric %s, want %d", got, codes[429])
	}
}

func TestRateLimitedAnswerSaysWhenToComeBack(t *testing.T) {
	g := startGateway(t, onePool([]string{okBackend(t)}, `    rate_limit: {key: header:X-API-Key, rate: 6/m, burst: 2}`))
	for i := range 2 {
		if code, body, _ := get(t, g.url+"/predict", "X-API-Key", "k"); code != 200 {
			t.Fatalf("request %d of a burst of 2: %d %s", i+1, code, body)
		}
	}
	code, body, h := get(t, g.url+"/predict", "X-API-Key", "k")
	if code != http.StatusTooManyRequests || decodeError(t, []byte(body)).Error.Code != "rate_limited" {
		t.Fatalf("third request: %d %s, want 429 rate_limited", code, body)
	}
	// 6/m is a token every 10 s.
	want := map[string]string{"Retry-After": "10", "RateLimit-Limit": "2", "RateLimit-Remaining": "0", "RateLimit-Reset": "10"}
	for name, v := range want {
		if got := h.Get(name); got != v {
			t.Errorf("%s: %q, want %q", name, got, v)
		}
	}
	if code, _, _ := get(t, g.url+"/predict", "X-API-Key", "other"); code != 200 {
		t.Errorf("another key was refused (%d): keys must have their own buckets", code)
	}
	if code, _, _ := get(t, g.url+"/predict"); code != 200 {
		t.Errorf("a request without the key was refused (%d): an entry limits only requests with its key", code)
	}
	if got := metricValue(t, g, `sluice_ratelimit_decisions_total{decision="no_key",route="main"}`); got != "1" {
		t.Errorf("no_key decisions %s, want 1", got)
	}
	var view struct {
		Routes []struct {
			Route      string `json:"route"`
			RateLimits []struct {
				Key     string `json:"key"`
				Rate    string `json:"rate"`
				Keys    int    `json:"keys"`
				Limited int64  `json:"limited"`
			} `json:"rate_limits"`
		} `json:"routes"`
	}
	adminJSON(t, g.admin+"/admin/limits", &view)
	if len(view.Routes) != 1 || len(view.Routes[0].RateLimits) != 1 {
		t.Fatalf("/admin/limits: %+v", view)
	}
	if rl := view.Routes[0].RateLimits[0]; rl.Key != "header:X-API-Key" || rl.Rate != "6/m" || rl.Keys != 2 || rl.Limited != 1 {
		t.Errorf("/admin/limits entry %+v, want header:X-API-Key at 6/m with 2 keys and 1 refusal", rl)
	}
}

// Every entry applies: a client within its API key's limit is still held
// to its address's, and the other way round.
func TestEveryRateLimitEntryApplies(t *testing.T) {
	g := startGateway(t, onePool([]string{okBackend(t)}, `    rate_limit:
      - {key: header:X-API-Key, rate: 1/m, burst: 2}
      - {key: client_ip, rate: 1/m, burst: 3}`))
	var codes []int
	for _, key := range []string{"a", "a", "a", "b", "c"} {
		code, _, _ := get(t, g.url+"/predict", "X-API-Key", key)
		codes = append(codes, code)
	}
	// a, a pass; a is over its key's limit; b passes (the address's third);
	// c has tokens of its own but the address has none left.
	if want := []int{200, 200, 429, 200, 429}; !slices.Equal(codes, want) {
		t.Fatalf("statuses %v, want %v", codes, want)
	}
}

// client_ip is the peer unless the peer is a trusted proxy: a client
// cannot dodge its bucket by inventing X-Forwarded-For.
func TestClientIPLimitIgnoresSpoofedForwardedFor(t *testing.T) {
	limit := `    rate_limit: {key: client_ip, rate: 1/m, burst: 1}`
	untrusted := startGateway(t, onePool([]string{okBackend(t)}, limit))
	for i, xff := range []string{"203.0.113.1", "203.0.113.2", "198.51.100.7, 203.0.113.3"} {
		code, _, _ := get(t, untrusted.url+"/predict", "X-Forwarded-For", xff)
		if want := map[bool]int{true: 200, false: 429}[i == 0]; code != want {
			t.Fatalf("request %d with X-Forwarded-For %q from an untrusted peer: %d, want %d", i+1, xff, code, want)
		}
	}
	trusted := startGateway(t, `
server: {listen: "127.0.0.1:0", trusted_proxies: [127.0.0.1]}
admin: {listen: "127.0.0.1:0"}
pools: {p: {backends: [`+okBackend(t)+`]}}
routes:
  - name: main
    pool: p
`+limit)
	for _, xff := range []string{"203.0.113.1", "203.0.113.2"} {
		if code, _, _ := get(t, trusted.url+"/predict", "X-Forwarded-For", xff); code != 200 {
			t.Fatalf("first request of client %s behind a trusted proxy: %d, want 200", xff, code)
		}
	}
	if code, _, _ := get(t, trusted.url+"/predict", "X-Forwarded-For", "203.0.113.1"); code != 429 {
		t.Fatalf("second request of client 203.0.113.1 behind a trusted proxy: %d, want 429", code)
	}
}

// A reload that keeps an entry keeps its buckets: editing an unrelated
// part of the file does not hand every client a fresh burst.
func TestRateLimitSurvivesReload(t *testing.T) {
	backend := okBackend(t)
	limit := `    rate_limit: {key: header:X-API-Key, rate: 1/m, burst: 1}`
	g := startGateway(t, onePool([]string{backend}, limit))
	get(t, g.url+"/predict", "X-API-Key", "k")
	replaceFile(t, g.path, onePool([]string{backend}, limit+"\n    timeout: 3s"))
	if _, err := g.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := get(t, g.url+"/predict", "X-API-Key", "k"); code != 429 {
		t.Fatalf("after a reload that kept the limit: %d, want 429 (the bucket is still empty)", code)
	}
}

// max_in_flight: the requests beyond the cap are answered 503 with
// Retry-After at once, while the ones within it are served.
func TestMaxInFlightAnswersTheRestAtOnce(t *testing.T) {
	release := make(chan struct{})
	slow := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		<-release
		ctx.SetBodyString("ok")
	})
	g := startGateway(t, onePool([]string{slow}, `    max_in_flight: 2`))
	type answer struct {
		code       int
		retryAfter string
	}
	answers := make(chan answer, 6)
	for range 2 {
		go func() {
			code, _, h := get(t, g.url+"/predict")
			answers <- answer{code, h.Get("Retry-After")}
		}()
	}
	eventually(t, 5*time.Second, "two requests in flight", func() bool {
		in, _ := g.proxy.Snapshot().Route("main").LimitStats()
		return in == 2
	})
	for range 4 {
		code, body, h := get(t, g.url+"/predict")
		if code != http.StatusServiceUnavailable || h.Get("Retry-After") != "1" || decodeError(t, []byte(body)).Error.Code != "unavailable" {
			t.Fatalf("request over max_in_flight while two wait: %d %q Retry-After %q, want 503 unavailable with Retry-After 1",
				code, body, h.Get("Retry-After"))
		}
	}
	close(release)
	for range 2 {
		if a := <-answers; a.code != 200 {
			t.Fatalf("a request within max_in_flight got %d", a.code)
		}
	}
	if code, _, _ := get(t, g.url+"/predict"); code != 200 {
		t.Fatalf("after the slow requests finished: %d, want 200", code)
	}
}

// globalLimit is a gateway config whose route has one global limit of
// 100/s with burst 20 on X-API-Key, in the Redis at addr, each round trip
// bounded by timeout.
func globalLimit(backend, redisAddr, timeout, onError string) string {
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
redis: {addr: %q, timeout: %s}
pools: {p: {backends: [%s]}}
routes:
  - name: main
    pool: p
    rate_limit: {key: header:X-API-Key, rate: 100/s, burst: 20, scope: global, on_redis_error: %s, replicas: 2}
`, redisAddr, timeout, backend, onError)
}

// Acceptance: three gateways sharing one Redis hold one key to 100/s with
// burst 20 between them: driven at 1,000/s in total, spread over the
// three, for 10 s, they admit 1,020 ± 5%.
func TestGlobalRateLimitHoldsAcrossThreeGateways(t *testing.T) {
	if testing.Short() {
		t.Skip("a 10 s paced run")
	}
	redisAddr := testutil.Redis(t)
	backend := okBackend(t)
	var gws []*testGateway
	for range 3 {
		// A generous timeout: this test is about one bucket shared by three
		// gateways, and a loaded test machine can keep Redis from answering
		// within 25 ms, which would rightly hand decisions to the fallback.
		gws = append(gws, startGateway(t, globalLimit(backend, redisAddr, "500ms", "local")))
	}
	reqs, run := pace(t, 10_000, time.Millisecond, 9, func(i int, req *fasthttp.Request) {
		keyed(gws[i%3].url+"/predict", "team-a")(i, req)
	})
	codes := count(reqs, 0, time.Hour)
	if codes[200]+codes[429] != 10_000 {
		t.Fatalf("answers %v: want only 200 and 429", codes)
	}
	within(t, fmt.Sprintf("admitted by three gateways in %v", run.Round(time.Millisecond)), codes[200], 20+100*run.Seconds(), 0.05)
	t.Logf("against the nominal 10 s: %d admitted, want 1020 ± 5%% when the run keeps its pace (it took %v)", codes[200], run.Round(time.Millisecond))
	for i, g := range gws {
		if got := metricValue(t, g, "sluice_ratelimit_redis_errors_total"); got != "0" {
			t.Errorf("gateway %d: %s Redis errors", i, got)
		}
	}
}

// Acceptance: Redis stopped, restarted, paused and resumed under load.
// No request fails because of the limiter; while Redis is stopped the
// local fallback (100/s / 2 replicas, burst 10) decides; a stopped Redis
// adds nothing to latency and a paused one at most redis.timeout to the
// one request a second that probes it; once Redis answers again, global
// limiting resumes within a few seconds.
func TestGlobalRateLimitThroughRedisOutages(t *testing.T) {
	if testing.Short() {
		t.Skip("a 10 s paced run")
	}
	redisAddr := testutil.RestartableAddr(t)
	srv := testutil.StartRedis(t, redisAddr)
	// 100 ms rather than the default 25 ms: a loaded test machine must not
	// turn Redis "down" in the phases where it is up.
	const redisTimeout = 100 * time.Millisecond
	g := startGateway(t, globalLimit(okBackend(t), redisAddr, redisTimeout.String(), "local"))

	// 500/s for 10 s: up [0, 2s), stopped [2s, 4s), restarted [4s, 6s),
	// paused [6s, 8s), resumed [8s, 10s).
	const second = time.Second
	var redisUpAfterRestart time.Duration
	outages := make(chan struct{})
	go func() {
		defer close(outages)
		start := time.Now()
		time.Sleep(2 * second)
		srv.Stop()
		time.Sleep(time.Until(start.Add(4 * second)))
		srv = testutil.StartRedis(t, redisAddr)
		for g.Redis().Down() && time.Since(start) < 6*second {
			time.Sleep(10 * time.Millisecond)
		}
		redisUpAfterRestart = time.Since(start) - 4*second
		time.Sleep(time.Until(start.Add(6 * second)))
		srv.Pause()
		time.Sleep(time.Until(start.Add(8 * second)))
		srv.Resume()
	}()
	reqs, _ := pace(t, 5000, 2*time.Millisecond, 8, keyed(g.url+"/predict", "team-a"))
	<-outages

	all := count(reqs, 0, time.Hour)
	if all[200]+all[429] != len(reqs) {
		t.Fatalf("answers %v: a request failed other than by its limit", all)
	}
	// Windows leave out 100 ms at each switch, in which the switch
	// happens and a fresh bucket (Redis's at the start, the fallback's at
	// the outage) spends its burst; after it, the rate alone admits.
	ms := time.Millisecond
	phase := func(from, to time.Duration) int { return count(reqs, from+100*ms, to)[200] }
	within(t, "admitted with Redis up, [0.1s, 2s)", phase(0, 2*second), 100*1.9, 0.1)
	within(t, "admitted by the local fallback while Redis is stopped, [2.1s, 4s)", phase(2*second, 4*second), 50*1.9, 0.15)
	if redisUpAfterRestart > 2*second || redisUpAfterRestart <= 0 {
		t.Errorf("global limiting resumed %v after Redis restarted, want within 2s", redisUpAfterRestart)
	} else {
		t.Logf("global limiting resumed %v after Redis restarted", redisUpAfterRestart.Round(ms))
	}
	within(t, "admitted with Redis resumed, [8.1s, 10s)", phase(8*second, 10*second), 100*1.9, 0.15)

	up, stopped, paused := p99(reqs, 0, 2*second), p99(reqs, 2*second, 4*second), p99(reqs, 6*second, 8*second)
	t.Logf("p99: Redis up %v, stopped %v, paused %v", up, stopped, paused)
	// A structural bound, not a timing budget: a request waits on Redis
	// for one timeout at most, never for a connect or pool timeout.
	for what, d := range map[string]time.Duration{"stopped": stopped, "paused": paused} {
		if d > up+redisTimeout+100*ms {
			t.Errorf("p99 with Redis %s %v, up %v: requests waited on Redis past redis.timeout", what, d, up)
		}
	}
	if got := metricValue(t, g, "sluice_ratelimit_redis_up"); got != "1" {
		t.Errorf("sluice_ratelimit_redis_up %s after Redis came back, want 1", got)
	}
	if got, _ := strconv.Atoi(metricValue(t, g, "sluice_ratelimit_redis_errors_total")); got < 2 {
		t.Errorf("sluice_ratelimit_redis_errors_total %d, want the outages counted", got)
	}
}
