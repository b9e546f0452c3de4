package console

import (
	"strconv"

	"github.com/sluice-gw/sluice/internal/shadow"
)

// shadowFields is how many fields per variant the mismatch chart draws,
// the most mismatched first.
const shadowFields = 15

type shadowView struct {
	Rows   []shadowRow
	Routes []shadowRoute
}

// shadowRow is one route's totals.
type shadowRow struct {
	Route, ShadowPool, NoisePool                 string
	Mirrored, Compared, Matched, Mismatch, Label string
	DeltaP50, DeltaP99, Dropped, Skipped, Failed string
	InFlight                                     string
}

// shadowRoute is one route's details: per primary variant, its counters
// and two charts.
type shadowRoute struct {
	Route, Since string
	Variants     []shadowVariant
}

type shadowVariant struct {
	Title                                           string
	Compared, Matched, Mismatched, StatusMismatch   string
	NotJSON, Shadow5xx, Timeout, Error, NoisePairs  string
	LabelPairs, Label, DeltaP50, DeltaP95, DeltaP99 string
	// Fields charts the per-field mismatch rates (nil: none mismatched),
	// Deltas the latency-delta histogram (nil: no pairs yet).
	Fields, Deltas *chart
}

func (c *Console) shadowPage() any {
	var v shadowView
	for _, rep := range c.gw.Shadows().Report() {
		t := rep.Totals
		row := shadowRow{
			Route: rep.Route, ShadowPool: rep.ShadowPool, NoisePool: rep.NoisePool,
			Mirrored: count(t.Mirrored), Compared: count(t.Compared), Matched: count(t.Matched),
			Mismatch: percent(t.MismatchRate, 1), Label: dash, DeltaP50: dash, DeltaP99: dash,
			Dropped: count(t.Dropped), Skipped: count(t.SkippedBody + t.SkippedPrimary),
			Failed: count(t.Timeout + t.Error), InFlight: strconv.Itoa(rep.InFlight),
		}
		if row.NoisePool == "" {
			row.NoisePool = dash
		}
		if len(rep.Variants) == 1 {
			// The route's own numbers; summed over variants they would mean
			// nothing.
			v0 := rep.Variants[0]
			row.Label = percent(v0.Label.Agreement, 1)
			row.DeltaP50, row.DeltaP99 = deltaMS(v0.LatencyDeltaMS.P50), deltaMS(v0.LatencyDeltaMS.P99)
		}
		v.Rows = append(v.Rows, row)

		route := shadowRoute{Route: rep.Route, Since: clock(&rep.Since)}
		for _, vr := range rep.Variants {
			route.Variants = append(route.Variants, shadowVariantView(rep.Route, vr))
		}
		v.Routes = append(v.Routes, route)
	}
	return v
}

func shadowVariantView(route string, vr shadow.VariantReport) shadowVariant {
	title := vr.Pool
	if vr.Variant != "" && vr.Variant != vr.Pool {
		title = vr.Variant + " (pool " + vr.Pool + ")"
	}
	c, d := vr.Counters, vr.LatencyDeltaMS
	sv := shadowVariant{
		Title: title, Compared: count(c.Compared), Matched: count(c.Matched), Mismatched: count(c.Mismatched),
		StatusMismatch: count(c.StatusMismatch), NotJSON: count(c.NotJSON), Shadow5xx: count(c.Shadow5xx),
		Timeout: count(c.Timeout), Error: count(c.Error), NoisePairs: count(vr.NoisePairs),
		LabelPairs: count(vr.Label.Pairs), Label: percent(vr.Label.Agreement, 1),
		DeltaP50: deltaMS(d.P50), DeltaP95: deltaMS(d.P95), DeltaP99: deltaMS(d.P99),
	}
	if len(vr.Fields) > 0 {
		sv.Fields = fieldChart(route, title, vr)
	}
	if d.N > 0 {
		sv.Deltas = deltaChart(route, title, d)
	}
	return sv
}

// deltaMS is a latency delta in milliseconds, signed.
func deltaMS(ms *float64) string {
	if ms == nil {
		return dash
	}
	return strconv.FormatFloat(*ms, 'f', 2, 64)
}

// fieldChart draws each mismatching field's rate against the candidate,
// and under it the rate against the noise copy when there is one.
func fieldChart(route, variant string, vr shadow.VariantReport) *chart {
	fields := vr.Fields[:min(len(vr.Fields), shadowFields)]
	largest := 0.0
	for _, f := range fields {
		largest = max(largest, deref(f.Rate), deref(f.NoiseRate))
	}
	ch := &chart{Title: "Field mismatch rates on " + route + ", primary " + variant +
		": % of compared pairs, the noise copy's rate in grey"}
	for _, f := range fields {
		b := bar{Label: f.Field, Value: percent(f.Rate, 1), Fraction: fraction(deref(f.Rate), largest),
			Class: "verdict-" + f.Verdict, Hint: f.Field + ": " + f.Verdict}
		if f.NoiseRate != nil {
			b.Value += " · noise " + percent(f.NoiseRate, 1)
			b.Second = fraction(*f.NoiseRate, largest)
			b.HasSecond = true
		}
		ch.Bars = append(ch.Bars, b)
	}
	ch.More = len(vr.Fields) - len(fields)
	ch.layout()
	return ch
}

// deltaChart draws the latency-delta histogram, a bar per bucket of the
// report, slower candidates at the bottom.
func deltaChart(route, variant string, d shadow.LatencyDelta) *chart {
	var largest int64
	for _, b := range d.Buckets {
		largest = max(largest, b.Count)
	}
	ch := &chart{Title: "Latency delta on " + route + ", primary " + variant +
		": pairs per bucket of shadow minus primary latency, ms", LabelWidth: 120}
	var lower *float64
	for _, b := range d.Buckets {
		label := bucketRange(lower, b.LeMS)
		ch.Bars = append(ch.Bars, bar{Label: label, Value: count(b.Count) + " pairs",
			Fraction: fraction(float64(b.Count), float64(largest)), Class: "delta", Hint: label + ": " + count(b.Count) + " pairs"})
		lower = b.LeMS
	}
	ch.layout()
	return ch
}

// bucketRange names the delta bucket (lower, upper] in milliseconds.
func bucketRange(lower, upper *float64) string {
	ms := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	switch {
	case lower == nil && upper == nil:
		return "all"
	case lower == nil:
		return "≤ " + ms(*upper) + " ms"
	case upper == nil:
		return "> " + ms(*lower) + " ms"
	}
	return "(" + ms(*lower) + ", " + ms(*upper) + "] ms"
}

func deref(x *float64) float64 {
	if x == nil {
		return 0
	}
	return *x
}

// fraction is x of largest, 0 to 1.
func fraction(x, largest float64) float64 {
	if largest <= 0 {
		return 0
	}
	return min(max(x/largest, 0), 1)
}
