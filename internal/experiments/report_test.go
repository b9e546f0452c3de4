package experiments

import (
	"encoding/json"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// marshal fails the test when a report cannot be served: encoding/json
// refuses NaN and ±Inf, so this is the check that none slipped through.
func marshal(t *testing.T, reports []RouteReport) []byte {
	t.Helper()
	b, err := json.MarshalIndent(reports, "", "  ")
	if err != nil {
		t.Fatalf("report does not marshal: %v", err)
	}
	return b
}

// exampleRegistry is a small but complete A/B test: 2000 requests of control,
// 500 of treatment (faster, fewer errors), and click/revenue outcomes.
func exampleRegistry() *Registry {
	r, _ := fakeClock()
	e := r.Experiment("iris", "iris-ab-1|control,treatment", []string{"control", "treatment"})
	control, treatment := e.Variant(0), e.Variant(1)
	for i := 0; i < 2000; i++ {
		control.Record(time.Duration(20_000+(i%41)*250)*time.Microsecond, i%20 == 0) // 20..30 ms, 5% errors
	}
	for i := 0; i < 500; i++ {
		treatment.Record(time.Duration(15_000+(i%37)*250)*time.Microsecond, i%100 == 0) // 15..24 ms, 1% errors
	}
	for i := 0; i < 200; i++ {
		_ = e.AddOutcome(0, "click", float64(i%10/9))     // 10% click
		_ = e.AddOutcome(1, "click", float64(i%10/8))     // 20% click
		_ = e.AddOutcome(0, "revenue", float64(10+i%5))   // 12 on average
		_ = e.AddOutcome(1, "revenue", float64(10+i%5)+1) // 13 on average
	}
	return r
}

func TestReportJSONShape(t *testing.T) {
	reps := exampleRegistry().Report()
	raw := marshal(t, reps)
	t.Logf("example report:\n%s", raw)

	var decoded []map[string]any
	if err := json.Unmarshal(raw, &decoded); err != nil {
		t.Fatal(err)
	}
	keys := func(m any) string {
		var ks []string
		for k := range m.(map[string]any) {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return strings.Join(ks, ",")
	}
	route := decoded[0]
	variants := route["variants"].([]any)
	outcomes := route["outcomes"].([]any)
	treatment := variants[1].(map[string]any)
	comparison := treatment["comparison"].(map[string]any)
	for _, c := range []struct{ what, got, want string }{
		{"route", keys(route), "identity,outcomes,route,scope,started_at,variants"},
		{"baseline variant", keys(variants[0]), "baseline,error_rate,errors,latency_ms,name,requests,stats"},
		{"variant", keys(treatment), "baseline,comparison,error_rate,errors,latency_ms,name,requests,stats"},
		{"latency_ms", keys(treatment["latency_ms"]), "mean,out_of_range,p50,p95,p99,std"},
		{"comparison", keys(comparison), "baseline,error_rate,latency"},
		{"error_rate test", keys(comparison["error_rate"]), "diff,p_value,significant,winner,z"},
		{"latency test", keys(comparison["latency"]), "df,diff,p_value,significant,t,winner"},
		{"stats", keys(treatment["stats"]), "errors,latency_ms,latency_out_of_range,name,outcomes"},
		{"stats moments", keys(treatment["stats"].(map[string]any)["latency_ms"]), "n,sum,sum_sq"},
		{"outcome metric", keys(outcomes[0]), "metric,variants"},
		{"outcome baseline", keys(outcomes[0].(map[string]any)["variants"].([]any)[0]), "baseline,ci95,mean,n,name,std"},
		{"outcome variant", keys(outcomes[0].(map[string]any)["variants"].([]any)[1]), "baseline,ci95,comparison,mean,n,name,std"},
	} {
		if c.got != c.want {
			t.Errorf("%s keys: %s, want %s", c.what, c.got, c.want)
		}
	}

	rep := reps[0]
	if rep.StartedAt.IsZero() || rep.Variants[0].Name != "control" || !rep.Variants[0].Baseline || rep.Variants[1].Baseline {
		t.Fatalf("route header wrong: %+v", rep)
	}
	tr := rep.Variants[1]
	if tr.Requests != 500 || tr.Errors != 5 || *tr.ErrorRate != 0.01 {
		t.Errorf("treatment traffic: %d requests, %d errors, rate %v", tr.Requests, tr.Errors, *tr.ErrorRate)
	}
	if c := tr.Comparison; !c.ErrorRate.Significant || c.ErrorRate.Winner != WinnerVariant ||
		!c.Latency.Significant || c.Latency.Winner != WinnerVariant {
		t.Errorf("treatment has fewer errors and lower latency: want it to win both, got %+v", c)
	}
	if got := []string{rep.Outcomes[0].Metric, rep.Outcomes[1].Metric}; got[0] != "click" || got[1] != "revenue" {
		t.Errorf("outcome metrics %v, want sorted", got)
	}
	rev := rep.Outcomes[1].Variants[1]
	if *rev.Mean != 13 || !rev.Comparison.Significant || rev.Comparison.Winner != WinnerVariant {
		t.Errorf("revenue: higher mean must win: %+v %+v", rev, rev.Comparison)
	}
}

func TestCI95(t *testing.T) {
	r, _ := fakeClock()
	e := r.Experiment("iris", "id", []string{"a", "b"})
	for _, x := range []float64{1, 2, 3, 4, 5} {
		if err := e.AddOutcome(0, "score", x); err != nil {
			t.Fatal(err)
		}
	}
	o := r.Report()[0].Outcomes[0].Variants[0]
	// mean 3, sample std sqrt(2.5), half-width 1.96·sqrt(2.5)/sqrt(5) = 1.3859...
	half := 1.96 * math.Sqrt(2.5) / math.Sqrt(5)
	if o.N != 5 || *o.Mean != 3 || !agrees(*o.Std, math.Sqrt(2.5), 12) {
		t.Fatalf("n %d mean %v std %v", o.N, *o.Mean, *o.Std)
	}
	if len(o.CI95) != 2 || !agrees(o.CI95[0], 3-half, 12) || !agrees(o.CI95[1], 3+half, 12) {
		t.Fatalf("ci95 %v, want [%v, %v]", o.CI95, 3-half, 3+half)
	}
	// b has no outcome for this metric: n 0 and nothing else.
	b := r.Report()[0].Outcomes[0].Variants[1]
	if b.N != 0 || b.Mean != nil || b.Std != nil || b.CI95 != nil || b.Comparison.PValue != nil || b.Comparison.Note != NoteInsufficientData {
		t.Fatalf("variant without outcomes: %+v %+v", b, b.Comparison)
	}
}

// Every degenerate state an experiment can be in must still be served: valid
// JSON, nulls where there is no number, and the reason.
func TestEdgeCaseReportsMarshal(t *testing.T) {
	r, _ := fakeClock()
	r.Experiment("empty", "id", []string{"a", "b"})
	one := r.Experiment("one-request", "id", []string{"a", "b"})
	one.Variant(0).Record(time.Millisecond, false)
	one.Variant(1).Record(time.Millisecond, true)
	constant := r.Experiment("constant", "id", []string{"a", "b"})
	for i := 0; i < 10; i++ {
		constant.Variant(0).Record(5*time.Millisecond, false)
		constant.Variant(1).Record(7*time.Millisecond, false)
	}
	_ = constant.AddOutcome(1, "click", 1)
	_ = constant.AddOutcome(1, "click", 1)
	_ = constant.AddOutcome(0, "click", 1)
	r.Experiment("single-variant", "id", []string{"only"}).Variant(0).Record(time.Millisecond, false)
	allFail := r.Experiment("all-fail", "id", []string{"a", "b"})
	for i := 0; i < 5; i++ {
		allFail.Variant(0).Record(time.Millisecond, true)
		allFail.Variant(1).Record(2*time.Millisecond, true)
	}

	reps := r.Report()
	raw := marshal(t, reps)
	if strings.Contains(string(raw), "NaN") || strings.Contains(string(raw), "Inf") {
		t.Fatalf("NaN or Inf in report:\n%s", raw)
	}
	byRoute := map[string]RouteReport{}
	for _, rep := range reps {
		byRoute[rep.Route] = rep
	}

	empty := byRoute["empty"].Variants[1]
	if empty.ErrorRate != nil || empty.LatencyMS.Mean != nil || empty.LatencyMS.P50 != nil ||
		empty.Comparison.ErrorRate.Note != NoteInsufficientData || empty.Comparison.Latency.Note != NoteInsufficientData {
		t.Errorf("empty: %+v", empty)
	}
	o := byRoute["one-request"].Variants[1]
	if *o.ErrorRate != 1 || o.LatencyMS.Std != nil || o.Comparison.Latency.PValue != nil ||
		o.Comparison.Latency.Note != NoteInsufficientData || o.Comparison.ErrorRate.PValue == nil {
		t.Errorf("one request: %+v %+v", o, o.Comparison)
	}
	c := byRoute["constant"]
	if lat := c.Variants[1].Comparison.Latency; lat.PValue != nil || lat.Note != NoteNoVariance || *lat.Diff != 2 {
		t.Errorf("constant latencies: %+v", lat)
	}
	if click := c.Outcomes[0].Variants[1]; click.Comparison.Note != NoteInsufficientData || *click.Std != 0 {
		t.Errorf("constant clicks, baseline n=1: %+v %+v", click, click.Comparison)
	}
	if s := byRoute["single-variant"]; len(s.Variants) != 1 || s.Variants[0].Comparison != nil {
		t.Errorf("single variant: %+v", s)
	}
	if af := byRoute["all-fail"].Variants[1].Comparison.ErrorRate; af.PValue != nil || af.Note != NoteNoVariance {
		t.Errorf("all failing: %+v", af)
	}
	if string(marshal(t, nil)) != "null" || string(marshal(t, NewRegistry().Report())) != "[]" {
		t.Errorf("no experiments must marshal as an empty list")
	}
}

// Two replicas' stats merged give the report one process would have given
// had it seen all the traffic: the sums add up.
func TestVariantStatsMergeAcrossReplicas(t *testing.T) {
	names := []string{"control", "treatment"}
	whole := NewRegistry().Experiment("iris", "id", names)
	replicas := []*Experiment{
		NewRegistry().Experiment("iris", "id", names),
		NewRegistry().Experiment("iris", "id", names),
	}
	for i := 0; i < 3000; i++ {
		v, lat, failed := i%2, time.Duration(1000+i*7)*time.Microsecond, i%13 == 0
		whole.Variant(v).Record(lat, failed)
		replicas[i%3%2].Variant(v).Record(lat, failed)
		_ = whole.AddOutcome(v, "revenue", float64(i%17))
		_ = replicas[i%5%2].AddOutcome(v, "revenue", float64(i%17))
	}
	merged := make([]VariantStats, len(names))
	for _, rep := range replicas {
		for i, st := range rep.Stats() {
			if merged[i].Name == "" {
				merged[i].Name = st.Name
			}
			merged[i].Merge(st)
		}
	}
	want := whole.Report()
	got := BuildReport("iris", "id", want.StartedAt, merged)
	for i := range want.Variants {
		w, g := want.Variants[i], got.Variants[i]
		if g.Requests != w.Requests || g.Errors != w.Errors || !agrees(*g.LatencyMS.Mean, *w.LatencyMS.Mean, 12) ||
			!agrees(*g.LatencyMS.Std, *w.LatencyMS.Std, 10) || *g.LatencyMS.P99 != *w.LatencyMS.P99 {
			t.Errorf("variant %d merged %+v, whole %+v", i, g.LatencyMS, w.LatencyMS)
		}
		gr, wr := got.Outcomes[0].Variants[i], want.Outcomes[0].Variants[i]
		if gr.N != wr.N || !agrees(*gr.Mean, *wr.Mean, 12) || !agrees(*gr.Std, *wr.Std, 10) {
			t.Errorf("revenue of %d: merged %+v, whole %+v", i, gr, wr)
		}
	}
	if !agrees(*got.Variants[1].Comparison.Latency.PValue, *want.Variants[1].Comparison.Latency.PValue, 8) {
		t.Errorf("merged p-value %v, whole %v", *got.Variants[1].Comparison.Latency.PValue, *want.Variants[1].Comparison.Latency.PValue)
	}
}

func TestVariantStatsMergeHistogramKnowledge(t *testing.T) {
	local := NewRegistry().Experiment("iris", "id", []string{"a"})
	local.Variant(0).Record(time.Millisecond, false)
	st := local.Stats()[0]

	// From Redis: sums only, no histogram. Quantiles must then be unknown
	// rather than describe the local share of the traffic.
	remote := VariantStats{Name: "a", Latency: Moments{N: 3, Sum: 6, SumSq: 14}}
	withRemote := st
	withRemote.Merge(remote)
	if withRemote.Histogram != nil {
		t.Fatal("merging sums without a histogram must drop the histogram")
	}
	if q := summarizeLatency(withRemote); q.P50 != nil || q.Mean == nil || *q.Mean != 1.75 {
		t.Fatalf("summary %+v: want mean 1.75 and no quantiles", q)
	}
	// Starting from nothing: the empty side's histogram is known (empty).
	var total VariantStats
	total.Merge(st)
	total.Merge(st)
	if total.Histogram == nil || total.Histogram.TotalCount() != 2 {
		t.Fatal("merging into an empty VariantStats must keep histograms")
	}
	// Merge does not alias its argument's histogram.
	if total.Histogram == st.Histogram {
		t.Fatal("merge aliases the histogram")
	}
	if !reflect.DeepEqual(st.Outcomes, map[string]Moments(nil)) {
		t.Fatal("no outcomes recorded: want none")
	}
}
