package shadow

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		name           string
		m1, n1, m0, n0 int64
		want           string
	}{
		{"no noise pairs, any mismatch", 1, 1000, 0, 0, VerdictDifference},
		{"no noise pairs, no mismatch", 0, 1000, 0, 0, VerdictBelowMargin},
		{"candidate only, clearly", 200, 1000, 0, 100, VerdictDifference},
		{"as often in the noise", 300, 1000, 30, 100, VerdictNoise},
		{"a little more than the noise, within 3 standard errors", 350, 1000, 30, 100, VerdictNoise},
		{"far more than the noise", 600, 1000, 30, 100, VerdictDifference},
		{"under one point above a silent noise copy", 5, 1000, 0, 1000, VerdictBelowMargin},
		{"just over one point with large samples", 2100, 100000, 1000, 100000, VerdictDifference},
		{"one point exactly is not over it", 2000, 100000, 1000, 100000, VerdictNoise},
		{"rarer than the noise", 10, 1000, 50, 100, VerdictNoise},
		{"noise only, no compared pairs", 0, 0, 5, 10, VerdictNoise},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := verdict(tc.m1, tc.n1, tc.m0, tc.n0); got != tc.want {
				t.Errorf("verdict(%d/%d vs %d/%d) = %s, want %s", tc.m1, tc.n1, tc.m0, tc.n0, got, tc.want)
			}
		})
	}
}

// The noise rule end to end: a field that is random in every answer (the
// noise copy disagrees with the primary as often as the candidate does) is
// noise; a field only the candidate changes is a difference.
func TestNoiseRuleSeparatesRandomFieldsFromDifferences(t *testing.T) {
	r, _ := fakeClock()
	c := mustComparer(t, nil, 0, 0, "")
	rt := r.Route("iris", irisIdentity(), c)
	rng := rand.New(rand.NewPCG(1, 2))
	body := func(prediction string) string {
		// seed is random on every run of the model: two runs differ 40% of the time.
		seed := "a"
		if rng.Float64() < 0.4 {
			seed = "b"
		}
		return `{"prediction":"` + prediction + `","seed":"` + seed + `"}`
	}
	const pairs, noisePairs = 5000, 500
	for i := range pairs {
		candidate := "setosa"
		if i%10 == 0 { // the candidate predicts differently on 10% of requests
			candidate = "virginica"
		}
		rt.Pair(0, comparedPair(c, 200, body("setosa"), 200, body(candidate)))
	}
	for range noisePairs {
		rt.NoisePair(0, c.Compare(200, []byte(body("setosa")), 200, []byte(body("setosa"))))
	}

	v := rt.Report().Variants[0]
	if v.NoisePairs != noisePairs {
		t.Fatalf("noise pairs %d, want %d", v.NoisePairs, noisePairs)
	}
	got := map[string]FieldReport{}
	for _, f := range v.Fields {
		got[f.Field] = f
	}
	if f := got["seed"]; f.Verdict != VerdictNoise || f.NoiseRate == nil || *f.NoiseRate < 0.3 {
		t.Errorf("seed: %+v (noise rate %v), want noise", f, deref(f.NoiseRate))
	}
	if f := got["prediction"]; f.Verdict != VerdictDifference || f.Rate == nil || *f.Rate != 0.1 ||
		f.NoiseRate == nil || *f.NoiseRate != 0 {
		t.Errorf("prediction: %+v (rate %v, noise rate %v), want a difference at 10%%", f, deref(f.Rate), deref(f.NoiseRate))
	}
	// Sorted by candidate mismatch rate: seed (~48%) before prediction (10%).
	if len(v.Fields) != 2 || v.Fields[0].Field != "seed" {
		t.Errorf("fields %+v, want seed then prediction", v.Fields)
	}

	// Without a noise pool the noise rate is unmeasured, not zero, and every
	// field that mismatched is a difference.
	plain := r.Route("plain", Identity{Pool: "cand", Variants: []VariantInfo{{"", "prim"}}}, c)
	plain.Pair(0, comparedPair(c, 200, `{"seed":"a"}`, 200, `{"seed":"b"}`))
	f := plain.Report().Variants[0].Fields[0]
	if f.NoiseRate != nil || f.Verdict != VerdictDifference {
		t.Errorf("without noise pairs: %+v, want noise_rate null and a difference", f)
	}
}

func TestFieldsSortedByRateThenName(t *testing.T) {
	r, _ := fakeClock()
	c := mustComparer(t, nil, 0, 0, "")
	rt := r.Route("iris", irisIdentity(), c)
	rt.Pair(0, comparedPair(c, 200, `{"b":1,"a":1,"c":1}`, 200, `{"b":2,"a":2,"c":2}`))
	rt.Pair(0, comparedPair(c, 200, `{"c":1}`, 200, `{"c":2}`))
	var names []string
	for _, f := range rt.Report().Variants[0].Fields {
		names = append(names, f.Field)
	}
	if strings.Join(names, ",") != "c,a,b" {
		t.Errorf("fields in order %v, want c (2 of 2), then a and b (1 of 2) by name", names)
	}
}

func TestReportJSON(t *testing.T) {
	r, _ := fakeClock()
	c := mustComparer(t, nil, 0, 0, "prediction")
	rt := r.Route("iris", irisIdentity(), c)
	rt.Pair(0, comparedPair(c, 200, `{"prediction":"a"}`, 200, `{"prediction":"b"}`))
	rt.Count(1, Dropped)
	b, err := json.Marshal(r.Report())
	if err != nil {
		t.Fatal(err)
	}
	var doc []map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	route := doc[0]
	for _, key := range []string{"route", "shadow_pool", "noise_pool", "since", "noise_rule", "totals", "variants"} {
		if _, ok := route[key]; !ok {
			t.Errorf("route report lacks %q: %s", key, b)
		}
	}
	if route["noise_rule"] != NoiseRule {
		t.Errorf("noise_rule %v", route["noise_rule"])
	}
	variants := route["variants"].([]any)
	v0, v1 := variants[0].(map[string]any), variants[1].(map[string]any)
	counters := v0["counters"].(map[string]any)
	for _, key := range []string{"mirrored", "compared", "matched", "mismatched", "status_mismatch", "not_json",
		"shadow_5xx", "timeout", "error", "dropped", "skipped_body", "skipped_primary", "mismatch_rate"} {
		if _, ok := counters[key]; !ok {
			t.Errorf("counters lack %q", key)
		}
	}
	if counters["mismatch_rate"] != 1.0 {
		t.Errorf("mismatch_rate %v, want 1", counters["mismatch_rate"])
	}
	// Rates of nothing are null.
	c1 := v1["counters"].(map[string]any)
	if rate, ok := c1["mismatch_rate"]; !ok || rate != nil || c1["dropped"] != 1.0 {
		t.Errorf("variant without pairs: %v", c1)
	}
	if label := v1["label"].(map[string]any); label["agreement"] != nil {
		t.Errorf("agreement without pairs: %v", label["agreement"])
	}
	field := v0["fields"].([]any)[0].(map[string]any)
	if field["field"] != "prediction" || field["rate"] != 1.0 || field["noise_rate"] != nil || field["verdict"] != VerdictDifference {
		t.Errorf("field %v", field)
	}
	ld := v0["latency_delta_ms"].(map[string]any)
	buckets := ld["buckets"].([]any)
	if last := buckets[len(buckets)-1].(map[string]any); last["le_ms"] != nil {
		t.Errorf("last bucket le_ms %v, want null (+inf)", last["le_ms"])
	}
	if ld["n"] != 1.0 || ld["p50"] == nil {
		t.Errorf("latency delta %v", ld)
	}
	if s := v0["samples"].([]any)[0].(map[string]any); s["outcome"] != "mismatched" || s["request_id"] != "req-1" || s["diffs"] == nil {
		t.Errorf("sample %v", s)
	}
	if _, ok := v1["samples"].([]any); !ok {
		t.Errorf("samples of a variant without any: %v, want []", v1["samples"])
	}
}

func TestSamplesOldestFirst(t *testing.T) {
	r, now := fakeClock()
	rt := r.Route("iris", irisIdentity(), nil)
	for range 5 {
		rt.Pair(0, &Pair{Result: Result{Outcome: NotJSON}})
		*now = now.Add(time.Second)
	}
	s := rt.Report().Variants[0].Samples
	for i := 1; i < len(s); i++ {
		if !s[i-1].Time.Before(s[i].Time) {
			t.Fatalf("samples out of order: %v then %v", s[i-1].Time, s[i].Time)
		}
	}
}
