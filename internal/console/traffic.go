package console

// Traffic is the console's last minute of requests. The gateway's request
// counters only ever rise; once a second Traffic gathers the two series
// it needs from the metrics registry into a ring of the last
// windowSamples samples, and answers with the increase from the oldest
// sample to the newest: what Prometheus' increase(), rate() and
// histogram_quantile() would say over a one-minute range. It reads the
// registry and nothing else, so the request path does not change and pays
// nothing for the console.
//
// Just after start the ring holds fewer samples and the window is shorter
// (its Span says how long); with fewer than two samples there is no window
// and every number is unknown.

import (
	"context"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// SampleEvery is how often Traffic gathers the counters.
const SampleEvery = time.Second

// windowSamples is the ring's size: 61 samples a second apart span the
// last 60 seconds.
const windowSamples = 61

// The series Traffic reads, as internal/metrics names them.
const (
	requestsSeries = "sluice_requests_total"           // {route, variant, code}
	durationSeries = "sluice_request_duration_seconds" // histogram {route, variant}
	// noVariant is the variant label of a route's requests answered
	// before a variant was chosen (auth refusals, CORS preflights): they
	// are nobody's share of the route's traffic.
	noVariant = "none"
)

// Traffic samples a registry's request counters; safe for concurrent use.
type Traffic struct {
	gatherer prometheus.Gatherer

	mu   sync.Mutex
	ring [windowSamples]sample
	next int // where the next sample goes
	held int // samples in the ring, up to windowSamples
}

// sample is the counters at one moment.
type sample struct {
	at     time.Time
	series map[seriesKey]*counts
}

// seriesKey names one route variant.
type seriesKey struct{ route, variant string }

// counts are one route variant's counters, or their increase over a
// window.
type counts struct {
	requests float64 // every answer
	errors   float64 // 5xx answers
	// buckets is the duration histogram: cumulative counts by upper bound
	// in seconds, the +Inf bucket (every observation) last; nil before
	// the first observation.
	buckets []bucket
}

// bucket is one cumulative histogram bucket.
type bucket struct {
	le    float64 // upper bound, seconds
	count float64 // observations <= le
}

// NewTraffic samples g (the gateway's metrics registry).
func NewTraffic(g prometheus.Gatherer) *Traffic {
	return &Traffic{gatherer: g}
}

// Run samples now and then every interval until ctx ends.
func (t *Traffic) Run(ctx context.Context, interval time.Duration) {
	t.sample(time.Now())
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.sample(now)
		}
	}
}

// sample gathers the counters as they stand at now into the ring. A
// registry that fails some collector still returns every family it could
// gather, ours among them, so the error is not a reason to skip.
func (t *Traffic) sample(now time.Time) {
	families, _ := t.gatherer.Gather()
	s := sample{at: now, series: parseSeries(families)}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ring[t.next] = s
	t.next = (t.next + 1) % windowSamples
	t.held = min(t.held+1, windowSamples)
}

// parseSeries picks the request counters and latency histograms out of a
// gathered registry.
func parseSeries(families []*dto.MetricFamily) map[seriesKey]*counts {
	out := map[seriesKey]*counts{}
	of := func(m *dto.Metric) *counts {
		k := seriesKey{route: label(m, "route"), variant: label(m, "variant")}
		c := out[k]
		if c == nil {
			c = &counts{}
			out[k] = c
		}
		return c
	}
	for _, f := range families {
		switch f.GetName() {
		case requestsSeries:
			for _, m := range f.GetMetric() {
				c, n := of(m), m.GetCounter().GetValue()
				c.requests += n
				if code := label(m, "code"); len(code) == 3 && code[0] == '5' {
					c.errors += n
				}
			}
		case durationSeries:
			for _, m := range f.GetMetric() {
				h := m.GetHistogram()
				bs := make([]bucket, 0, len(h.GetBucket())+1)
				for _, b := range h.GetBucket() {
					if !math.IsInf(b.GetUpperBound(), 1) {
						bs = append(bs, bucket{le: b.GetUpperBound(), count: float64(b.GetCumulativeCount())})
					}
				}
				of(m).buckets = append(bs, bucket{le: math.Inf(1), count: float64(h.GetSampleCount())})
			}
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Window is the traffic between the oldest and the newest sample.
type Window struct {
	// Span is the time the window covers: a minute once the ring is full,
	// 0 when there is no window yet.
	Span     time.Duration
	increase map[seriesKey]counts
	// routeRequests are each route's requests but those of variant none.
	routeRequests map[string]float64
}

// Window is the last minute (or what there is of it).
func (t *Traffic) Window() Window {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := Window{increase: map[seriesKey]counts{}, routeRequests: map[string]float64{}}
	if t.held < 2 {
		return w
	}
	oldest := t.ring[(t.next-t.held+windowSamples)%windowSamples]
	newest := t.ring[(t.next-1+windowSamples)%windowSamples]
	w.Span = newest.at.Sub(oldest.at)
	for k, now := range newest.series {
		var then counts
		if c := oldest.series[k]; c != nil {
			then = *c
		}
		inc := counts{
			requests: increase(then.requests, now.requests),
			errors:   increase(then.errors, now.errors),
			buckets:  bucketIncrease(then.buckets, now.buckets),
		}
		w.increase[k] = inc
		if k.variant != noVariant {
			w.routeRequests[k.route] += inc.requests
		}
	}
	return w
}

// increase is a counter's rise from then to now. A counter that fell was
// reset (a new series of the same name): as Prometheus does, all of now
// is the rise.
func increase(then, now float64) float64 {
	if now < then {
		return now
	}
	return now - then
}

// bucketIncrease is the histogram's rise from then to now (then nil: the
// series is newer than the window, all of now); a reset or a change of
// buckets starts afresh from now.
func bucketIncrease(then, now []bucket) []bucket {
	if len(now) == 0 {
		return nil
	}
	out := make([]bucket, len(now))
	copy(out, now)
	if len(then) != len(now) {
		return out
	}
	for i := range now {
		if then[i].le != now[i].le || now[i].count < then[i].count {
			copy(out, now)
			return out
		}
		out[i].count = now[i].count - then[i].count
	}
	return out
}

// Stat is one route variant's traffic over a window. A nil number is
// unknown: a share of a route that had no requests, a rate without a
// window, a quantile of no requests.
type Stat struct {
	// Requests answered in the window.
	Requests float64
	// Share is Requests over the route's requests in the window, 0 to 1;
	// variant none (requests refused before a variant was chosen) has no
	// share and counts in no route's total.
	Share *float64
	// PerSecond is Requests over the window's span.
	PerSecond *float64
	// ErrorRate is the share of 5xx answers, 0 to 1.
	ErrorRate *float64
	// P50 and P99 are latency quantiles in seconds, interpolated within
	// the histogram's buckets.
	P50, P99 *float64
}

// Stat is a route variant's numbers; a variant without requests in the
// window has a share of 0 when its route had some.
func (w Window) Stat(route, variant string) Stat {
	inc := w.increase[seriesKey{route: route, variant: variant}]
	st := Stat{Requests: inc.requests}
	if w.Span > 0 {
		st.PerSecond = ptr(inc.requests / w.Span.Seconds())
	}
	if total := w.routeRequests[route]; total > 0 && variant != noVariant {
		st.Share = ptr(inc.requests / total)
	}
	if inc.requests > 0 {
		st.ErrorRate = ptr(inc.errors / inc.requests)
	}
	st.P50 = finite(histogramQuantile(0.5, inc.buckets))
	st.P99 = finite(histogramQuantile(0.99, inc.buckets))
	return st
}

// Variants are the variants of route that answered requests in the
// window, variant none aside, by name.
func (w Window) Variants(route string) []string {
	var out []string
	for k, inc := range w.increase {
		if k.route == route && k.variant != noVariant && inc.requests > 0 {
			out = append(out, k.variant)
		}
	}
	sort.Strings(out)
	return out
}

// histogramQuantile is the q-quantile of cumulative buckets (+Inf last),
// as Prometheus' histogram_quantile computes it: find the bucket that
// holds rank q·n and interpolate linearly within it, the first bucket
// starting at 0; a rank in the +Inf bucket is the highest finite bound.
// NaN without observations.
func histogramQuantile(q float64, buckets []bucket) float64 {
	if len(buckets) < 2 || !math.IsInf(buckets[len(buckets)-1].le, 1) {
		return math.NaN()
	}
	n := buckets[len(buckets)-1].count
	if n == 0 {
		return math.NaN()
	}
	rank := q * n
	b := sort.Search(len(buckets)-1, func(i int) bool { return buckets[i].count >= rank })
	switch {
	case b == len(buckets)-1:
		return buckets[len(buckets)-2].le
	case b == 0 && buckets[0].le <= 0:
		return buckets[0].le
	}
	start, end, count := 0.0, buckets[b].le, buckets[b].count
	if b > 0 {
		start = buckets[b-1].le
		count -= buckets[b-1].count
		rank -= buckets[b-1].count
	}
	return start + (end-start)*(rank/count)
}

func ptr(x float64) *float64 { return &x }

// finite is a pointer to x, nil when x is NaN or infinite.
func finite(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}
