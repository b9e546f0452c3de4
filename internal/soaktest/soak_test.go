package soaktest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// Knobs, from the environment: SOAK_DURATION (default 60s; `make soak`
// sets 5m), SOAK_RATE (requests per second, default 300), SOAK_REPORT (a
// file the report is also written to).
func knobs(t *testing.T) (duration time.Duration, rate float64) {
	duration, rate = 60*time.Second, 300
	if s := os.Getenv("SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 20*time.Second {
			t.Fatalf("SOAK_DURATION=%q: want a duration of at least 20s", s)
		}
		duration = d
	}
	if s := os.Getenv("SOAK_RATE"); s != "" {
		r, err := strconv.ParseFloat(s, 64)
		if err != nil || r <= 0 {
			t.Fatalf("SOAK_RATE=%q: want a positive number", s)
		}
		rate = r
	}
	return duration, rate
}

// The bounds the soak asserts, after the warm-up (a fifth of the run, at
// least 10 s: the heap, the caches, the connection pools and the
// rate-limit key tables fill up first). Steady state is flat: the slopes
// are least-squares fits over samples every 2 s, and 5 MB/min of resident
// memory is well above the noise of a 300 req/s process with capped
// caches (max_bytes 256KiB, max_keys 2000), while a leak of one
// goroutine or a few KB per request (18,000 requests a minute) would
// show as far more.
const (
	maxRSSSlopeMBPerMin         = 5.0
	maxGoroutineSlopePerMin     = 20.0
	sampleEvery                 = 2 * time.Second
	reloadEvery                 = 2500 * time.Millisecond
	killWindow                  = 2 * time.Second // a request in flight at a kill ends within this after it
	faultCycle                  = 20 * time.Second
	firstFault                  = 4 * time.Second
	poolTimeout                 = "500ms"
	routeTimeout                = 5 * time.Second
	allowedFailuresSlackPerKill = 1 // in_flight is read just before the kill: one more may start between
)

// proc is a child process whose output goes to a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func start(t *testing.T, dir, name string, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() { p.signal(syscall.SIGCONT); p.kill() })
	return p
}

func (p *proc) signal(s syscall.Signal) { _ = p.cmd.Process.Signal(s) }

// kill sends SIGKILL and waits for the exit.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM (a worker drains) and waits, SIGKILL after 5 s.
func (p *proc) stop() {
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.kill()
	}
}

func waitHTTP(t *testing.T, what, url string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			t.Fatalf("%s exited during startup:\n%s", what, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %s within 15s", what, url)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stack is everything the soak runs, and where.
type stack struct {
	t                     *testing.T
	dir, bin, models      string
	mu                    sync.Mutex // guards workers (the fault schedule swaps them)
	workers               map[string]*proc
	addrs                 map[string]string
	gw                    *proc
	listen, admin, config string
	redis                 *testutil.RedisServer
	redisAddr             string
}

// The workers: pools a (A1, A2) and b (B1, B2) are the split's variants,
// f (F1) the fallback, s (S1) the shadow.
var workerModels = map[string]string{"A1": "iris-v1", "A2": "iris-v1", "B1": "iris-v2", "B2": "iris-v2", "F1": "iris-v1", "S1": "iris-v3"}

func (s *stack) startWorker(name string, extra ...string) {
	args := append([]string{"-model", filepath.Join(s.models, workerModels[name]+".json"), "-listen", s.addrs[name]}, extra...)
	p := start(s.t, s.dir, "worker-"+name, filepath.Join(s.bin, "modelworker"), args...)
	waitHTTP(s.t, "worker "+name, "http://"+s.addrs[name]+"/health", p)
	s.mu.Lock()
	s.workers[name] = p
	s.mu.Unlock()
}

func (s *stack) worker(name string) *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.workers[name]
}

// configYAML is the gateway config: version v (0 or 1) of the valid
// changes the reloads alternate between (split weights and the shadow's
// share).
func (s *stack) configYAML(v int) string {
	weightA, shadowPct := []int{50, 60}[v], []int{10, 20}[v]
	health := `{path: /health, interval: 200ms, timeout: 150ms, unhealthy_after: 2, healthy_after: 2}`
	pool := func(backends ...string) string {
		var addrs []string
		for _, b := range backends {
			addrs = append(addrs, s.addrs[b])
		}
		return fmt.Sprintf(`{backends: [%s], max_conns: 64, timeout: %s, health: %s,
      outlier: {consecutive_failures: 3, eject_for: 2s}, breaker: {consecutive_failures: 5, open_for: 2s}}`,
			strings.Join(addrs, ", "), poolTimeout, health)
	}
	return fmt.Sprintf(`# soak config, version %d
server: {listen: %q, drain_timeout: 5s}
admin: {listen: %q, pprof: true}
redis: {addr: %q, timeout: 25ms}
pools:
  a: %s
  b: %s
  f: %s
  s: %s
routes:
  - name: soak
    match: {path_prefix: /v1/models/iris, methods: [POST]}
    strip_prefix: /v1/models/iris
    split:
      sticky: header:X-User-Id
      salt: soak
      variants: [{name: a, pool: a, weight: %d}, {name: b, pool: b, weight: %d}]
    timeout: %s
    fallback: f
    retries: {attempts: 3, on: [connect_error, bad_response, timeout, no_free_conn, http_5xx], budget_percent: 50, non_idempotent: true}
    max_in_flight: 512
    rate_limit: {key: header:X-API-Key, rate: 1000/s, burst: 1000, scope: global, on_redis_error: local, max_keys: 2000}
    cache: {ttl: 1m, max_bytes: 256KiB}
    shadow: {pool: s, percent: %d, max_in_flight: 16, timeout: %s}
`, v, s.listen, s.admin, s.redisAddr, pool("A1", "A2"), pool("B1", "B2"), pool("F1"), pool("S1"),
		weightA, 100-weightA, routeTimeout, shadowPct, poolTimeout)
}

// invalidYAML is the k-th kind of broken file: a YAML syntax error, an
// unknown key, a route naming a pool that does not exist, an empty file.
func (s *stack) invalidYAML(k int) string {
	good := s.configYAML(0)
	switch k % 4 {
	case 0:
		return good + "routes: [{name: broken\n"
	case 1:
		return strings.Replace(good, "max_in_flight: 512", "max_in_flite: 512", 1)
	case 2:
		return strings.Replace(good, "fallback: f", "fallback: nosuchpool", 1)
	default:
		return ""
	}
}

// admin GETs an admin path.
func (s *stack) adminGet(path string) ([]byte, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + s.admin + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// metric sums the samples of a metric whose labels contain match.
func (s *stack) metric(name, match string) (float64, bool) {
	b, err := s.adminGet("/metrics")
	if err != nil {
		return 0, false
	}
	var sum float64
	found := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') || !strings.Contains(rest, match) {
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	return sum, found
}

// generation is /admin/config's generation and last_error.
func (s *stack) generation() (uint64, string) {
	b, err := s.adminGet("/admin/config")
	if err != nil {
		return 0, err.Error()
	}
	var c struct {
		Generation uint64 `json:"generation"`
		LastError  any    `json:"last_error"`
	}
	_ = json.Unmarshal(b, &c)
	le := ""
	if c.LastError != nil {
		le = fmt.Sprint(c.LastError)
	}
	return c.Generation, le
}

// inFlight is the gateway's in_flight count for the backend at addr.
func (s *stack) inFlight(addr string) int64 {
	b, err := s.adminGet("/admin/pools")
	if err != nil {
		return 0
	}
	var v struct {
		Pools []struct {
			Backends []struct {
				Addr     string `json:"addr"`
				InFlight int64  `json:"in_flight"`
			} `json:"backends"`
		} `json:"pools"`
	}
	_ = json.Unmarshal(b, &v)
	var n int64
	for _, p := range v.Pools {
		for _, be := range p.Backends {
			if be.Addr == addr {
				n += be.InFlight
			}
		}
	}
	return n
}

func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			kb, _ := strconv.ParseFloat(f[0], 64)
			return kb / 1024
		}
	}
	return 0
}

// slopePerMin is the least-squares slope of ys over xs (seconds), per minute.
func slopePerMin(xs, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return 60 * (n*sxy - sx*sy) / d
}

// kill is one worker stopped under load.
type kill struct {
	at       time.Time
	worker   string
	how      string
	inFlight int64
}

// result tallies the load.
type result struct {
	mu       sync.Mutex
	sent     atomic.Int64
	byCause  map[string]int64
	failures []failure
}

type failure struct {
	sent, done time.Time
	cause      string
}

func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: runs the binaries under load for a minute")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed: `make test` installs it (Debian package redis-server)")
	}
	duration, rate := knobs(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, dir: t.TempDir(), bin: testutil.Build(t, "gateway", "modelworker"), models: filepath.Join(root, "models"),
		workers: map[string]*proc{}, addrs: map[string]string{}}

	s.redisAddr = testutil.RestartableAddr(t)
	s.redis = testutil.StartRedis(t, s.redisAddr)
	for _, name := range slices.Sorted(maps.Keys(workerModels)) {
		s.addrs[name] = testutil.RestartableAddr(t)
		s.startWorker(name)
	}
	s.listen, s.admin = testutil.ClosedAddr(t), testutil.ClosedAddr(t)
	s.config = testutil.WriteFile(t, s.dir, "gateway.yaml", s.configYAML(0))
	s.gw = start(t, s.dir, "gateway", filepath.Join(s.bin, "gateway"), "-config", s.config, "-log-level", "warn")
	waitHTTP(t, "gateway", "http://"+s.admin+"/readyz", s.gw)
	t.Logf("stack up in %s (gateway pid %d, redis %s)", s.dir, s.gw.cmd.Process.Pid, s.redisAddr)

	res := &result{byCause: map[string]int64{}}
	begin := time.Now()
	end := begin.Add(duration)
	var wg sync.WaitGroup
	stopSide := make(chan struct{})

	// Samples of the gateway's RSS and goroutines.
	type sample struct{ at, rss, goroutines float64 }
	var samples []sample
	wg.Go(func() {
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		for {
			select {
			case <-stopSide:
				return
			case now := <-tick.C:
				g, ok := s.metric("go_goroutines", "")
				if !ok {
					continue
				}
				samples = append(samples, sample{now.Sub(begin).Seconds(), rssMB(s.gw.cmd.Process.Pid), g})
			}
		}
	})

	// The config rewrites: valid and invalid alternately, by rename and in
	// place, checking the generation after each.
	type write struct {
		valid, inPlace bool
		before, after  uint64
		lastError      string
		ok             bool
	}
	var writes []write
	wg.Go(func() {
		for k := 0; ; k++ {
			select {
			case <-stopSide:
				return
			case <-time.After(reloadEvery):
			}
			if time.Until(end) < reloadEvery {
				return
			}
			w := write{valid: k%2 == 0, inPlace: (k/2)%2 == 1}
			data := s.invalidYAML(k / 2)
			if w.valid {
				data = s.configYAML((k/2 + 1) % 2)
			}
			reloads := func() float64 { v, _ := s.metric("sluice_config_reloads_total", ""); return v }
			r0 := reloads()
			w.before, _ = s.generation()
			var err error
			if w.inPlace {
				err = os.WriteFile(s.config, []byte(data), 0o644) // O_TRUNC, then write
			} else {
				tmp := s.config + ".tmp"
				if err = os.WriteFile(tmp, []byte(data), 0o644); err == nil {
					err = os.Rename(tmp, s.config)
				}
			}
			if err != nil {
				t.Errorf("write config: %v", err)
				return
			}
			deadline := time.Now().Add(3 * time.Second)
			for reloads() == r0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond) // a second event of an in-place write
			w.after, w.lastError = s.generation()
			if w.valid {
				w.ok = w.after > w.before && w.lastError == ""
			} else {
				w.ok = w.after == w.before && w.lastError != ""
			}
			writes = append(writes, w)
		}
	})

	// The fault schedule, every faultCycle from firstFault.
	var kills []kill
	var faultLog []string
	note := func(format string, args ...any) {
		faultLog = append(faultLog, fmt.Sprintf("%6.1fs ", time.Since(begin).Seconds())+fmt.Sprintf(format, args...))
	}
	wg.Go(func() {
		type step struct {
			at time.Duration
			do func()
		}
		killWorker := func(name, how string, stop func(*proc)) {
			n := s.inFlight(s.addrs[name])
			kills = append(kills, kill{at: time.Now(), worker: name, how: how, inFlight: n})
			stop(s.worker(name))
			note("%s %s (%d in flight on it)", how, name, n)
		}
		steps := []step{
			{0, func() { killWorker("A1", "SIGKILL", (*proc).kill) }},
			{2 * time.Second, func() { s.startWorker("A1"); note("restarted A1") }},
			{4 * time.Second, func() { s.worker("B1").signal(syscall.SIGSTOP); note("SIGSTOP B1 (hangs)") }},
			{7 * time.Second, func() { s.worker("B1").signal(syscall.SIGCONT); note("SIGCONT B1") }},
			{8 * time.Second, func() {
				killWorker("A2", "SIGTERM", (*proc).stop)
				s.startWorker("A2", "-fail-rate", "1", "-fail-status", "500")
				note("A2 restarted with -fail-rate 1 -fail-status 500")
			}},
			{12 * time.Second, func() {
				killWorker("A2", "SIGTERM", (*proc).stop)
				s.startWorker("A2")
				note("A2 restarted healthy")
			}},
			{13 * time.Second, func() { s.redis.Stop(); note("redis killed") }},
			{16 * time.Second, func() { s.redis = testutil.StartRedis(t, s.redisAddr); note("redis started again (empty)") }},
			{17 * time.Second, func() { s.redis.Pause(); note("redis paused (SIGSTOP)") }},
			{18 * time.Second, func() { s.redis.Resume(); note("redis resumed") }},
		}
		for cycle := begin.Add(firstFault); cycle.Add(faultCycle).Before(end.Add(time.Second)); cycle = cycle.Add(faultCycle) {
			for _, st := range steps {
				select {
				case <-stopSide:
					return
				case <-time.After(time.Until(cycle.Add(st.at))):
				}
				st.do()
			}
		}
	})

	// The load: rate requests a second, each sent at begin + i/rate.
	// X-User-Id from 500 users; 30% of the bodies from 8 fixed inputs
	// (cache hits), the rest distinct; 20% of the requests with an
	// X-API-Key never seen before (a flood of distinct keys), the rest
	// with one of 4 team keys.
	client := &fasthttp.Client{MaxConnsPerHost: 2048, ReadTimeout: 10 * time.Second, WriteTimeout: 5 * time.Second,
		MaxIdemponentCallAttempts: 1, NoDefaultUserAgentHeader: true}
	url := "http://" + s.listen + "/v1/models/iris/predict"
	sem := make(chan struct{}, 1024)
	var load sync.WaitGroup
	for i := 0; ; i++ {
		at := begin.Add(time.Duration(float64(i) * float64(time.Second) / rate))
		if !at.Before(end) {
			break
		}
		if d := time.Until(at); d > time.Millisecond {
			time.Sleep(d)
		}
		sem <- struct{}{}
		res.sent.Add(1)
		load.Go(func() {
			defer func() { <-sem }()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(url)
			req.Header.SetMethod("POST")
			req.Header.SetContentType("application/json")
			req.Header.Set("X-User-Id", "user-"+strconv.Itoa(i%500))
			if i%5 == 0 {
				req.Header.Set("X-API-Key", "flood-"+strconv.Itoa(i))
			} else {
				req.Header.Set("X-API-Key", "team-"+strconv.Itoa(i%4))
			}
			if i%10 < 3 {
				fixed := i % 8
				req.SetBodyString(fmt.Sprintf(`{"input":[5.%d,3.5,1.4,0.2]}`, fixed))
			} else {
				req.SetBodyString(fmt.Sprintf(`{"input":[%.3f,%.3f,%.3f,%.3f]}`,
					4+4*rand.Float64(), 2+2*rand.Float64(), 1+6*rand.Float64(), 2.5*rand.Float64()))
			}
			sent := time.Now()
			cause := "200"
			if err := client.Do(req, resp); err != nil {
				cause = "transport: " + transportCause(err)
			} else if resp.StatusCode() != 200 {
				cause = strconv.Itoa(resp.StatusCode())
			}
			res.mu.Lock()
			res.byCause[cause]++
			if cause != "200" {
				res.failures = append(res.failures, failure{sent: sent, done: time.Now(), cause: cause})
			}
			res.mu.Unlock()
		})
	}
	load.Wait()
	close(stopSide)
	wg.Wait()
	elapsed := time.Since(begin)

	// The gateway's goroutines by stack, for a report of what grew.
	goroutineDump, _ := s.adminGet("/debug/pprof/goroutine?debug=1")
	_ = os.WriteFile(filepath.Join(s.dir, "goroutines.txt"), goroutineDump, 0o644)

	// The reload counts, then a graceful stop of the gateway.
	reloadsOK, _ := s.metric("sluice_config_reloads_total", `result="success"`)
	reloadsFailed, _ := s.metric("sluice_config_reloads_total", `result="failure"`)
	cacheHits, _ := s.metric("sluice_cache_requests_total", `result="hit"`)
	shadowed, _ := s.metric("sluice_shadow_requests_total", "")
	redisErrors, _ := s.metric("sluice_ratelimit_redis_errors_total", "")
	s.gw.signal(syscall.SIGTERM)
	gwExit := "exit 0 within 10s of SIGTERM"
	select {
	case <-s.gw.done:
		if code := s.gw.cmd.ProcessState.ExitCode(); code != 0 {
			gwExit = fmt.Sprintf("exit status %d after SIGTERM", code)
			t.Errorf("gateway: %s", gwExit)
		}
	case <-time.After(10 * time.Second):
		gwExit = "did not exit within 10s of SIGTERM"
		t.Errorf("gateway %s", gwExit)
	}

	// Panics in any log.
	var panics []string
	logs, _ := filepath.Glob(filepath.Join(s.dir, "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.Contains(line, "panic:") || strings.Contains(line, "fatal error") || strings.Contains(line, "DATA RACE") {
				panics = append(panics, filepath.Base(l)+": "+line)
			}
		}
	}

	// Failures: those of a request in flight on a worker when it was
	// stopped (sent before the stop, ended within killWindow after it) are
	// allowed, up to the in-flight count read just before each stop plus
	// one; any other failure is not.
	var allowedBound int64
	for _, k := range kills {
		allowedBound += k.inFlight + allowedFailuresSlackPerKill
	}
	var attributed, unattributed []failure
	for _, f := range res.failures {
		inKill := false
		for _, k := range kills {
			if f.sent.Before(k.at) && f.done.After(k.at) && f.done.Before(k.at.Add(killWindow)) {
				inKill = true
			}
		}
		if inKill {
			attributed = append(attributed, f)
		} else {
			unattributed = append(unattributed, f)
		}
	}

	// Slopes after the warm-up.
	warm := max(10*time.Second, duration/5).Seconds()
	var xs, rss, gor []float64
	for _, sm := range samples {
		if sm.at >= warm {
			xs, rss, gor = append(xs, sm.at), append(rss, sm.rss), append(gor, sm.goroutines)
		}
	}
	rssSlope, gorSlope := slopePerMin(xs, rss), slopePerMin(xs, gor)

	// The report.
	var r strings.Builder
	fmt.Fprintf(&r, "SOAK REPORT: %v at %g req/s (ran %v)\n", duration, rate, elapsed.Round(time.Millisecond))
	var answered int64
	for c, n := range res.byCause {
		if !strings.HasPrefix(c, "transport") {
			answered += n
		}
	}
	fmt.Fprintf(&r, "requests   sent %d, answered %d, 200 %d, failed %d\n", res.sent.Load(), answered, res.byCause["200"], len(res.failures))
	for _, c := range slices.Sorted(maps.Keys(res.byCause)) {
		fmt.Fprintf(&r, "  %-28s %d\n", c, res.byCause[c])
	}
	fmt.Fprintf(&r, "failures   in flight on a stopped worker %d (allowed at most %d = sum of in_flight at each stop + %d per stop), other %d\n",
		len(attributed), allowedBound, allowedFailuresSlackPerKill, len(unattributed))
	for i, f := range unattributed {
		if i == 10 {
			fmt.Fprintf(&r, "  ... %d more\n", len(unattributed)-10)
			break
		}
		fmt.Fprintf(&r, "  other failure: sent %.3fs, ended %.3fs: %s\n", f.sent.Sub(begin).Seconds(), f.done.Sub(begin).Seconds(), f.cause)
	}
	fmt.Fprintf(&r, "faults\n")
	for _, l := range faultLog {
		fmt.Fprintf(&r, "  %s\n", l)
	}
	var validW, invalidW, badW int
	for _, w := range writes {
		if w.valid {
			validW++
		} else {
			invalidW++
		}
		if !w.ok {
			badW++
			fmt.Fprintf(&r, "  config write valid=%v in_place=%v: generation %d -> %d, last_error %q: WRONG\n", w.valid, w.inPlace, w.before, w.after, w.lastError)
		}
	}
	fmt.Fprintf(&r, "config     %d writes (%d valid, %d invalid; by rename and in place); reloads accepted %.0f, rejected %.0f; generation advanced on every valid write and on no invalid one: %v\n",
		len(writes), validW, invalidW, reloadsOK, reloadsFailed, badW == 0)
	fmt.Fprintf(&r, "traffic    cache hits %.0f, shadow copies %.0f, redis round trips failed %.0f\n", cacheHits, shadowed, redisErrors)
	fmt.Fprintf(&r, "gateway    samples every %v (slopes from %.0fs on):\n", sampleEvery, warm)
	for _, sm := range samples {
		fmt.Fprintf(&r, "  %6.1fs  rss %6.1f MB  goroutines %4.0f\n", sm.at, sm.rss, sm.goroutines)
	}
	fmt.Fprintf(&r, "slopes     rss %+.2f MB/min (bound %v), goroutines %+.1f /min (bound %v)\n", rssSlope, maxRSSSlopeMBPerMin, gorSlope, maxGoroutineSlopePerMin)
	if gorSlope > maxGoroutineSlopePerMin {
		fmt.Fprintf(&r, "goroutines at the end, by stack (the largest groups):\n")
		for _, blk := range topStacks(string(goroutineDump), 6) {
			fmt.Fprintf(&r, "  %s\n", strings.ReplaceAll(blk, "\n", "\n  "))
		}
	}
	fmt.Fprintf(&r, "panics     %d\n", len(panics))
	for _, p := range panics {
		fmt.Fprintf(&r, "  %s\n", p)
	}
	fmt.Fprintf(&r, "shutdown   %s\n", gwExit)
	t.Log("\n" + r.String())
	if path := os.Getenv("SOAK_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(r.String()), 0o644); err != nil {
			t.Errorf("SOAK_REPORT: %v", err)
		}
	}

	// The acceptance.
	if len(unattributed) > 0 {
		t.Errorf("%d requests failed that were not in flight on a stopped worker", len(unattributed))
	}
	if int64(len(attributed)) > allowedBound {
		t.Errorf("%d requests in flight on stopped workers failed, more than the %d allowed", len(attributed), allowedBound)
	}
	if len(panics) > 0 {
		t.Errorf("%d panic lines in the logs", len(panics))
	}
	if len(xs) < 5 {
		t.Errorf("only %d samples after the warm-up", len(xs))
	}
	// A slope needs two minutes past the warm-up to tell a leak from the
	// steps of the first fault cycles (the gateway keeps one goroutine per
	// client connection, and a fault raises the peak concurrency once; the
	// 5-minute soak shows them level off). Shorter runs bound the growth
	// after the warm-up instead: 64 goroutines, 16 MB.
	if len(xs) >= 5 && xs[len(xs)-1]-xs[0] >= 120 {
		if rssSlope > maxRSSSlopeMBPerMin {
			t.Errorf("gateway RSS grows %.2f MB/min, bound %v", rssSlope, maxRSSSlopeMBPerMin)
		}
		if gorSlope > maxGoroutineSlopePerMin {
			t.Errorf("gateway goroutines grow %.1f /min, bound %v", gorSlope, maxGoroutineSlopePerMin)
		}
	} else if len(xs) >= 2 {
		if d := rss[len(rss)-1] - rss[0]; d > 16 {
			t.Errorf("gateway RSS grew %.1f MB after the warm-up, bound 16", d)
		}
		if d := gor[len(gor)-1] - gor[0]; d > 64 {
			t.Errorf("gateway goroutines grew by %.0f after the warm-up, bound 64", d)
		}
	}
	if badW > 0 || validW == 0 || invalidW == 0 {
		t.Errorf("config writes: %d valid, %d invalid, %d with the wrong generation or last_error", validW, invalidW, badW)
	}
	if float64(invalidW) > reloadsFailed || float64(validW) > reloadsOK {
		t.Errorf("reloads accepted %.0f (want at least %d), rejected %.0f (want at least %d)", reloadsOK, validW, reloadsFailed, invalidW)
	}
	if cacheHits == 0 || shadowed == 0 {
		t.Errorf("the stack did not exercise its cache (%v hits) or shadow (%v copies)", cacheHits, shadowed)
	}
}

// transportCause names a client error briefly.
func transportCause(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "timeout"):
		return "timeout"
	case strings.Contains(msg, "refused"):
		return "connection refused"
	case strings.Contains(msg, "reset"), strings.Contains(msg, "closed"), strings.Contains(msg, "EOF"):
		return "connection closed"
	}
	return msg
}

// topStacks is the n largest groups of a debug=1 goroutine profile, each
// cut to its count and first frames.
func topStacks(dump string, n int) []string {
	type group struct {
		count int
		text  string
	}
	var groups []group
	for _, blk := range strings.Split(dump, "\n\n") {
		lines := strings.Split(strings.TrimSpace(blk), "\n")
		if len(lines) == 0 {
			continue
		}
		head := strings.Fields(lines[0])
		if len(head) < 1 {
			continue
		}
		c, err := strconv.Atoi(head[0])
		if err != nil {
			continue
		}
		var frames []string
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, "#") && len(frames) < 6 {
				frames = append(frames, strings.Join(strings.Fields(l)[2:3], ""))
			}
		}
		groups = append(groups, group{c, fmt.Sprintf("%d x %s", c, strings.Join(frames, " <- "))})
	}
	slices.SortFunc(groups, func(a, b group) int { return b.count - a.count })
	var out []string
	for i := 0; i < len(groups) && i < n; i++ {
		out = append(out, groups[i].text)
	}
	return out
}
