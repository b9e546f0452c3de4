package shadow

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock returns a registry whose clock the test moves.
func fakeClock() (*Registry, *time.Time) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := NewRegistry()
	r.now = func() time.Time { return now }
	return r, &now
}

func irisIdentity() Identity {
	return Identity{
		Pool:      "iris-v3",
		NoisePool: "iris-v1",
		Compare:   "ignore=timestamp;abs=1e-06;rel=0.001;label=prediction",
		Variants:  []VariantInfo{{"control", "iris-v1"}, {"treatment", "iris-v2"}},
	}
}

// comparedPair compares two bodies the way the proxy will, and wraps them
// in a Pair.
func comparedPair(c *Comparer, ps int, pb string, ss int, sb string) *Pair {
	return &Pair{
		Result:         c.Compare(ps, []byte(pb), ss, []byte(sb)),
		PrimaryStatus:  ps,
		ShadowStatus:   ss,
		PrimaryLatency: 10 * time.Millisecond,
		ShadowLatency:  12 * time.Millisecond,
		RequestID:      "req-1",
		Method:         "POST",
		URI:            "/v1/models/iris:predict",
		RequestBody:    []byte(`{"instances":[[5.1,3.5,1.4,0.2]]}`),
		PrimaryBody:    []byte(pb),
		ShadowBody:     []byte(sb),
	}
}

func TestRouteKeptAcrossReloadWithSameIdentity(t *testing.T) {
	r, now := fakeClock()
	c1 := mustComparer(t, nil, 0, 0, "prediction")
	rt := r.Route("iris", irisIdentity(), c1)
	rt.Pair(0, comparedPair(c1, 200, `{"prediction":"setosa"}`, 200, `{"prediction":"virginica"}`))
	rt.Count(1, Timeout)

	*now = now.Add(time.Hour)
	c2 := mustComparer(t, nil, 0, 0, "prediction")
	again := r.Route("iris", irisIdentity(), c2) // an equal identity built afresh, as a reload does
	if again != rt {
		t.Fatal("same identity: want the same *Route")
	}
	if again.Comparer() != c2 {
		t.Error("Comparer(): want the latest comparer given")
	}
	rep := again.Report()
	if rep.Totals.Mismatched != 1 || rep.Totals.Timeout != 1 || rep.Totals.Mirrored != 2 {
		t.Errorf("numbers lost across the reload: %+v", rep.Totals)
	}
	if !rep.Since.Equal(now.Add(-time.Hour)) {
		t.Errorf("since %v moved on a reload that kept the identity", rep.Since)
	}
}

func TestIdentityChangeStartsAfresh(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(id *Identity)
	}{
		{"shadow pool", func(id *Identity) { id.Pool = "iris-v4" }},
		{"noise pool removed", func(id *Identity) { id.NoisePool = "" }},
		{"compare settings", func(id *Identity) { id.Compare += ";ignore=model_version" }},
		{"variant order", func(id *Identity) { slices.Reverse(id.Variants) }},
		{"variant pool", func(id *Identity) { id.Variants[1].Pool = "iris-v2b" }},
		{"variant added", func(id *Identity) { id.Variants = append(id.Variants, VariantInfo{"c", "iris-v5"}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, now := fakeClock()
			c := mustComparer(t, nil, 0, 0, "")
			rt := r.Route("iris", irisIdentity(), c)
			rt.Count(0, Dropped)
			if !rt.TryAcquire(10) {
				t.Fatal("TryAcquire on an idle route failed")
			}

			*now = now.Add(time.Minute)
			id := irisIdentity()
			tc.change(&id)
			fresh := r.Route("iris", id, c)
			if fresh == rt {
				t.Fatal("new identity: want a new *Route")
			}
			rep := fresh.Report()
			if rep.Totals.Dropped != 0 || !rep.Since.Equal(*now) {
				t.Errorf("new identity: dropped %d since %v, want 0 since the reload", rep.Totals.Dropped, rep.Since)
			}
			if len(rep.Variants) != len(id.Variants) {
				t.Errorf("%d variants reported, want %d", len(rep.Variants), len(id.Variants))
			}
			// The mirror still in flight was taken on the old Route; the
			// cap counts it until it is released there.
			if fresh.InFlight() != 1 {
				t.Errorf("in flight after the reload = %d, want 1", fresh.InFlight())
			}
			rt.Release()
			if fresh.InFlight() != 0 {
				t.Errorf("in flight after release = %d, want 0", fresh.InFlight())
			}
		})
	}
}

func TestIdentityIsCopied(t *testing.T) {
	r, _ := fakeClock()
	c := mustComparer(t, nil, 0, 0, "")
	id := irisIdentity()
	rt := r.Route("iris", id, c)
	id.Variants[0].Name = "changed by the caller"
	if rt.Report().Variants[0].Variant != "control" {
		t.Fatal("the route shares the caller's Variants slice")
	}
	if r.Route("iris", irisIdentity(), c) != rt {
		t.Fatal("a caller's later change to its slice changed the route's identity")
	}
}

func TestResetAndRetain(t *testing.T) {
	r, now := fakeClock()
	c := mustComparer(t, nil, 0, 0, "")
	iris := r.Route("iris", irisIdentity(), c)
	bert := r.Route("bert", Identity{Pool: "bert-v2", Variants: []VariantInfo{{"", "bert-v1"}}}, c)
	for _, rt := range []*Route{iris, bert} {
		rt.Count(0, Error)
		rt.Pair(0, comparedPair(c, 200, `{"a":1}`, 200, `{"a":2}`))
	}
	*now = now.Add(time.Minute)

	if r.Reset("nope") {
		t.Error("Reset of an unknown route returned true")
	}
	if !r.Reset("iris") {
		t.Fatal("Reset(iris) returned false")
	}
	reps := r.Report()
	if len(reps) != 2 || reps[0].Route != "bert" || reps[1].Route != "iris" {
		t.Fatalf("report routes %v, want bert, iris (sorted)", []string{reps[0].Route, reps[1].Route})
	}
	if got := reps[1]; got.Totals.Mirrored != 0 || len(got.Variants[0].Fields) != 0 || len(got.Variants[0].Samples) != 0 || !got.Since.Equal(*now) {
		t.Errorf("iris after reset: %+v", got)
	}
	if reps[0].Totals.Mirrored != 2 {
		t.Errorf("bert was reset with iris: %+v", reps[0].Totals)
	}
	if r.Route("iris", irisIdentity(), c) != iris {
		t.Error("Reset replaced the *Route: the proxy's copy would record into nothing")
	}
	iris.Count(0, Error)
	if iris.Report().Totals.Error != 1 {
		t.Error("the route does not record after a reset")
	}

	r.ResetAll()
	for _, rep := range r.Report() {
		if rep.Totals.Mirrored != 0 {
			t.Errorf("%s after ResetAll: %+v", rep.Route, rep.Totals)
		}
	}

	r.Retain(map[string]bool{"iris": true})
	if reps := r.Report(); len(reps) != 1 || reps[0].Route != "iris" {
		t.Fatalf("after Retain(iris): %d routes", len(reps))
	}
	if r.Reset("bert") {
		t.Error("a route dropped by Retain can still be reset")
	}
	if again := r.Route("bert", Identity{Pool: "bert-v2", Variants: []VariantInfo{{"", "bert-v1"}}}, c); again == bert {
		t.Error("a route dropped by Retain came back with its old state")
	}
}

func TestPairOutcomes(t *testing.T) {
	c := mustComparer(t, []string{"timestamp"}, 1e-6, 1e-3, "prediction")
	cases := []struct {
		name   string
		ps     int
		pb     string
		ss     int
		sb     string
		want   Outcome
		fields []string
	}{
		{"matched", 200, `{"prediction":"setosa","timestamp":1}`, 200, `{"prediction":"setosa","timestamp":2}`, Matched, nil},
		{"mismatched", 200, `{"prediction":"setosa","p":0.5}`, 200, `{"prediction":"virginica","p":0.9}`, Mismatched, []string{"p", "prediction"}},
		{"shadow failed, primary did not", 200, `{}`, 503, `oops`, Shadow5xx, nil},
		{"shadow 500 against primary 4xx", 422, `{}`, 500, `{}`, Shadow5xx, nil},
		{"both failed differently", 502, `{}`, 500, `{}`, StatusMismatch, nil},
		{"primary failed, shadow did not", 500, `{}`, 200, `{}`, StatusMismatch, nil},
		{"shadow 4xx", 200, `{}`, 404, `{}`, StatusMismatch, nil},
		{"not JSON", 200, `{"a":1}`, 200, `<html>`, NotJSON, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := fakeClock()
			rt := r.Route("iris", irisIdentity(), c)
			got := rt.Pair(1, comparedPair(c, tc.ps, tc.pb, tc.ss, tc.sb))
			if got.Outcome != tc.want || !slices.Equal(got.Fields, tc.fields) {
				t.Fatalf("Pair = %v %q, want %v %q", got.Outcome, got.Fields, tc.want, tc.fields)
			}
			counters := rt.Report().Variants[1].Counters
			if counters.Compared != 1 || counters.Mirrored != 1 {
				t.Errorf("compared %d mirrored %d, want 1 1", counters.Compared, counters.Mirrored)
			}
			if n := outcomeCount(counters, tc.want); n != 1 {
				t.Errorf("%v counted %d times, want once", tc.want, n)
			}
			if other := rt.Report().Variants[0].Counters; other.Compared != 0 {
				t.Errorf("variant 0 counted a pair of variant 1: %+v", other)
			}
		})
	}
}

// outcomeCount reads one outcome's counter from a report.
func outcomeCount(c Counters, o Outcome) int64 {
	return map[Outcome]int64{
		Matched: c.Matched, Mismatched: c.Mismatched, StatusMismatch: c.StatusMismatch, NotJSON: c.NotJSON,
		Shadow5xx: c.Shadow5xx, Timeout: c.Timeout, Error: c.Error, Dropped: c.Dropped,
		SkippedBody: c.SkippedBody, SkippedPrimary: c.SkippedPrimary,
	}[o]
}

func TestCountersAddUp(t *testing.T) {
	r, _ := fakeClock()
	c := mustComparer(t, nil, 0, 0, "")
	rt := r.Route("iris", irisIdentity(), c)
	for o, n := range map[Outcome]int{Timeout: 3, Error: 2, Dropped: 5, SkippedBody: 7, SkippedPrimary: 11} {
		for range n {
			rt.Count(0, o)
		}
	}
	for range 4 {
		rt.Pair(0, comparedPair(c, 200, `{"a":1}`, 200, `{"a":1}`))
	}
	rt.Pair(0, comparedPair(c, 200, `{"a":1}`, 200, `{"a":2}`))
	rt.Count(1, Timeout)
	rt.Count(7, Timeout)     // no such variant: ignored
	rt.Count(0, Outcome(99)) // no such outcome: ignored

	rep := rt.Report()
	v := rep.Variants[0].Counters
	if v.Compared != 5 || v.Mirrored != 10 || v.Dropped != 5 || v.SkippedBody != 7 || v.SkippedPrimary != 11 {
		t.Errorf("variant counters %+v", v)
	}
	if v.MismatchRate == nil || *v.MismatchRate != 0.2 {
		t.Errorf("mismatch rate %v, want 0.2", v.MismatchRate)
	}
	if rep.Variants[1].Counters.MismatchRate != nil {
		t.Error("mismatch rate without compared pairs must be null")
	}
	if tot := rep.Totals; tot.Timeout != 4 || tot.Mirrored != 11 || tot.Compared != 5 {
		t.Errorf("totals %+v", tot)
	}
	if rate, n := rt.MismatchRate(0); rate != 0.2 || n != 5 {
		t.Errorf("MismatchRate(0) = %v, %d; want 0.2, 5", rate, n)
	}
	if rate, n := rt.MismatchRate(1); rate != 0 || n != 0 {
		t.Errorf("MismatchRate(1) = %v, %d; want 0, 0", rate, n)
	}
	if rate, n := rt.OverallMismatchRate(); rate != 0.2 || n != 5 {
		t.Errorf("OverallMismatchRate = %v, %d; want 0.2, 5", rate, n)
	}
}

func TestRouteWithoutVariantsHasOneGroup(t *testing.T) {
	r, _ := fakeClock()
	rt := r.Route("plain", Identity{Pool: "cand"}, nil)
	rt.Count(0, Timeout)
	if rep := rt.Report(); len(rep.Variants) != 1 || rep.Variants[0].Counters.Timeout != 1 {
		t.Fatalf("report %+v", rep)
	}
}

func TestOutcomeNames(t *testing.T) {
	seen := map[string]bool{}
	for _, o := range Outcomes() {
		name := o.String()
		if seen[name] || name == "" || strings.ContainsAny(name, " -") {
			t.Errorf("outcome %d: name %q duplicated or not a label value", o, name)
		}
		seen[name] = true
	}
	if !slices.Equal(OutcomeNames(), []string{"matched", "mismatched", "status_mismatch", "not_json", "shadow_5xx",
		"timeout", "error", "dropped", "skipped_body", "skipped_primary"}) {
		t.Errorf("OutcomeNames() = %q", OutcomeNames())
	}
	if len(seen) != 10 || Matched.String() != "matched" || Shadow5xx.String() != "shadow_5xx" ||
		SkippedPrimary.String() != "skipped_primary" {
		t.Errorf("outcome names %v", seen)
	}
	if Outcome(42).String() != "outcome(42)" {
		t.Errorf("unknown outcome name %q", Outcome(42).String())
	}
}

func TestFieldCountsOncePerPair(t *testing.T) {
	r, _ := fakeClock()
	c := mustComparer(t, nil, 0, 0, "")
	rt := r.Route("iris", irisIdentity(), c)
	got := rt.Pair(0, comparedPair(c, 200, `{"predictions":[{"p":"a","q":1},{"p":"b","q":1},{"p":"c","q":1}]}`,
		200, `{"predictions":[{"p":"x","q":2},{"p":"y","q":1},{"p":"z","q":2}]}`))
	if want := []string{"predictions[].p", "predictions[].q"}; !slices.Equal(got.Fields, want) {
		t.Fatalf("Fields %q, want %q", got.Fields, want)
	}
	for _, f := range rt.Report().Variants[0].Fields {
		if f.Mismatches != 1 {
			t.Errorf("%s counted %d times for one pair", f.Field, f.Mismatches)
		}
	}
}

func TestFieldCapAggregatesUnderOther(t *testing.T) {
	r, _ := fakeClock()
	c := mustComparer(t, nil, 0, 0, "")
	rt := r.Route("iris", irisIdentity(), c)
	// 150 distinct fields in one pair: the first MaxFields by path order
	// are kept, the other 50 count once, together, under "(other)".
	var p, q strings.Builder
	p.WriteString("{")
	q.WriteString("{")
	for i := range 150 {
		if i > 0 {
			p.WriteString(",")
			q.WriteString(",")
		}
		fmt.Fprintf(&p, `"f%03d":0`, i)
		fmt.Fprintf(&q, `"f%03d":1`, i)
	}
	p.WriteString("}")
	q.WriteString("}")
	got := rt.Pair(0, comparedPair(c, 200, p.String(), 200, q.String()))
	if len(got.Fields) != MaxFields+1 || got.Fields[MaxFields] != OtherField {
		t.Fatalf("%d fields counted, last %q; want %d, %q", len(got.Fields), got.Fields[len(got.Fields)-1], MaxFields+1, OtherField)
	}
	// A new field later also lands in "(other)"; a kept one stays itself.
	got = rt.Pair(0, comparedPair(c, 200, `{"new":0,"f000":0}`, 200, `{"new":1,"f000":1}`))
	if !slices.Equal(got.Fields, []string{"f000", OtherField}) {
		t.Fatalf("Fields %q, want [f000 (other)]", got.Fields)
	}
	fields := rt.Report().Variants[0].Fields
	if len(fields) != MaxFields+1 {
		t.Fatalf("%d fields reported, want %d", len(fields), MaxFields+1)
	}
	for _, f := range fields {
		if f.Field == OtherField && f.Mismatches != 2 {
			t.Errorf("(other) counted %d, want 2 (once per pair)", f.Mismatches)
		}
	}
	// A field name that is too long is not kept either.
	long := strings.Repeat("x", maxFieldName+1)
	if got := rt.Pair(1, comparedPair(c, 200, `{"`+long+`":0}`, 200, `{"`+long+`":1}`)); !slices.Equal(got.Fields, []string{OtherField}) {
		t.Errorf("a %d-byte field name counted as %q", len(long), got.Fields)
	}
}

// The memory of a group stays bounded whatever the traffic: fields and
// samples are capped.
func TestMemoryBoundedUnderDistinctFields(t *testing.T) {
	r, _ := fakeClock()
	rt := r.Route("iris", irisIdentity(), nil)
	labels := map[string]bool{}
	for i := range 100_000 {
		name := fmt.Sprintf("field_%d", i)
		rec := rt.Pair(0, &Pair{
			Result:      Result{Outcome: Mismatched, Diffs: []FieldDiff{{Path: name, Field: name, Primary: "1", Candidate: "2"}}},
			PrimaryBody: []byte(`{}`), ShadowBody: []byte(`{}`),
		})
		for _, f := range rec.Fields {
			labels[f] = true
		}
		rt.NoisePair(0, Result{Outcome: Mismatched, Diffs: []FieldDiff{{Path: "n" + name, Field: "n" + name}}})
	}
	v := rt.Report().Variants[0]
	if len(v.Fields) > MaxFields+1 || len(labels) > MaxFields+1 {
		t.Errorf("%d fields kept, %d metric labels handed out; want at most %d", len(v.Fields), len(labels), MaxFields+1)
	}
	if len(v.Samples) != MaxSamples {
		t.Errorf("%d samples, want %d", len(v.Samples), MaxSamples)
	}
	if v.Counters.Mismatched != 100_000 || v.NoisePairs != 100_000 {
		t.Errorf("counters %+v, noise pairs %d", v.Counters, v.NoisePairs)
	}
}

func TestLabelAgreement(t *testing.T) {
	r, _ := fakeClock()
	c := mustComparer(t, nil, 0, 0, "predictions")
	rt := r.Route("iris", irisIdentity(), c)
	rt.Pair(0, comparedPair(c, 200, `{"predictions":["a","b","c"]}`, 200, `{"predictions":["a","x","c"]}`))
	rt.Pair(0, comparedPair(c, 200, `{"predictions":["a"]}`, 200, `{"predictions":["a"]}`))
	rt.Pair(0, comparedPair(c, 200, `{"predictions":["a"]}`, 503, `{}`)) // no label compared
	l := rt.Report().Variants[0].Label
	if l.Pairs != 4 || l.Agree != 3 || l.Agreement == nil || *l.Agreement != 0.75 {
		t.Errorf("label %+v (agreement %v), want 3 of 4 = 0.75", l, l.Agreement)
	}
	if rt.Report().Variants[1].Label.Agreement != nil {
		t.Error("agreement without label pairs must be null")
	}
}

func TestLatencyDeltaQuantiles(t *testing.T) {
	r, _ := fakeClock()
	rt := r.Route("iris", irisIdentity(), nil)
	// Deltas of -50, -49, ..., +49 ms: the shadow is faster half the time.
	var deltas []float64
	for i := -50; i < 50; i++ {
		d := time.Duration(i) * time.Millisecond
		rt.Pair(0, &Pair{Result: Result{Outcome: Matched}, PrimaryLatency: 100 * time.Millisecond, ShadowLatency: 100*time.Millisecond + d})
		deltas = append(deltas, float64(i))
	}
	// Always 250 ms slower on variant 1.
	for range 10 {
		rt.Pair(1, &Pair{Result: Result{Outcome: Matched}, PrimaryLatency: 5 * time.Millisecond, ShadowLatency: 255 * time.Millisecond})
	}
	// Always 3 s faster on the other variant: all negative.
	rt2 := r.Route("neg", Identity{Pool: "x"}, nil)
	for range 10 {
		rt2.Pair(0, &Pair{Result: Result{Outcome: Matched}, PrimaryLatency: 3 * time.Second, ShadowLatency: 0})
	}

	within := func(got *float64, want float64) bool {
		return got != nil && (*got-want <= 0.01*abs(want)+0.001 && want-*got <= 0.01*abs(want)+0.001)
	}
	ld := rt.Report().Variants[0].LatencyDeltaMS
	// The nearest-rank quantile, as HdrHistogram computes it.
	rank := func(p float64) float64 { return deltas[percentileRank(p, int64(len(deltas)))-1] }
	for _, c := range []struct {
		name string
		got  *float64
		p    float64
	}{{"p50", ld.P50, 50}, {"p95", ld.P95, 95}, {"p99", ld.P99, 99}} {
		if !within(c.got, rank(c.p)) {
			t.Errorf("%s = %v, want %v", c.name, deref(c.got), rank(c.p))
		}
	}
	if ld.N != 100 {
		t.Errorf("n = %d, want 100", ld.N)
	}
	if v1 := rt.Report().Variants[1].LatencyDeltaMS; !within(v1.P50, 250) || !within(v1.P99, 250) {
		t.Errorf("variant 1 p50 %v p99 %v, want 250", deref(v1.P50), deref(v1.P99))
	}
	neg := rt2.Report().Variants[0].LatencyDeltaMS
	if !within(neg.P50, -3000) || !within(neg.P99, -3000) {
		t.Errorf("all-negative p50 %v p99 %v, want -3000", deref(neg.P50), deref(neg.P99))
	}

	// Coarse buckets, (lower, upper]: (-100,-10] holds -50..-10, (-10,-1]
	// -9..-1, (-1,0] 0, (0,1] 1, (1,10] 2..10, (10,100] 11..49.
	want := map[string]int64{"-1000": 0, "-100": 0, "-10": 41, "-1": 9, "0": 1, "1": 1, "10": 9, "100": 39, "1000": 0, "+inf": 0}
	for _, b := range ld.Buckets {
		key := "+inf"
		if b.LeMS != nil {
			key = fmt.Sprint(*b.LeMS)
		}
		if b.Count != want[key] {
			t.Errorf("bucket le %s: %d, want %d", key, b.Count, want[key])
		}
	}
	if none := r.Route("none", Identity{Pool: "x"}, nil).Report().Variants[0].LatencyDeltaMS; none.P50 != nil || none.N != 0 || len(none.Buckets) != 10 {
		t.Errorf("without pairs: %+v", none)
	}
}

func abs(x float64) float64 { return max(x, -x) }

func deref(x *float64) any {
	if x == nil {
		return nil
	}
	return *x
}

func TestReservoirKeepsCopies(t *testing.T) {
	r, _ := fakeClock()
	rt := r.Route("iris", irisIdentity(), nil)
	body := []byte(`{"error":"overloaded"}`)
	p := &Pair{
		Result:        Result{Outcome: StatusMismatch},
		PrimaryStatus: 200, ShadowStatus: 503,
		RequestID:   "req-0",
		PrimaryBody: []byte(`{"prediction":"setosa"}`),
		ShadowBody:  body,
	}
	rt.Pair(0, p)
	// The caller reuses its buffers.
	copy(body, "XXXXXXXXXXXXXXXXXXXX")
	copy(p.PrimaryBody, "YYYYYYYYYYYY")
	s := rt.Report().Variants[0].Samples[0]
	if s.ShadowBody != `{"error":"overloaded"}` || s.PrimaryBody != `{"prediction":"setosa"}` ||
		s.Outcome != "shadow_5xx" || s.ShadowStatus != 503 || s.RequestID != "req-0" {
		t.Fatalf("sample changed with the caller's buffers: %+v", s)
	}

	diffs := []FieldDiff{{Path: "a", Field: "a", Primary: "1", Candidate: "2"}}
	for i := range 1000 {
		rt.Pair(0, &Pair{Result: Result{Outcome: Mismatched, Diffs: diffs}, RequestID: fmt.Sprint(i), PrimaryBody: body, ShadowBody: body})
		rt.Pair(0, &Pair{Result: Result{Outcome: Matched}}) // never sampled
	}
	diffs[0].Candidate = "changed"
	samples := rt.Report().Variants[0].Samples
	if len(samples) != MaxSamples {
		t.Fatalf("%d samples, want %d", len(samples), MaxSamples)
	}
	for _, s := range samples {
		if s.Outcome == "matched" {
			t.Error("a matching pair was sampled")
		}
		if s.Outcome == "mismatched" && (s.PrimaryBody != "" || s.Diffs[0].Candidate != "2") {
			t.Errorf("mismatched sample %+v: want its own diffs and no bodies", s)
		}
	}
}

func TestSampleTruncation(t *testing.T) {
	r, _ := fakeClock()
	rt := r.Route("iris", irisIdentity(), nil)
	big := strings.Repeat("é", MaxSampleBody) // 2 bytes each: a cut could split one
	var diffs []FieldDiff
	for i := range 25 {
		diffs = append(diffs, FieldDiff{Path: fmt.Sprint(i), Field: "f", Primary: big, Candidate: "1"})
	}
	rt.Pair(0, &Pair{Result: Result{Outcome: NotJSON}, PrimaryBody: []byte(big), ShadowBody: []byte("short")})
	rt.Pair(1, &Pair{Result: Result{Outcome: Mismatched, Diffs: diffs}})
	v := rt.Report().Variants
	s := v[0].Samples[0]
	if len(s.PrimaryBody) > MaxSampleBody+len(truncateMark) || !strings.HasSuffix(s.PrimaryBody, truncateMark) ||
		strings.ContainsRune(s.PrimaryBody, '\uFFFD') || s.ShadowBody != "short" {
		t.Errorf("body of %d bytes kept as %d bytes, suffix %q", len(big), len(s.PrimaryBody), s.PrimaryBody[len(s.PrimaryBody)-8:])
	}
	m := v[1].Samples[0]
	if len(m.Diffs) != MaxSampleDiffs || m.MoreDiffs != 15 || len(m.Diffs[0].Primary) > maxSampleValue+len(truncateMark) {
		t.Errorf("%d diffs kept (+%d), first value %d bytes", len(m.Diffs), m.MoreDiffs, len(m.Diffs[0].Primary))
	}
}

// Each pair is equally likely to end in the reservoir (Algorithm R): of 100
// pairs, the first half should hold about half of the samples.
func TestReservoirIsUniform(t *testing.T) {
	const trials = 300
	firstHalf := 0
	for range trials {
		r, _ := fakeClock()
		rt := r.Route("iris", irisIdentity(), nil)
		for i := range 100 {
			rt.Pair(0, &Pair{Result: Result{Outcome: NotJSON}, RequestID: fmt.Sprint(i)})
		}
		for _, s := range rt.Report().Variants[0].Samples {
			var i int
			fmt.Sscan(s.RequestID, &i)
			if i < 50 {
				firstHalf++
			}
		}
	}
	// trials·8 = 2400 samples, half expected in the first half; the
	// binomial's standard deviation is about 25: allow 5 of them.
	if want := trials * MaxSamples / 2; firstHalf < want-125 || firstHalf > want+125 {
		t.Errorf("%d of %d samples from the first half of the pairs, want about %d", firstHalf, trials*MaxSamples, want)
	}
}

func TestInFlightSlots(t *testing.T) {
	r, _ := fakeClock()
	rt := r.Route("iris", irisIdentity(), nil)
	for i := range 2 {
		if !rt.TryAcquire(2) {
			t.Fatalf("slot %d of two not granted", i+1)
		}
	}
	if rt.TryAcquire(2) {
		t.Fatal("a third slot of two granted")
	}
	if rt.InFlight() != 2 {
		t.Fatalf("InFlight = %d, want 2", rt.InFlight())
	}
	rt.Release()
	if !rt.TryAcquire(2) {
		t.Fatal("a released slot is not granted again")
	}
	if !r.Reset("iris") || rt.InFlight() != 2 {
		t.Fatalf("Reset changed the slots: %d in flight", rt.InFlight())
	}
	if rt.TryAcquire(0) {
		t.Fatal("max 0 granted a slot")
	}

	// Under contention the cap holds exactly.
	rt.Release()
	rt.Release()
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for range 64 {
		wg.Go(func() {
			if rt.TryAcquire(10) {
				mu.Lock()
				granted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if granted != 10 || rt.InFlight() != 10 {
		t.Fatalf("%d granted, %d in flight; want 10", granted, rt.InFlight())
	}
}

// Many goroutines recording, reporting, resetting and reloading at once:
// run with -race.
func TestConcurrentUse(t *testing.T) {
	r, _ := fakeClock()
	r.now = time.Now // the fake clock's variable is not synchronised
	c := mustComparer(t, nil, 0, 0, "prediction")
	id := irisIdentity()
	mismatch := comparedPair(c, 200, `{"prediction":"a","x":[1,2]}`, 200, `{"prediction":"b","x":[1,3]}`)
	match := comparedPair(c, 200, `{"prediction":"a"}`, 200, `{"prediction":"a"}`)
	failed := comparedPair(c, 200, `{}`, 500, `<html>`)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			rt := r.Route("iris", id, c)
			for i := range 500 {
				if rt.TryAcquire(8) {
					switch i % 4 {
					case 0:
						rt.Pair(g%2, mismatch)
					case 1:
						rt.Pair(g%2, match)
					case 2:
						rt.Pair(g%2, failed)
					case 3:
						rt.NoisePair(g%2, mismatch.Result)
					}
					rt.Release()
				} else {
					rt.Count(g%2, Dropped)
				}
				rt.Count(g%2, Timeout)
				if i%50 == 0 {
					rt.MismatchRate(g % 2)
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for i := range 100 {
				for _, rep := range r.Report() {
					if rep.Totals.Compared > rep.Totals.Mirrored {
						t.Errorf("compared %d > mirrored %d", rep.Totals.Compared, rep.Totals.Mirrored)
					}
				}
				if i%10 == 0 {
					r.Reset("iris")
				}
				if i%25 == 0 {
					r.ResetAll()
					r.Route("iris", id, c)
				}
			}
		})
	}
	wg.Wait()
	if n := r.Route("iris", id, c).InFlight(); n != 0 {
		t.Fatalf("%d slots left taken", n)
	}
}

// Recording a matching pair, the common case, allocates nothing.
func TestMatchedPairDoesNotAllocate(t *testing.T) {
	r, _ := fakeClock()
	rt := r.Route("iris", irisIdentity(), nil)
	p := &Pair{Result: Result{Outcome: Matched, LabelPairs: 1, LabelAgree: 1}, PrimaryLatency: time.Millisecond, ShadowLatency: 2 * time.Millisecond}
	if n := testing.AllocsPerRun(1000, func() { rt.Pair(0, p) }); n != 0 {
		t.Errorf("%v allocations per matched pair", n)
	}
	rt.Pair(0, &Pair{Result: Result{Outcome: Mismatched, Diffs: []FieldDiff{{Field: "a"}}}})
	mis := &Pair{Result: Result{Outcome: Mismatched, Diffs: []FieldDiff{{Field: "a"}}}}
	for range MaxSamples * 1000 { // the reservoir now rarely takes one
		rt.Pair(1, mis)
	}
	// One allocation: the Fields slice handed back.
	if n := testing.AllocsPerRun(1000, func() { rt.Pair(1, mis) }); n > 1.1 {
		t.Errorf("%v allocations per mismatching pair of a known field", n)
	}
	if n := testing.AllocsPerRun(1000, func() { rt.Count(0, Dropped) }); n != 0 {
		t.Errorf("%v allocations per Count", n)
	}
}

func BenchmarkPairMatched(b *testing.B) {
	r := NewRegistry()
	rt := r.Route("iris", irisIdentity(), nil)
	p := &Pair{Result: Result{Outcome: Matched}, PrimaryLatency: time.Millisecond, ShadowLatency: 2 * time.Millisecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rt.Pair(0, p)
		}
	})
}
