package main

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

const wrkOutput = `Running 10s test @ http://127.0.0.1:18082/predict
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms    2.01ms  45.10ms   91.20%
    Req/Sec    21.55k     1.20k   24.10k    70.00%
  Latency Distribution
     50%  870.00us
     75%    1.40ms
     90%    3.10ms
     99%    1.02s
  428911 requests in 10.00s, 93.90MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 17
Requests/sec:  42886.40
Transfer/sec:      9.39MB
`

func TestParseWrk(t *testing.T) {
	got, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{RPS: 42886.40, Requests: 428911, P50ms: 0.87, P99ms: 1020, HasLat: true, Non2xx: 17, SockErrs: 10}
	if !near(got.RPS, want.RPS) || got.Requests != want.Requests || !near(got.P50ms, want.P50ms) ||
		!near(got.P99ms, want.P99ms) || got.HasLat != want.HasLat || got.Non2xx != want.Non2xx || got.SockErrs != want.SockErrs {
		t.Errorf("parseWrk = %+v, want %+v", got, want)
	}
}

func TestParseWrkWithoutErrorsOrLatency(t *testing.T) {
	out := `Running 2s test @ http://127.0.0.1:1/
  1 threads and 1 connections
  20000 requests in 2.00s, 4.38MB read
Requests/sec:   9999.50
`
	got, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if got.Requests != 20000 || !near(got.RPS, 9999.5) || got.HasLat || got.Non2xx != 0 || got.SockErrs != 0 {
		t.Errorf("parseWrk = %+v", got)
	}
}

func TestParseWrkRefusesATruncatedReport(t *testing.T) {
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Error("no error for a report without Requests/sec")
	}
	if _, err := parseWrk(strings.Replace(wrkOutput, "1.02s", "1.02x", 1)); err == nil {
		t.Error("no error for an unknown latency unit")
	}
}

func TestParseDurationMs(t *testing.T) {
	for in, want := range map[string]float64{
		"87.00us": 0.087, "1.23ms": 1.23, "2.00s": 2000, "1.50m": 90000, "1.00h": 3600000, "0.00us": 0,
	} {
		got, err := parseDurationMs(in)
		if err != nil || !near(got, want) {
			t.Errorf("parseDurationMs(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "12", "abcms", "1.0ns"} {
		if _, err := parseDurationMs(in); err == nil {
			t.Errorf("parseDurationMs(%q): no error", in)
		}
	}
}

func TestMedian(t *testing.T) {
	f := func(xs ...float64) []*float64 {
		var out []*float64
		for _, x := range xs {
			out = append(out, ptr(x))
		}
		return out
	}
	tests := []struct {
		name string
		in   []*float64
		want *float64
	}{
		{"none", nil, nil},
		{"only missing", []*float64{nil, nil}, nil},
		{"one", f(3), ptr(3.0)},
		{"odd, unsorted", f(5, 1, 3), ptr(3.0)},
		{"even: mean of the middle two", f(4, 1, 3, 10), ptr(3.5)},
		{"missing values left out", append(f(2, 8), nil, ptr(math.NaN())), ptr(5.0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := median(tt.in)
			if (got == nil) != (tt.want == nil) || (got != nil && !near(*got, *tt.want)) {
				t.Errorf("median = %v, want %v", show(got), show(tt.want))
			}
		})
	}
}

func TestRatioVsNginx(t *testing.T) {
	direct := &cell{Target: "direct", Conns: 1, RPS: 20000, P50ms: 0.070, P99ms: 0.2}
	nginx := &cell{Target: "nginx", Conns: 1, RPS: 10000, P50ms: 0.120, P99ms: 0.4, CPUPer10k: ptr(0.2)}
	sluice := &cell{Target: "sluice", Conns: 1, RPS: 12000, P50ms: 0.095, P99ms: 0.3, CPUPer10k: ptr(0.15)}

	r := vsNginx(sluice, nginx, direct)
	check(t, "throughput", r.Throughput, ptr(1.2))
	check(t, "cpu", r.CPU, ptr(0.75))
	check(t, "p99", r.P99, ptr(0.75))
	check(t, "hop", r.Hop, ptr(0.5)) // adds 25 us where nginx adds 50

	d := vsNginx(direct, nginx, direct)
	check(t, "direct cpu", d.CPU, nil) // no proxy
	check(t, "direct hop", d.Hop, nil)
	check(t, "direct throughput", d.Throughput, ptr(2.0))

	at64 := *sluice
	at64.Conns = 64
	check(t, "hop at 64 connections", vsNginx(&at64, nginx, direct).Hop, nil)
	check(t, "without nginx", vsNginx(sluice, nil, direct).Throughput, nil)
	check(t, "without direct", vsNginx(sluice, nginx, nil).Hop, nil)

	slowDirect := *direct
	slowDirect.P50ms = 0.120 // nginx adds nothing: no hop ratio
	check(t, "zero denominator", vsNginx(sluice, nginx, &slowDirect).Hop, nil)
}

func TestSummarizeTakesMediansOfPerRoundRatios(t *testing.T) {
	var cells []cell
	add := func(round int, target string, rps, p99 float64) {
		cells = append(cells, cell{Round: round, Backend: "trivial", Conns: 64, Target: target, RPS: rps, P99ms: p99})
	}
	// Round 3 is slow for everyone: the ratio stays, the figures move.
	for round, scale := range map[int]float64{1: 1, 2: 1.1, 3: 0.5} {
		add(round, "nginx", 10000*scale, 2)
		add(round, "haproxy", 12000*scale, 2)
		add(round, "sluice", 11000*scale, 2)
		add(round, "sluice-full", 9900*scale, 2)
		add(round, "sluice-cached", 22000*scale, 1)
		add(round, "sluice-shadow-fast", 11000*scale, 2.0)
		add(round, "sluice-shadow-slow", 11000*scale, 2.2)
	}
	add(1, "other-backend-is-ignored", 1, 1)
	cells[len(cells)-1].Backend = "model"

	g := summarize("trivial", 64, []string{"nginx", "haproxy", "sluice", "sluice-full", "sluice-cached", "sluice-shadow-fast", "sluice-shadow-slow"}, 3, cells)
	if len(g.Targets) != 7 {
		t.Fatalf("%d targets", len(g.Targets))
	}
	sl := g.Targets[2]
	if sl.Target != "sluice" || sl.Rounds != 3 || len(sl.VsNginxByRound) != 3 {
		t.Fatalf("sluice summary: %+v", sl)
	}
	check(t, "sluice median req/s", sl.Median.RPS, ptr(11000.0))
	check(t, "sluice throughput vs nginx", sl.VsNginx.Throughput, ptr(1.1))
	check(t, "nginx vs itself", g.Targets[0].VsNginx.Throughput, ptr(1.0))
	check(t, "cpu without figures", sl.VsNginx.CPU, nil)
	if g.Modes == nil {
		t.Fatal("no sluice mode ratios")
	}
	check(t, "full", g.Modes.Median.FullThroughput, ptr(0.9))
	check(t, "cached", g.Modes.Median.CachedThroughput, ptr(2.0))
	check(t, "shadow-slow p99", g.Modes.Median.ShadowSlowP99, ptr(1.1))
	check(t, "shadow-slow p99 vs shadow-fast", g.Modes.Median.ShadowSlowVsFastP99, ptr(1.1))
	check(t, "vs haproxy", g.Modes.Median.VsHAProxy, ptr(11.0/12))
	if len(g.Modes.ByRound) != 3 {
		t.Errorf("%d rounds of mode ratios", len(g.Modes.ByRound))
	}
}

func TestRotate(t *testing.T) {
	targets := []string{"a", "b", "c"}
	for n, want := range [][]string{{"a", "b", "c"}, {"b", "c", "a"}, {"c", "a", "b"}, {"a", "b", "c"}} {
		if got := rotate(targets, n); !slices.Equal(got, want) {
			t.Errorf("rotate(%d) = %v, want %v", n, got, want)
		}
	}
	if !slices.Equal(targets, []string{"a", "b", "c"}) {
		t.Error("rotate changed its input")
	}
}

func TestPickNamesKeepsTableOrder(t *testing.T) {
	got, err := pickNames("BENCH_TARGETS", "sluice nginx sluice", allTargets)
	if err != nil || !slices.Equal(got, []string{"nginx", "sluice"}) {
		t.Errorf("pickNames = %v, %v", got, err)
	}
	if got, _ := pickNames("BENCH_TARGETS", "", allTargets); !slices.Equal(got, allTargets) {
		t.Errorf("empty list picks %v", got)
	}
	if _, err := pickNames("BENCH_TARGETS", "envoy", allTargets); err == nil {
		t.Error("no error for an unknown target")
	}
}

func TestWholeSeconds(t *testing.T) {
	if d, err := wholeSeconds("X", "0", 0); err != nil || d != 0 {
		t.Errorf("0 = %v, %v", d, err)
	}
	if d, err := wholeSeconds("X", "1m", 1); err != nil || d != time.Minute {
		t.Errorf("1m = %v, %v", d, err)
	}
	for _, bad := range []string{"1.5s", "0", "500ms", "ten"} {
		if _, err := wholeSeconds("X", bad, 1); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestFillCPU(t *testing.T) {
	start := time.Unix(1000, 0)
	before := snapshot{at: start, machine: machineTicks{busy: 1000, steal: 50}, proxy: 100, backend: 200}
	after := snapshot{at: start.Add(10 * time.Second), machine: machineTicks{busy: 2900, steal: 150}, proxy: 700, backend: 900, nproxy: 3}
	c := cell{Requests: 300000, WrkCPUs: 5}
	fillCPU(&c, before, after, 100, 2, true)
	// proxy 6 s, backend 7 s, wrk 5 s of 19 s busy: 1 s other of 20 s.
	check(t, "proxy cpu", c.ProxyCPUs, ptr(6.0))
	check(t, "cpu per 10k", c.CPUPer10k, ptr(0.2))
	check(t, "other %", &c.OtherPct, ptr(5.0))
	check(t, "steal %", &c.StealPct, ptr(5.0))
	if c.ProxyProcs != 3 {
		t.Errorf("proxy processes %d", c.ProxyProcs)
	}

	d := cell{Requests: 300000, WrkCPUs: 5}
	fillCPU(&d, before, after, 100, 2, false)
	check(t, "direct cpu per 10k", d.CPUPer10k, nil)
}

func TestParseProcStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "4242 (nginx: worker (x)) S 4240 4240 4240 0 -1 4194624 120 0 0 0 37 12 0 0 20 0 1 0 900 0 0\n"
	st, err := parseProcStat(line)
	if err != nil || st.ppid != 4240 || st.ticks != 49 {
		t.Errorf("parseProcStat = %+v, %v", st, err)
	}
	m, err := parseMachineTicks("cpu  100 2 30 5000 7 1 4 9 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
	if err != nil || m.busy != 137 || m.steal != 9 {
		t.Errorf("parseMachineTicks = %+v, %v", m, err)
	}
	if got := statusKiB("Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t 1024 kB\n", "VmHWM:"); got != 2048 {
		t.Errorf("VmHWM = %d", got)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func check(t *testing.T, what string, got, want *float64) {
	t.Helper()
	if (got == nil) != (want == nil) || (got != nil && !near(*got, *want)) {
		t.Errorf("%s = %s, want %s", what, show(got), show(want))
	}
}

func show(v *float64) string { return num(v, "%g") }

func TestFeatureCounters(t *testing.T) {
	metrics := `# HELP sluice_requests_total Client requests answered.
# TYPE sluice_requests_total counter
sluice_requests_total{code="200",route="bench",variant="a"} 900
sluice_requests_total{code="200",route="bench",variant="b"} 100
sluice_ratelimit_decisions_total{decision="allowed",route="bench"} 1000
sluice_shadow_requests_total{outcome="matched",route="bench"} 95
sluice_shadow_requests_total{outcome="dropped",route="bench"} 5
sluice_upstream_requests_total{backend="127.0.0.1:1",outcome="success",pool="bench"} 1095
go_goroutines 12
go_memstats_alloc_bytes_total 2.5e+06
go_gc_duration_seconds_count 4
`
	c := parseCounters(metrics)
	if len(c) != 7 {
		t.Fatalf("kept %d series: %v", len(c), c)
	}
	if got := sumCounters(c, "sluice_requests_total", "variant", "b"); got != 100 {
		t.Errorf("variant b = %v", got)
	}
	summary, warnings := featureChecks("sluice-full", c)
	if len(warnings) != 0 || summary != "variant b 10.0%, rate-limited 0, mirrored 10.0% (dropped 5.0% of those)" {
		t.Errorf("sluice-full: %q, %v", summary, warnings)
	}

	summary, _ = featureChecks("sluice-shadow-slow", c)
	if summary != "mirrored 10.0% (dropped 5.0% of those), 2500 bytes allocated per request, 4 collections" {
		t.Errorf("sluice-shadow-slow: %q", summary)
	}

	c["sluice_ratelimit_decisions_total{decision=\"limited\",route=\"bench\"}"] = 3
	if _, warnings := featureChecks("sluice-full", c); len(warnings) != 1 {
		t.Errorf("a refused request gave warnings %v", warnings)
	}
	cached := parseCounters(`sluice_requests_total{code="200",route="bench",variant="bench"} 1000
sluice_cache_requests_total{result="hit",route="bench"} 900
sluice_cache_requests_total{result="miss",route="bench"} 100
`)
	if _, warnings := featureChecks("sluice-cached", cached); len(warnings) != 1 {
		t.Errorf("90%% hits gave warnings %v", warnings)
	}
}
