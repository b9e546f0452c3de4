package experiments

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"gonum.org/v1/gonum/stat/distuv"
)

// fakeClock returns a registry whose clock the test moves.
func fakeClock() (*Registry, *time.Time) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := NewRegistry()
	r.now = func() time.Time { return now }
	return r, &now
}

func TestExperimentSurvivesReloadWithSameIdentity(t *testing.T) {
	r, _ := fakeClock()
	e := r.Experiment("iris", "salt-1|control,treatment", []string{"control", "treatment"})
	e.Variant(1).Record(5*time.Millisecond, false)
	again := r.Experiment("iris", "salt-1|control,treatment", []string{"control", "treatment"})
	if again != e {
		t.Fatal("same identity and order: want the same experiment")
	}
	if got := again.Stats()[1].Latency.N; got != 1 {
		t.Fatalf("requests after reload = %d, want 1", got)
	}
}

func TestIdentityChangeStartsOver(t *testing.T) {
	r, now := fakeClock()
	names := []string{"control", "treatment"}
	e := r.Experiment("iris", "salt-1|control,treatment", names)
	e.Variant(0).Record(time.Millisecond, true)
	if err := e.AddOutcome(0, "click", 1); err != nil {
		t.Fatal(err)
	}
	started := e.StartedAt()

	*now = now.Add(time.Hour)
	fresh := r.Experiment("iris", "salt-2|control,treatment", names)
	if fresh == e {
		t.Fatal("new identity: want a new experiment")
	}
	st := fresh.Stats()
	if st[0].Latency.N != 0 || st[0].Errors != 0 || len(st[0].Outcomes) != 0 {
		t.Fatalf("new identity: stats %+v, want zero", st[0])
	}
	if !fresh.StartedAt().Equal(started.Add(time.Hour)) {
		t.Fatalf("started_at %v, want the reload time", fresh.StartedAt())
	}
	// The old experiment is unreachable but still safe to record into (a
	// request in flight during the reload).
	e.Variant(0).Record(time.Millisecond, false)
	if got := r.Report()[0].Variants[0].Requests; got != 0 {
		t.Fatalf("report after reset counts %d requests, want 0", got)
	}
}

// Names are part of what the experiment means: new names under an unchanged
// identity string (a caller's mistake) still start over rather than misfile.
func TestVariantNamesChangeStartsOver(t *testing.T) {
	r, _ := fakeClock()
	e := r.Experiment("iris", "id", []string{"a", "b"})
	e.Variant(0).Record(time.Millisecond, false)
	fresh := r.Experiment("iris", "id", []string{"a", "c"})
	if fresh == e || fresh.Stats()[0].Latency.N != 0 {
		t.Fatal("changed names: want a fresh experiment")
	}
}

// Reordering variants keeps the identity (the caller sorts the names) and so
// the numbers; the baseline becomes the new first variant.
func TestReorderKeepsStateAndMovesBaseline(t *testing.T) {
	r, _ := fakeClock()
	e := r.Experiment("iris", "id", []string{"control", "treatment"})
	e.Variant(0).Record(10*time.Millisecond, false)
	e.Variant(1).Record(20*time.Millisecond, false)
	swapped := r.Experiment("iris", "id", []string{"treatment", "control"})
	if swapped == e {
		t.Fatal("reordered: want a new view (the old one keeps its indices for requests in flight)")
	}
	if e.Variant(0).Name() != "control" || swapped.Variant(0).Name() != "treatment" {
		t.Fatal("each view keeps its own order")
	}
	if swapped.Variant(1) != e.Variant(0) {
		t.Fatal("reordered views share the variants' state")
	}
	rep := r.Report()[0]
	if rep.Variants[0].Name != "treatment" || !rep.Variants[0].Baseline || rep.Variants[1].Comparison.Baseline != "treatment" {
		t.Fatalf("baseline %q, want treatment", rep.Variants[0].Name)
	}
	if rep.Variants[0].Requests != 1 || rep.Variants[1].Requests != 1 {
		t.Fatal("reorder lost requests")
	}
}

func TestRetainDropsRemovedRoutes(t *testing.T) {
	r, _ := fakeClock()
	for _, route := range []string{"a", "b", "c"} {
		r.Experiment(route, "id", []string{"x", "y"})
	}
	r.Retain(map[string]bool{"b": true})
	reps := r.Report()
	if len(reps) != 1 || reps[0].Route != "b" {
		t.Fatalf("after Retain(b): %d reports, want only b", len(reps))
	}
	// A route that comes back starts over.
	if got := r.Experiment("a", "id", []string{"x", "y"}).Stats()[0].Latency.N; got != 0 {
		t.Fatalf("returning route: %d requests, want 0", got)
	}
}

func TestReportSortedByRoute(t *testing.T) {
	r, _ := fakeClock()
	for _, route := range []string{"zeta", "alpha", "mid"} {
		r.Experiment(route, "id", []string{"x", "y"})
	}
	var got []string
	for _, rep := range r.Report() {
		got = append(got, rep.Route)
	}
	if strings.Join(got, ",") != "alpha,mid,zeta" {
		t.Fatalf("routes %v, want sorted", got)
	}
}

func TestVariantIndex(t *testing.T) {
	r, _ := fakeClock()
	e := r.Experiment("iris", "id", []string{"control", "treatment"})
	if e.VariantIndex("treatment") != 1 || e.VariantIndex("control") != 0 || e.VariantIndex("nope") != -1 {
		t.Fatal("VariantIndex")
	}
	if e.Len() != 2 || e.Route() != "iris" || e.Identity() != "id" {
		t.Fatal("accessors")
	}
}

func TestAddOutcomeBounds(t *testing.T) {
	r, _ := fakeClock()
	e := r.Experiment("iris", "id", []string{"control", "treatment"})
	for i := 0; i < MaxMetrics; i++ {
		if err := e.AddOutcome(i%2, fmt.Sprintf("metric_%d", i), 1); err != nil {
			t.Fatalf("metric %d of %d: %v", i+1, MaxMetrics, err)
		}
	}
	if err := e.AddOutcome(0, "one_too_many", 1); !errors.Is(err, ErrTooManyMetrics) {
		t.Fatalf("metric %d: err %v, want ErrTooManyMetrics", MaxMetrics+1, err)
	}
	// Known metrics keep being accepted, on any variant.
	if err := e.AddOutcome(1, "metric_0", 2); err != nil {
		t.Fatalf("known metric after the bound: %v", err)
	}
	tests := []struct {
		name    string
		variant int
		metric  string
		value   float64
		want    error
	}{
		{"negative variant", -1, "click", 1, ErrNoVariant},
		{"variant out of range", 2, "click", 1, ErrNoVariant},
		{"empty name", 0, "", 1, ErrMetricName},
		{"long name", 0, strings.Repeat("x", MaxMetricLen+1), 1, ErrMetricName},
		{"markup in name", 0, "<b>click</b>", 1, ErrMetricName},
		{"escape in name", 0, "click\x1b[31m", 1, ErrMetricName},
		{"space in name", 0, "add to cart", 1, ErrMetricName},
		{"NaN", 0, "metric_0", math.NaN(), ErrOutcomeValue},
		{"+Inf", 0, "metric_0", math.Inf(1), ErrOutcomeValue},
		{"huge", 0, "metric_0", 2 * MaxOutcomeMagnitude, ErrOutcomeValue},
		{"huge negative", 0, "metric_0", -2 * MaxOutcomeMagnitude, ErrOutcomeValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := e.AddOutcome(tt.variant, tt.metric, tt.value); !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
	if err := e.AddOutcome(0, strings.Repeat("x", MaxMetricLen), 1); !errors.Is(err, ErrTooManyMetrics) {
		t.Fatalf("a name of exactly MaxMetricLen is valid (and here over the count): %v", err)
	}
	if err := e.AddOutcome(0, "metric_1", -MaxOutcomeMagnitude); err != nil {
		t.Fatalf("value at the bound: %v", err)
	}
}

func TestConcurrentRecordAndReport(t *testing.T) {
	r, _ := fakeClock()
	e := r.Experiment("iris", "id", []string{"control", "treatment"})
	const workers, perWorker = 16, 5000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() { // reports and outcomes while traffic flows
		defer readers.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = r.Report()
			if err := e.AddOutcome(i%2, "click", float64(i%2)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			v := e.Variant(w % 2)
			for i := 0; i < perWorker; i++ {
				v.Record(time.Duration(1+i%100)*time.Millisecond, i%10 == 0)
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	readers.Wait()

	for i, st := range e.Stats() {
		want := int64(workers / 2 * perWorker)
		if st.Latency.N != want || st.Histogram.TotalCount() != want {
			t.Errorf("variant %d: %d requests (histogram %d), want %d", i, st.Latency.N, st.Histogram.TotalCount(), want)
		}
		if st.Errors != want/10 {
			t.Errorf("variant %d: %d errors, want %d", i, st.Errors, want/10)
		}
		// Each worker records 1..100 ms fifty times over: mean 50.5 ms.
		if mean, _ := st.Latency.Mean(); math.Abs(mean-50.5) > 1e-9 {
			t.Errorf("variant %d: mean %v ms, want 50.5", i, mean)
		}
	}
}

func TestQuantilesOfKnownDistributions(t *testing.T) {
	// HdrHistogram at 3 significant digits: a reported quantile is within
	// 0.1% (plus the 1µs unit) of the true one.
	within := func(got, want float64) bool { return math.Abs(got-want) <= want*1e-3+1e-3 }

	t.Run("uniform", func(t *testing.T) {
		r, _ := fakeClock()
		v := r.Experiment("u", "id", []string{"a"}).Variant(0)
		// 1 ms .. 100 ms in 10 µs steps: the q-quantile is q·100 ms.
		for us := 10; us <= 100_000; us += 10 {
			v.Record(time.Duration(us)*time.Microsecond, false)
		}
		lat := r.Report()[0].Variants[0].LatencyMS
		for _, c := range []struct {
			name      string
			got, want float64
		}{{"p50", *lat.P50, 50}, {"p95", *lat.P95, 95}, {"p99", *lat.P99, 99}, {"mean", *lat.Mean, 50.005}} {
			if !within(c.got, c.want) {
				t.Errorf("%s = %v ms, want %v", c.name, c.got, c.want)
			}
		}
	})
	t.Run("normal", func(t *testing.T) {
		r, _ := fakeClock()
		v := r.Experiment("n", "id", []string{"a"}).Variant(0)
		// N(200 ms, 30 ms) laid out by its quantile function, so that the
		// sample quantiles are the distribution's.
		dist := distuv.Normal{Mu: 200, Sigma: 30}
		const n = 100_000
		for i := 0; i < n; i++ {
			ms := dist.Quantile((float64(i) + 0.5) / n)
			v.Record(time.Duration(ms*float64(time.Millisecond)), false)
		}
		lat := r.Report()[0].Variants[0].LatencyMS
		for _, c := range []struct {
			name      string
			got, want float64
		}{
			{"p50", *lat.P50, dist.Quantile(0.50)},
			{"p95", *lat.P95, dist.Quantile(0.95)},
			{"p99", *lat.P99, dist.Quantile(0.99)},
			{"mean", *lat.Mean, 200},
			{"std", *lat.Std, 30},
		} {
			if !within(c.got, c.want) {
				t.Errorf("%s = %v ms, want %v", c.name, c.got, c.want)
			}
		}
	})
}

func TestOutOfRangeLatencyClampedAndCounted(t *testing.T) {
	r, _ := fakeClock()
	v := r.Experiment("iris", "id", []string{"a"}).Variant(0)
	v.Record(-time.Second, false)
	v.Record(2*time.Minute, false)
	v.Record(LatencyMax, false) // at the bound: in range
	lat := r.Report()[0].Variants[0].LatencyMS
	if lat.OutOfRange != 2 {
		t.Fatalf("out_of_range %d, want 2", lat.OutOfRange)
	}
	max := float64(LatencyMax / time.Millisecond)
	if *lat.P99 < max*0.999 || *lat.P99 > max*1.001 {
		t.Fatalf("p99 %v ms, want the clamp %v", *lat.P99, max)
	}
	if want := 2 * max / 3; math.Abs(*lat.Mean-want) > 1e-9 {
		t.Fatalf("mean %v, want %v (0, max, max)", *lat.Mean, want)
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	r, _ := fakeClock()
	v := r.Experiment("iris", "id", []string{"a", "b"}).Variant(1)
	allocs := testing.AllocsPerRun(1000, func() { v.Record(3*time.Millisecond, true) })
	if allocs != 0 {
		t.Fatalf("Record allocates %v times per call", allocs)
	}
}

func TestShardsDoNotShareCacheLines(t *testing.T) {
	if size := unsafe.Sizeof(shard{}); size%128 != 0 {
		t.Fatalf("shard is %d bytes, want a multiple of 128", size)
	}
	for procs, want := range map[int]int{1: 1, 2: 2, 3: 4, 8: 8, 64: maxShards} {
		if got := shardCount(procs); got != want {
			t.Errorf("shardCount(%d) = %d, want %d", procs, got, want)
		}
	}
}

func BenchmarkRecord(b *testing.B) {
	v := NewRegistry().Experiment("iris", "id", []string{"control", "treatment"}).Variant(1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		v.Record(time.Duration(1000+i&1023)*time.Microsecond, i&63 == 0)
	}
}

func BenchmarkRecordParallel(b *testing.B) {
	v := NewRegistry().Experiment("iris", "id", []string{"control", "treatment"}).Variant(1)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			v.Record(time.Duration(1000+i&1023)*time.Microsecond, i&63 == 0)
			i++
		}
	})
}
