package experiments

import (
	"math"
	"sort"
	"time"
)

// RouteReport is the comparison of one split route's variants, as served at
// GET /admin/experiments. Numbers that cannot be computed (a mean of nothing,
// a test on one request) are null, never NaN: see Note fields for why.
type RouteReport struct {
	Route     string    `json:"route"`
	Identity  string    `json:"identity"`
	StartedAt time.Time `json:"started_at"`
	// Scope says whose numbers these are: ScopeProcess (this gateway
	// process alone) or ScopeCluster (every replica sharing the Redis).
	Scope string `json:"scope"`
	// Note explains the scope when it needs explaining: that quantiles are
	// per process in a cluster report, or why a report that should have
	// been the cluster's fell back to this process's numbers.
	Note string `json:"note,omitempty"`
	// Variants in config order; the first is the baseline.
	Variants []VariantReport `json:"variants"`
	// Outcomes per metric, sorted by metric name.
	Outcomes []MetricReport `json:"outcomes"`
}

// VariantReport is one variant's traffic and, for every variant but the
// baseline, its comparison with the baseline.
type VariantReport struct {
	Name     string `json:"name"`
	Baseline bool   `json:"baseline"`
	Requests int64  `json:"requests"`
	Errors   int64  `json:"errors"`
	// ErrorRate is Errors/Requests; null without requests.
	ErrorRate *float64       `json:"error_rate"`
	LatencyMS LatencySummary `json:"latency_ms"`
	// Comparison with the baseline; absent on the baseline itself.
	Comparison *Comparison `json:"comparison,omitempty"`
	// Stats are the raw sufficient statistics the rest is computed from.
	Stats VariantStats `json:"stats"`
}

// LatencySummary describes the latencies of a variant, in milliseconds. Mean
// and Std come from the exact sums; the quantiles from the HdrHistogram, within
// 0.1% (and to the microsecond).
type LatencySummary struct {
	Mean *float64 `json:"mean"`
	Std  *float64 `json:"std"`
	P50  *float64 `json:"p50"`
	P95  *float64 `json:"p95"`
	P99  *float64 `json:"p99"`
	// OutOfRange counts latencies clamped into [0, LatencyMax].
	OutOfRange int64 `json:"out_of_range"`
}

// Comparison of a variant with the baseline.
type Comparison struct {
	// Baseline names the variant compared with.
	Baseline string `json:"baseline"`
	// ErrorRate: two-proportion z-test; the lower rate wins.
	ErrorRate ProportionTest `json:"error_rate"`
	// Latency: Welch's t-test on the per-request latencies; the lower mean wins.
	Latency MeanTest `json:"latency"`
}

// MetricReport is one business-outcome metric across the variants.
type MetricReport struct {
	Metric   string          `json:"metric"`
	Variants []OutcomeReport `json:"variants"`
}

// OutcomeReport is one variant's outcomes for a metric.
type OutcomeReport struct {
	Name     string `json:"name"`
	Baseline bool   `json:"baseline"`
	N        int64  `json:"n"`
	// Mean of the values; null when N is 0.
	Mean *float64 `json:"mean"`
	// Std is the sample standard deviation; null when N < 2.
	Std *float64 `json:"std"`
	// CI95 is [mean - 1.96·std/√n, mean + 1.96·std/√n] (normal approximation);
	// null when N < 2.
	CI95 []float64 `json:"ci95"`
	// Comparison with the baseline by Welch's t-test, the higher mean winning;
	// absent on the baseline.
	Comparison *MeanTest `json:"comparison,omitempty"`
}

// Scopes of a RouteReport.
const (
	ScopeProcess = "process"
	ScopeCluster = "cluster"
)

// z975 is the 97.5% quantile of the standard normal, for 95% intervals.
const z975 = 1.96

// BuildReport compares variants (the first being the baseline) from their
// sufficient statistics: those of this process (Experiment.Stats) or those
// merged across replicas.
func BuildReport(route, identity string, startedAt time.Time, variants []VariantStats) RouteReport {
	rep := RouteReport{
		Route:     route,
		Identity:  identity,
		StartedAt: startedAt,
		Scope:     ScopeProcess,
		Variants:  make([]VariantReport, len(variants)),
		Outcomes:  []MetricReport{},
	}
	for i, st := range variants {
		vr := VariantReport{
			Name:      st.Name,
			Baseline:  i == 0,
			Requests:  st.Latency.N,
			Errors:    st.Errors,
			LatencyMS: summarizeLatency(st),
			Stats:     st,
		}
		if st.Latency.N > 0 {
			vr.ErrorRate = finite(float64(st.Errors) / float64(st.Latency.N))
		}
		if i > 0 {
			base := variants[0]
			vr.Comparison = &Comparison{
				Baseline:  base.Name,
				ErrorRate: TwoProportionZTest(base.Errors, base.Latency.N, st.Errors, st.Latency.N),
				Latency:   WelchTTest(base.Latency, st.Latency, false),
			}
		}
		rep.Variants[i] = vr
	}
	for _, metric := range metricNames(variants) {
		mr := MetricReport{Metric: metric, Variants: make([]OutcomeReport, len(variants))}
		for i, st := range variants {
			m := st.Outcomes[metric]
			or := describeOutcome(st.Name, m)
			or.Baseline = i == 0
			if i > 0 {
				test := WelchTTest(variants[0].Outcomes[metric], m, true)
				or.Comparison = &test
			}
			mr.Variants[i] = or
		}
		rep.Outcomes = append(rep.Outcomes, mr)
	}
	return rep
}

func summarizeLatency(st VariantStats) LatencySummary {
	s := LatencySummary{OutOfRange: st.LatencyOutOfRange}
	if mean, ok := st.Latency.Mean(); ok {
		s.Mean = finite(mean)
	}
	if v, ok := st.Latency.Variance(); ok {
		s.Std = finite(math.Sqrt(v))
	}
	if h := st.Histogram; h != nil && h.TotalCount() > 0 {
		quantile := func(q float64) *float64 {
			return finite(float64(h.ValueAtQuantile(q)) / 1e3) // µs -> ms
		}
		s.P50, s.P95, s.P99 = quantile(50), quantile(95), quantile(99)
	}
	return s
}

func describeOutcome(name string, m Moments) OutcomeReport {
	or := OutcomeReport{Name: name, N: m.N}
	mean, ok := m.Mean()
	if !ok {
		return or
	}
	or.Mean = finite(mean)
	if v, ok := m.Variance(); ok {
		std := math.Sqrt(v)
		or.Std = finite(std)
		half := z975 * std / math.Sqrt(float64(m.N))
		lo, hi := finite(mean-half), finite(mean+half)
		if lo != nil && hi != nil {
			or.CI95 = []float64{*lo, *hi}
		}
	}
	return or
}

// metricNames are the outcome metrics any variant has, sorted.
func metricNames(variants []VariantStats) []string {
	seen := make(map[string]bool)
	var names []string
	for _, st := range variants {
		for metric := range st.Outcomes {
			if !seen[metric] {
				seen[metric] = true
				names = append(names, metric)
			}
		}
	}
	sort.Strings(names)
	return names
}
