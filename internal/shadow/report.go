package shadow

import (
	"math"
	"sort"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Verdicts on a field; see the package comment.
const (
	VerdictDifference  = "difference"   // the candidate differs from the primary
	VerdictNoise       = "noise"        // the primary differs from itself about as often
	VerdictBelowMargin = "below_margin" // too rare to tell, and never seen in the noise
)

// The margins of the noise rule.
const (
	// MinDifference is the smallest mismatch rate above the noise rate
	// that can be a difference: one percentage point.
	MinDifference = 0.01
	// NoiseSigmas is how many standard errors of the difference of the two
	// rates it must also exceed.
	NoiseSigmas = 3
)

// NoiseRule states, in every report, how a field's verdict is reached.
const NoiseRule = "p1 = field mismatches / compared pairs, p0 = noise mismatches / noise pairs (n0); " +
	"without noise pairs any mismatch is a difference; otherwise a field is a difference only when " +
	"p1 - p0 > max(0.01, 3*sqrt(p0(1-p0)/n0 + p1(1-p1)/n1)), else noise when the noise copy also mismatched it, else below_margin"

// RouteReport is the shadow state of one route, as served at GET
// /admin/shadow. Numbers that cannot be computed (a rate of nothing) are
// null, never NaN.
type RouteReport struct {
	Route      string `json:"route"`
	ShadowPool string `json:"shadow_pool"`
	NoisePool  string `json:"noise_pool,omitempty"`
	// Since is when these numbers started: the route's creation, a change
	// of its identity, or a reset.
	Since     time.Time `json:"since"`
	NoiseRule string    `json:"noise_rule"`
	// InFlight is the number of mirrors out now.
	InFlight int `json:"in_flight"`
	// Totals are the counters summed over the variants.
	Totals Counters `json:"totals"`
	// Variants in config order.
	Variants []VariantReport `json:"variants"`
}

// VariantReport is what became of the mirrors of the requests one primary
// variant answered.
type VariantReport struct {
	Variant        string       `json:"variant"`
	Pool           string       `json:"pool"`
	Counters       Counters     `json:"counters"`
	Label          Label        `json:"label"`
	LatencyDeltaMS LatencyDelta `json:"latency_delta_ms"`
	// NoisePairs are the pairs compared against the noise copy.
	NoisePairs int64 `json:"noise_pairs"`
	// Fields that mismatched, by candidate mismatch rate, descending.
	Fields []FieldReport `json:"fields"`
	// Samples of non-matching pairs, oldest first.
	Samples []Sample `json:"samples"`
}

// Counters of mirror outcomes.
type Counters struct {
	// Mirrored is every mirror that went out: Compared + Timeout + Error.
	Mirrored int64 `json:"mirrored"`
	// Compared is every pair compared: Matched + Mismatched +
	// StatusMismatch + NotJSON + Shadow5xx.
	Compared       int64 `json:"compared"`
	Matched        int64 `json:"matched"`
	Mismatched     int64 `json:"mismatched"`
	StatusMismatch int64 `json:"status_mismatch"`
	NotJSON        int64 `json:"not_json"`
	Shadow5xx      int64 `json:"shadow_5xx"`
	Timeout        int64 `json:"timeout"`
	Error          int64 `json:"error"`
	Dropped        int64 `json:"dropped"`
	SkippedBody    int64 `json:"skipped_body"`
	SkippedPrimary int64 `json:"skipped_primary"`
	// MismatchRate is (Compared - Matched) / Compared; null without
	// compared pairs.
	MismatchRate *float64 `json:"mismatch_rate"`
}

// Label is the agreement on the predicted class (compare.label).
type Label struct {
	Pairs int64 `json:"pairs"`
	Agree int64 `json:"agree"`
	// Agreement is Agree/Pairs; null without pairs.
	Agreement *float64 `json:"agreement"`
}

// LatencyDelta describes the shadow's latency minus the primary's over
// the compared pairs, in milliseconds: negative when the shadow was faster.
// Quantiles are within 1% (and to the microsecond), |delta| capped at
// DeltaMax; null without pairs.
type LatencyDelta struct {
	N   int64    `json:"n"`
	P50 *float64 `json:"p50"`
	P95 *float64 `json:"p95"`
	P99 *float64 `json:"p99"`
	// Buckets count the deltas in (previous le_ms, le_ms]; the last one,
	// le_ms null, everything above the last bound.
	Buckets []Bucket `json:"buckets"`
}

// Bucket is one coarse latency-delta bucket.
type Bucket struct {
	LeMS  *float64 `json:"le_ms"`
	Count int64    `json:"count"`
}

// FieldReport is one field's mismatches, against the candidate and the
// noise copy, and the verdict of the noise rule.
type FieldReport struct {
	Field      string `json:"field"`
	Mismatches int64  `json:"mismatches"`
	// Rate is Mismatches / compared pairs; null without compared pairs.
	Rate            *float64 `json:"rate"`
	NoiseMismatches int64    `json:"noise_mismatches"`
	// NoiseRate is NoiseMismatches / noise pairs; null without noise pairs
	// (unmeasured, not zero).
	NoiseRate *float64 `json:"noise_rate"`
	Verdict   string   `json:"verdict"`
}

// Sample is one non-matching pair kept for people to look at. Texts are
// truncated (MaxSampleBody, and 256 bytes per diff value), a cut marked
// with "…".
type Sample struct {
	Time             time.Time `json:"time"`
	RequestID        string    `json:"request_id"`
	Method           string    `json:"method"`
	URI              string    `json:"uri"`
	Outcome          string    `json:"outcome"`
	PrimaryStatus    int       `json:"primary_status"`
	ShadowStatus     int       `json:"shadow_status"`
	PrimaryLatencyMS float64   `json:"primary_latency_ms"`
	ShadowLatencyMS  float64   `json:"shadow_latency_ms"`
	// Diffs are the first MaxSampleDiffs differing leaves (Mismatched);
	// MoreDiffs counts the others.
	Diffs     []FieldDiff `json:"diffs,omitempty"`
	MoreDiffs int         `json:"more_diffs,omitempty"`
	// Bodies, for every outcome but Mismatched.
	PrimaryBody string `json:"primary_body,omitempty"`
	ShadowBody  string `json:"shadow_body,omitempty"`
}

// Report is the current state of the route.
func (rt *Route) Report() RouteReport {
	st := rt.state.Load()
	rep := RouteReport{
		Route:      rt.name,
		ShadowPool: rt.id.Pool,
		NoisePool:  rt.id.NoisePool,
		Since:      st.since,
		NoiseRule:  NoiseRule,
		InFlight:   rt.InFlight(),
		Variants:   make([]VariantReport, len(st.groups)),
	}
	var totals [numOutcomes]int64
	for i, g := range st.groups {
		var info VariantInfo
		if i < len(rt.id.Variants) {
			info = rt.id.Variants[i]
		}
		vr, counts := g.report(info)
		rep.Variants[i] = vr
		for o := range totals {
			totals[o] += counts[o]
		}
	}
	rep.Totals = countersOf(totals)
	return rep
}

// report describes the group, and returns the counts it was built from.
func (g *group) report(info VariantInfo) (VariantReport, [numOutcomes]int64) {
	g.mu.Lock()
	counts := g.loadCounts()
	vr := VariantReport{
		Variant:    info.Name,
		Pool:       info.Pool,
		Counters:   countersOf(counts),
		Label:      Label{Pairs: g.labelPairs, Agree: g.labelAgree},
		NoisePairs: g.noisePairs,
		Fields:     make([]FieldReport, 0, len(g.fields)),
		Samples:    copySamples(g.samples),
	}
	vr.LatencyDeltaMS = g.latencyDelta()
	n1, n0 := vr.Counters.Compared, g.noisePairs
	for name, fc := range g.fields {
		vr.Fields = append(vr.Fields, FieldReport{
			Field:           name,
			Mismatches:      fc.mismatches,
			Rate:            ratio(fc.mismatches, n1),
			NoiseMismatches: fc.noise,
			NoiseRate:       ratio(fc.noise, n0),
			Verdict:         verdict(fc.mismatches, n1, fc.noise, n0),
		})
	}
	g.mu.Unlock()

	vr.Label.Agreement = ratio(vr.Label.Agree, vr.Label.Pairs)
	// Within a group every rate has the same denominator: by count.
	sort.Slice(vr.Fields, func(i, j int) bool {
		a, b := vr.Fields[i], vr.Fields[j]
		if a.Mismatches != b.Mismatches {
			return a.Mismatches > b.Mismatches
		}
		return a.Field < b.Field
	})
	sort.SliceStable(vr.Samples, func(i, j int) bool { return vr.Samples[i].Time.Before(vr.Samples[j].Time) })
	return vr, counts
}

// copySamples copies the reservoir: a Sample is never modified once taken
// (a replaced one is overwritten whole, its Diffs slice with it), so a
// shallow copy is a snapshot.
func copySamples(samples []Sample) []Sample {
	return append(make([]Sample, 0, len(samples)), samples...)
}

// latencyDelta reads the histograms. Called with g.mu held.
func (g *group) latencyDelta() LatencyDelta {
	ld := LatencyDelta{N: g.deltaNeg.TotalCount() + g.deltaPos.TotalCount()}
	if ld.N > 0 {
		q := func(p float64) *float64 { return finite(deltaQuantile(g.deltaNeg, g.deltaPos, p)) }
		ld.P50, ld.P95, ld.P99 = q(50), q(95), q(99)
	}
	ld.Buckets = make([]Bucket, len(g.buckets))
	for i, c := range g.buckets {
		ld.Buckets[i].Count = c
		if i < len(deltaEdgesMS) {
			le := deltaEdgesMS[i]
			ld.Buckets[i].LeMS = &le
		}
	}
	return ld
}

// deltaQuantile is the percentile p of the deltas held as magnitudes of
// the negative ones (neg) and the others (pos), in milliseconds. In
// ascending order the negative deltas come first, largest magnitude first;
// the rank is HdrHistogram's, so that a single histogram would give the
// same answer.
func deltaQuantile(neg, pos *hdrhistogram.Histogram, p float64) float64 {
	nNeg, nPos := neg.TotalCount(), pos.TotalCount()
	rank := percentileRank(p, nNeg+nPos)
	if rank <= nNeg {
		return -float64(valueAtRank(neg, nNeg-rank+1)) / 1e3
	}
	return float64(valueAtRank(pos, rank-nNeg)) / 1e3
}

// percentileRank is the 1-based rank of percentile p among n values, as
// HdrHistogram computes it: p/100·n rounded, within [1, n].
func percentileRank(p float64, n int64) int64 {
	rank := int64(p/100*float64(n) + 0.5)
	return min(max(rank, 1), n)
}

// valueAtRank is the k-th smallest value of h (1-based): the percentile
// 100·k/n maps back to rank k under percentileRank.
func valueAtRank(h *hdrhistogram.Histogram, k int64) int64 {
	return h.ValueAtPercentile(100 * float64(k) / float64(h.TotalCount()))
}

// verdict applies the noise rule to a field with m1 mismatches in n1
// compared pairs and m0 in n0 noise pairs.
func verdict(m1, n1, m0, n0 int64) string {
	if n0 == 0 {
		if m1 > 0 {
			return VerdictDifference
		}
		return VerdictBelowMargin
	}
	var p1, v1 float64
	if n1 > 0 {
		p1 = float64(m1) / float64(n1)
		v1 = p1 * (1 - p1) / float64(n1)
	}
	p0 := float64(m0) / float64(n0)
	margin := math.Max(MinDifference, NoiseSigmas*math.Sqrt(p0*(1-p0)/float64(n0)+v1))
	switch {
	case p1-p0 > margin:
		return VerdictDifference
	case m0 > 0:
		return VerdictNoise
	}
	return VerdictBelowMargin
}

// countersOf names the counts.
func countersOf(c [numOutcomes]int64) Counters {
	out := Counters{
		Matched:        c[Matched],
		Mismatched:     c[Mismatched],
		StatusMismatch: c[StatusMismatch],
		NotJSON:        c[NotJSON],
		Shadow5xx:      c[Shadow5xx],
		Timeout:        c[Timeout],
		Error:          c[Error],
		Dropped:        c[Dropped],
		SkippedBody:    c[SkippedBody],
		SkippedPrimary: c[SkippedPrimary],
	}
	out.Compared = out.Matched + out.Mismatched + out.StatusMismatch + out.NotJSON + out.Shadow5xx
	out.Mirrored = out.Compared + out.Timeout + out.Error
	out.MismatchRate = ratio(out.Compared-out.Matched, out.Compared)
	return out
}

// ratio is a/b, nil when b is 0.
func ratio(a, b int64) *float64 {
	if b == 0 {
		return nil
	}
	return finite(float64(a) / float64(b))
}

// finite returns a pointer to x, or nil when x is NaN or infinite:
// encoding/json refuses those, and null is the honest answer anyway.
func finite(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}
