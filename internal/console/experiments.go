package console

import (
	"math"
	"strconv"

	"github.com/sluice-gw/sluice/internal/experiments"
)

// z975 is the 97.5% quantile of the standard normal: the intervals are
// 95%, by the normal approximation the experiments report uses for its
// outcome intervals.
const z975 = 1.96

type experimentsView struct {
	Alpha    string
	Rows     []experimentRow
	Outcomes []outcomeTable
}

// experimentRow is one variant of a split route beside its baseline.
type experimentRow struct {
	Route, Variant, Scope                string
	Baseline                             bool
	Requests, Errors, ErrorRate, ErrorCI string
	ErrorTest                            testCell
	Mean, MeanCI, P50, P95, P99          string
	LatencyTest                          testCell
}

// testCell is a comparison with the baseline: its p-value, and who wins
// when it is significant.
type testCell struct {
	Text        string
	Significant bool
	Detail      string // the test's statistics, as a tooltip
}

type outcomeTable struct {
	Route string
	Rows  []outcomeRow
}

type outcomeRow struct {
	Metric, Variant, N, Mean, Std, CI string
	Baseline                          bool
	Test                              testCell
}

func (c *Console) experimentsPage() any {
	v := experimentsView{Alpha: strconv.FormatFloat(experiments.Alpha, 'g', -1, 64)}
	for _, rep := range c.gw.Experiments().Report() {
		baseline := ""
		for _, vr := range rep.Variants {
			if vr.Baseline {
				baseline = vr.Name
			}
		}
		for _, vr := range rep.Variants {
			lat := vr.LatencyMS
			row := experimentRow{
				Route: rep.Route, Variant: vr.Name, Baseline: vr.Baseline,
				Requests: count(vr.Requests), Errors: count(vr.Errors), ErrorRate: percent(vr.ErrorRate, 2),
				ErrorCI: proportionCI(vr.Errors, vr.Requests),
				Mean:    decimal(lat.Mean, 2), MeanCI: meanCI(lat.Mean, lat.Std, vr.Requests, 2),
				P50: decimal(lat.P50, 2), P95: decimal(lat.P95, 2), P99: decimal(lat.P99, 2),
				ErrorTest: testCell{Text: dash}, LatencyTest: testCell{Text: dash},
			}
			if cmp := vr.Comparison; cmp != nil {
				e, l := cmp.ErrorRate, cmp.Latency
				row.ErrorTest = comparison(e.PValue, e.Significant, e.Winner, e.Note, vr.Name, baseline,
					"two-proportion z-test: difference "+decimal(scaled(e.Diff, 100), 2)+" points, z "+decimal(e.Z, 2))
				row.LatencyTest = comparison(l.PValue, l.Significant, l.Winner, l.Note, vr.Name, baseline,
					"Welch t-test: difference "+decimal(l.Diff, 2)+" ms, t "+decimal(l.T, 2)+", df "+decimal(l.DF, 1))
			}
			v.Rows = append(v.Rows, row)
		}
		if len(rep.Outcomes) == 0 {
			continue
		}
		table := outcomeTable{Route: rep.Route}
		for _, m := range rep.Outcomes {
			for _, o := range m.Variants {
				row := outcomeRow{Metric: m.Metric, Variant: o.Name, Baseline: o.Baseline, N: count(o.N),
					Mean: decimal(o.Mean, 4), Std: decimal(o.Std, 4), CI: interval(o.CI95, 4), Test: testCell{Text: dash}}
				if t := o.Comparison; t != nil {
					row.Test = comparison(t.PValue, t.Significant, t.Winner, t.Note, o.Name, baseline,
						"Welch t-test: difference "+decimal(t.Diff, 4)+", t "+decimal(t.T, 2)+", df "+decimal(t.DF, 1))
				}
				table.Rows = append(table.Rows, row)
			}
		}
		v.Outcomes = append(v.Outcomes, table)
	}
	return v
}

// comparison shows a test: "p 0.0214 ✔ b wins" when significant, the
// reason when there is no p-value.
func comparison(p *float64, significant bool, winner, note, variant, baseline, detail string) testCell {
	if p == nil {
		if note == "" {
			note = dash
		}
		return testCell{Text: note, Detail: detail}
	}
	text := "p " + pvalue(*p)
	if significant {
		switch winner {
		case experiments.WinnerVariant:
			text += " ✔ " + variant + " wins"
		case experiments.WinnerBaseline:
			text += " ✔ " + baseline + " wins"
		}
	}
	if note != "" {
		text += " (" + note + ")"
	}
	return testCell{Text: text, Significant: significant, Detail: detail}
}

func pvalue(p float64) string {
	if p < 1e-4 {
		return "<0.0001"
	}
	return strconv.FormatFloat(p, 'g', 3, 64)
}

// proportionCI is the 95% interval of errors/n in percent, by the normal
// approximation (the z-test's), clamped to [0, 100].
func proportionCI(errors, n int64) string {
	if n < 2 {
		return dash
	}
	p := float64(errors) / float64(n)
	half := z975 * math.Sqrt(p*(1-p)/float64(n))
	lo, hi := max(p-half, 0)*100, min(p+half, 1)*100
	return "[" + strconv.FormatFloat(lo, 'f', 2, 64) + ", " + strconv.FormatFloat(hi, 'f', 2, 64) + "]"
}

// meanCI is the 95% interval of a mean: mean ± 1.96·std/√n.
func meanCI(mean, std *float64, n int64, decimals int) string {
	if mean == nil || std == nil || n < 2 {
		return dash
	}
	half := z975 * *std / math.Sqrt(float64(n))
	return interval([]float64{*mean - half, *mean + half}, decimals)
}

func interval(ci []float64, decimals int) string {
	if len(ci) != 2 {
		return dash
	}
	return "[" + strconv.FormatFloat(ci[0], 'f', decimals, 64) + ", " + strconv.FormatFloat(ci[1], 'f', decimals, 64) + "]"
}

// scaled is x times k (nil stays nil).
func scaled(x *float64, k float64) *float64 {
	if x == nil {
		return nil
	}
	return ptr(*x * k)
}
