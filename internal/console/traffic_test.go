package console

import (
	"math"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// fakeRegistry is a metrics registry whose counters the test sets: per
// route variant, requests by status code and a latency histogram.
type fakeRegistry struct {
	mu     sync.Mutex
	codes  map[seriesKey]map[string]float64
	hist   map[seriesKey][]uint64 // cumulative counts per bound of fakeBounds
	bounds []float64
}

func newFakeRegistry(bounds ...float64) *fakeRegistry {
	return &fakeRegistry{codes: map[seriesKey]map[string]float64{}, hist: map[seriesKey][]uint64{}, bounds: bounds}
}

// add counts n answers with code on route/variant, each taking latency
// seconds.
func (f *fakeRegistry) add(route, variant, code string, n int, latency float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := seriesKey{route, variant}
	if f.codes[k] == nil {
		f.codes[k] = map[string]float64{}
		f.hist[k] = make([]uint64, len(f.bounds)+1) // the last is +Inf
	}
	f.codes[k][code] += float64(n)
	for i := range f.hist[k] {
		if i == len(f.bounds) || latency <= f.bounds[i] {
			f.hist[k][i] += uint64(n)
		}
	}
}

// reset zeroes every counter, as a restarted process would.
func (f *fakeRegistry) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.codes, f.hist = map[seriesKey]map[string]float64{}, map[seriesKey][]uint64{}
}

func (f *fakeRegistry) Gather() ([]*dto.MetricFamily, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	labels := func(k seriesKey, extra ...string) []*dto.LabelPair {
		out := []*dto.LabelPair{{Name: proto.String("route"), Value: proto.String(k.route)},
			{Name: proto.String("variant"), Value: proto.String(k.variant)}}
		if len(extra) == 2 {
			out = append(out, &dto.LabelPair{Name: proto.String(extra[0]), Value: proto.String(extra[1])})
		}
		return out
	}
	requests := &dto.MetricFamily{Name: proto.String(requestsSeries), Type: dto.MetricType_COUNTER.Enum()}
	duration := &dto.MetricFamily{Name: proto.String(durationSeries), Type: dto.MetricType_HISTOGRAM.Enum()}
	for k, codes := range f.codes {
		for code, n := range codes {
			requests.Metric = append(requests.Metric, &dto.Metric{Label: labels(k, "code", code),
				Counter: &dto.Counter{Value: proto.Float64(n)}})
		}
		h := &dto.Histogram{SampleCount: proto.Uint64(f.hist[k][len(f.bounds)])}
		for i, le := range f.bounds {
			h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: proto.Float64(le), CumulativeCount: proto.Uint64(f.hist[k][i])})
		}
		duration.Metric = append(duration.Metric, &dto.Metric{Label: labels(k), Histogram: h})
	}
	other := &dto.MetricFamily{Name: proto.String("go_goroutines"), Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(12)}}}}
	return []*dto.MetricFamily{other, requests, duration}, nil
}

func near(got *float64, want float64) bool {
	return got != nil && math.Abs(*got-want) < 1e-9
}

func show(x *float64) any {
	if x == nil {
		return "nil"
	}
	return *x
}

// TestConsoleTrafficWindowMath checks share, rate, error rate and quantiles over
// the window against numbers worked by hand.
func TestConsoleTrafficWindowMath(t *testing.T) {
	reg := newFakeRegistry(0.01, 0.1, 1) // buckets (0,10ms], (10ms,100ms], (100ms,1s], +Inf
	tr := NewTraffic(reg)
	t0 := time.Unix(1_700_000_000, 0)

	// Before the window: 100 requests on a that the window must not count.
	reg.add("r", "a", "200", 100, 0.005)
	tr.sample(t0)
	if w := tr.Window(); w.Span != 0 || w.Stat("r", "a").Share != nil || w.Stat("r", "a").PerSecond != nil {
		t.Fatalf("one sample is no window: %+v", w.Stat("r", "a"))
	}

	// In the window, 10 s: a answers 90 (81 fast, 9 at 50 ms, 9 of them
	// 500s), b answers 10 at 500 ms; 5 auth refusals (variant none).
	reg.add("r", "a", "200", 72, 0.005)
	reg.add("r", "a", "503", 9, 0.005)
	reg.add("r", "a", "200", 9, 0.05)
	reg.add("r", "b", "200", 10, 0.5)
	reg.add("r", "none", "401", 5, 0.0001)
	tr.sample(t0.Add(10 * time.Second))

	w := tr.Window()
	if w.Span != 10*time.Second {
		t.Fatalf("span %v, want 10s", w.Span)
	}
	a, b, none := w.Stat("r", "a"), w.Stat("r", "b"), w.Stat("r", "none")
	// Shares of the 100 requests a and b answered; none is nobody's.
	if a.Requests != 90 || !near(a.Share, 0.9) || !near(b.Share, 0.1) || none.Share != nil {
		t.Errorf("shares: a %v %v, b %v, none %v; want 90 requests, 0.9, 0.1, nil", a.Requests, show(a.Share), show(b.Share), show(none.Share))
	}
	if !near(a.PerSecond, 9) || !near(b.PerSecond, 1) || !near(none.PerSecond, 0.5) {
		t.Errorf("rates: a %v b %v none %v, want 9, 1, 0.5 req/s", show(a.PerSecond), show(b.PerSecond), show(none.PerSecond))
	}
	if !near(a.ErrorRate, 0.1) || !near(b.ErrorRate, 0) {
		t.Errorf("error rates: a %v b %v, want 0.1 and 0", show(a.ErrorRate), show(b.ErrorRate))
	}
	// a: 81 in (0, 10ms], 9 in (10ms, 100ms]. p50: rank 45 of the first
	// bucket's 81: 10ms * 45/81. p99: rank 89.1, 8.1 into the second
	// bucket's 9: 10ms + 90ms * 8.1/9 = 91ms.
	if !near(a.P50, 0.01*45/81) || !near(a.P99, 0.091) {
		t.Errorf("a quantiles: p50 %v p99 %v, want %v and 0.091", show(a.P50), show(a.P99), 0.01*45/81)
	}
	// b: all 10 in (100ms, 1s]: p50 rank 5 of 10 -> 550ms; p99 rank 9.9 -> 991ms.
	if !near(b.P50, 0.55) || !near(b.P99, 0.991) {
		t.Errorf("b quantiles: p50 %v p99 %v, want 0.55 and 0.991", show(b.P50), show(b.P99))
	}
	if got := w.Variants("r"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("variants %v, want [a b] (none is not one)", got)
	}

	// A variant that answered nothing has a share of 0 of a route that
	// answered; a route that answered nothing has no shares.
	if c := w.Stat("r", "c"); !near(c.Share, 0) || !near(c.PerSecond, 0) || c.ErrorRate != nil || c.P50 != nil {
		t.Errorf("idle variant: %+v", c)
	}
	if q := w.Stat("quiet", "x"); q.Share != nil || q.P99 != nil {
		t.Errorf("idle route: %+v", q)
	}
}

// TestConsoleTrafficWindowIsTheLastMinute: the ring keeps 61 samples, so the
// window's oldest sample is 60 s back and older traffic falls out.
func TestConsoleTrafficWindowIsTheLastMinute(t *testing.T) {
	reg := newFakeRegistry(0.1)
	tr := NewTraffic(reg)
	t0 := time.Unix(1_700_000_000, 0)
	tr.sample(t0)
	reg.add("r", "a", "200", 600, 0.05) // in the first second only
	for i := 1; i <= 60; i++ {
		tr.sample(t0.Add(time.Duration(i) * time.Second))
	}
	if st := tr.Window().Stat("r", "a"); st.Requests != 600 || !near(st.PerSecond, 10) {
		t.Fatalf("at 60 s: %v requests, %v req/s; want 600 and 10", st.Requests, show(st.PerSecond))
	}
	tr.sample(t0.Add(61 * time.Second))
	w := tr.Window()
	if st := w.Stat("r", "a"); w.Span != time.Minute || st.Requests != 0 || st.P50 != nil {
		t.Fatalf("at 61 s the burst is out of the window: span %v, %+v", w.Span, st)
	}
}

// TestConsoleTrafficCounterReset: a counter that falls was reset, and what it
// says now is all new.
func TestConsoleTrafficCounterReset(t *testing.T) {
	reg := newFakeRegistry(0.1)
	tr := NewTraffic(reg)
	t0 := time.Unix(1_700_000_000, 0)
	reg.add("r", "a", "200", 50, 0.05)
	tr.sample(t0)
	reg.reset()
	reg.add("r", "a", "200", 20, 0.05)
	tr.sample(t0.Add(2 * time.Second))
	if st := tr.Window().Stat("r", "a"); st.Requests != 20 || !near(st.PerSecond, 10) || !near(st.P50, 0.05) {
		t.Fatalf("after a reset: %v requests %v req/s p50 %v; want 20, 10, 0.05", st.Requests, show(st.PerSecond), show(st.P50))
	}
}

func TestConsoleHistogramQuantile(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		name    string
		q       float64
		buckets []bucket
		want    float64 // NaN: none
	}{
		{"first bucket starts at 0", 0.5, []bucket{{1, 10}, {2, 10}, {inf, 10}}, 0.5},
		{"interpolated in the second", 0.75, []bucket{{1, 10}, {3, 30}, {inf, 30}}, 1 + 2*12.5/20},
		{"rank in +Inf is the highest bound", 0.99, []bucket{{1, 10}, {2, 10}, {inf, 20}}, 2},
		{"no observations", 0.5, []bucket{{1, 0}, {inf, 0}}, math.NaN()},
		{"no +Inf bucket", 0.5, []bucket{{1, 3}, {2, 4}}, math.NaN()},
		{"negative first bound", 0.5, []bucket{{-1, 5}, {1, 6}, {inf, 6}}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := histogramQuantile(tc.q, tc.buckets)
			if math.IsNaN(tc.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tc.want) > 1e-12) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
