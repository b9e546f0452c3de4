package experiments

import (
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-gw/sluice/internal/numfmt"
)

// RenderText writes reports as terminal tables (gateway report experiments):
// per route, one row per variant, then one row per outcome metric and
// variant. Latencies are in milliseconds; a "*" marks a p-value below Alpha.
func RenderText(w io.Writer, reports []RouteReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(reports) == 0 {
		fmt.Fprintln(tw, "no split routes")
	}
	for i, rep := range reports {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "route %s  identity %q  since %s  (latency ms; * p < %g)\n",
			rep.Route, rep.Identity, rep.StartedAt.Format(time.RFC3339), Alpha)
		if rep.Note != "" {
			fmt.Fprintf(tw, "%s numbers: %s\n", scopeLabel(rep.Scope), rep.Note)
		}
		fmt.Fprintln(tw, "VARIANT\tREQUESTS\tERRORS\tERR%\tMEAN\tP50\tP95\tP99\tERR P\tERR WINNER\tLAT P\tLAT WINNER")
		for _, v := range rep.Variants {
			errP, errWin, latP, latWin := "-", "-", "-", "-"
			if c := v.Comparison; c != nil {
				errP, errWin = textP(c.ErrorRate.PValue, c.ErrorRate.Significant, c.ErrorRate.Note), c.ErrorRate.Winner
				latP, latWin = textP(c.Latency.PValue, c.Latency.Significant, c.Latency.Note), c.Latency.Winner
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				variantLabel(v.Name, v.Baseline), v.Requests, v.Errors, numfmt.Percent(v.ErrorRate),
				numfmt.Millis(v.LatencyMS.Mean), numfmt.Millis(v.LatencyMS.P50), numfmt.Millis(v.LatencyMS.P95), numfmt.Millis(v.LatencyMS.P99),
				errP, errWin, latP, latWin)
		}
		if len(rep.Outcomes) == 0 {
			continue
		}
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "OUTCOME\tVARIANT\tN\tMEAN\tSTD\tCI95\tP\tWINNER")
		for _, m := range rep.Outcomes {
			for _, o := range m.Variants {
				p, win := "-", "-"
				if c := o.Comparison; c != nil {
					p, win = textP(c.PValue, c.Significant, c.Note), c.Winner
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n",
					m.Metric, variantLabel(o.Name, o.Baseline), o.N, number(o.Mean), number(o.Std), interval(o.CI95), p, win)
			}
		}
	}
	return tw.Flush()
}

func variantLabel(name string, baseline bool) string {
	if baseline {
		return name + " (baseline)"
	}
	return name
}

// textP is a p-value for the terminal: "0.0214*" when significant, or the
// reason there is none.
func textP(p *float64, significant bool, note string) string {
	if p == nil {
		if note == "" {
			return "-"
		}
		return "(" + note + ")"
	}
	s := pvalue(*p)
	if significant {
		s += "*"
	}
	return s
}

func pvalue(p float64) string {
	if p < 1e-4 {
		return "<0.0001"
	}
	return strconv.FormatFloat(p, 'g', 3, 64)
}

func number(x *float64) string {
	if x == nil {
		return "-"
	}
	return strconv.FormatFloat(*x, 'g', 4, 64)
}

func interval(ci []float64) string {
	if len(ci) != 2 {
		return "-"
	}
	return "[" + strconv.FormatFloat(ci[0], 'g', 4, 64) + ", " + strconv.FormatFloat(ci[1], 'g', 4, 64) + "]"
}

// The HTML page is built from a view that the template only walks: every
// number is formatted here, in Go, so that the text and HTML renderings agree.
type htmlPage struct {
	Generated string
	Alpha     float64
	Routes    []htmlRoute
}

type htmlRoute struct {
	Route, Identity, Started string
	Scope, Note              string
	Variants                 []htmlHead
	Rows                     []htmlRow
}

type htmlHead struct {
	Name     string
	Baseline bool
}

type htmlRow struct {
	Label   string
	Section int // when > 0, a heading row spanning that many columns
	Cells   []htmlCell
}

type htmlCell struct {
	Text  string
	Sig   bool   // significant: highlighted
	Title string // hover text: the test's details
}

var pageTemplate = template.Must(template.New("experiments").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<title>Sluice experiments</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;background:#fff}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em}
.meta{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.3em .7em;text-align:right}
th:first-child,td:first-child{text-align:left}
thead th{background:#f2f2f2}
th.baseline{background:#e8eefc}
tr.section td{background:#fafafa;font-weight:600;text-align:left}
td.sig{background:#e6f6e6;font-weight:600}
.legend{color:#666;font-size:.85em}
</style>
</head>
<body>
<h1>Experiments</h1>
<p class="meta">Generated {{.Generated}}. Each variant is compared with the baseline: error rate by a two-proportion z-test, latency and outcomes by Welch's t-test. <strong>Highlighted ✔</strong> results are significant at p &lt; {{.Alpha}} (no correction for multiple comparisons).</p>
{{- if not .Routes}}
<p>No split routes.</p>
{{- end}}
{{- range .Routes}}
<h2>{{.Route}}</h2>
<p class="meta">identity <code>{{.Identity}}</code> · started {{.Started}}{{if .Note}} · {{.Scope}} numbers: {{.Note}}{{end}}</p>
<table>
<thead><tr><th></th>{{range .Variants}}<th{{if .Baseline}} class="baseline"{{end}}>{{.Name}}{{if .Baseline}} (baseline){{end}}</th>{{end}}</tr></thead>
<tbody>
{{- range .Rows}}
{{- if .Section}}
<tr class="section"><td colspan="{{.Section}}">{{.Label}}</td></tr>
{{- else}}
<tr><td>{{.Label}}</td>{{range .Cells}}<td{{if .Sig}} class="sig"{{end}}{{if .Title}} title="{{.Title}}"{{end}}>{{.Text}}</td>{{end}}</tr>
{{- end}}
{{- end}}
</tbody>
</table>
{{- end}}
<p class="legend">Latencies in milliseconds; quantiles from an HdrHistogram (3 significant digits). CI95 is mean ± 1.96·std/√n.</p>
</body>
</html>
`))

// RenderHTML writes reports as a self-contained page (no external assets): a
// table per route, the variants side by side, significant results marked.
func RenderHTML(w io.Writer, reports []RouteReport) error {
	page := htmlPage{Generated: time.Now().UTC().Format(time.RFC3339), Alpha: Alpha}
	for _, rep := range reports {
		page.Routes = append(page.Routes, htmlView(rep))
	}
	return pageTemplate.Execute(w, page)
}

func htmlView(rep RouteReport) htmlRoute {
	r := htmlRoute{Route: rep.Route, Identity: rep.Identity, Started: rep.StartedAt.Format(time.RFC3339),
		Scope: scopeLabel(rep.Scope), Note: rep.Note}
	for _, v := range rep.Variants {
		r.Variants = append(r.Variants, htmlHead{Name: v.Name, Baseline: v.Baseline})
	}
	row := func(label string, cell func(v VariantReport) htmlCell) {
		hr := htmlRow{Label: label}
		for _, v := range rep.Variants {
			hr.Cells = append(hr.Cells, cell(v))
		}
		r.Rows = append(r.Rows, hr)
	}
	section := func(label string) {
		r.Rows = append(r.Rows, htmlRow{Label: label, Section: len(rep.Variants) + 1})
	}
	text := func(s string) htmlCell { return htmlCell{Text: s} }

	section("Traffic")
	row("requests", func(v VariantReport) htmlCell { return text(strconv.FormatInt(v.Requests, 10)) })
	row("errors", func(v VariantReport) htmlCell { return text(strconv.FormatInt(v.Errors, 10)) })
	row("error rate", func(v VariantReport) htmlCell { return text(numfmt.Percent(v.ErrorRate)) })
	row("error rate vs baseline", func(v VariantReport) htmlCell {
		if v.Comparison == nil {
			return text("—")
		}
		t := v.Comparison.ErrorRate
		return testCell(t.PValue, t.Significant, t.Winner, t.Note,
			fmt.Sprintf("two-proportion z-test: diff %s, z %s", number(t.Diff), number(t.Z)))
	})
	section("Latency (ms)")
	row("mean", func(v VariantReport) htmlCell { return text(numfmt.Millis(v.LatencyMS.Mean)) })
	row("std", func(v VariantReport) htmlCell { return text(numfmt.Millis(v.LatencyMS.Std)) })
	row("p50", func(v VariantReport) htmlCell { return text(numfmt.Millis(v.LatencyMS.P50)) })
	row("p95", func(v VariantReport) htmlCell { return text(numfmt.Millis(v.LatencyMS.P95)) })
	row("p99", func(v VariantReport) htmlCell { return text(numfmt.Millis(v.LatencyMS.P99)) })
	row("out of range", func(v VariantReport) htmlCell { return text(strconv.FormatInt(v.LatencyMS.OutOfRange, 10)) })
	row("mean vs baseline", func(v VariantReport) htmlCell {
		if v.Comparison == nil {
			return text("—")
		}
		t := v.Comparison.Latency
		return testCell(t.PValue, t.Significant, t.Winner, t.Note,
			fmt.Sprintf("Welch t-test: diff %s ms, t %s, df %s", number(t.Diff), number(t.T), number(t.DF)))
	})

	for _, m := range rep.Outcomes {
		section("Outcome: " + m.Metric)
		cells := func(f func(o OutcomeReport) htmlCell) []htmlCell {
			out := make([]htmlCell, len(m.Variants))
			for i, o := range m.Variants {
				out[i] = f(o)
			}
			return out
		}
		r.Rows = append(r.Rows,
			htmlRow{Label: "n", Cells: cells(func(o OutcomeReport) htmlCell { return text(strconv.FormatInt(o.N, 10)) })},
			htmlRow{Label: "mean", Cells: cells(func(o OutcomeReport) htmlCell { return text(number(o.Mean)) })},
			htmlRow{Label: "std", Cells: cells(func(o OutcomeReport) htmlCell { return text(number(o.Std)) })},
			htmlRow{Label: "95% CI", Cells: cells(func(o OutcomeReport) htmlCell { return text(interval(o.CI95)) })},
			htmlRow{Label: "mean vs baseline", Cells: cells(func(o OutcomeReport) htmlCell {
				if o.Comparison == nil {
					return text("—")
				}
				t := o.Comparison
				return testCell(t.PValue, t.Significant, t.Winner, t.Note,
					fmt.Sprintf("Welch t-test: diff %s, t %s, df %s", number(t.Diff), number(t.T), number(t.DF)))
			})},
		)
	}
	return r
}

// testCell shows a comparison: "p 0.0214 ✔ variant wins" when significant.
func testCell(p *float64, significant bool, winner, note, details string) htmlCell {
	c := htmlCell{Sig: significant, Title: details}
	var b strings.Builder
	if p == nil {
		b.WriteString(note)
	} else {
		b.WriteString("p " + pvalue(*p))
		if significant {
			b.WriteString(" ✔ " + winner + " wins")
		}
		if note != "" {
			b.WriteString(" (" + note + ")")
		}
	}
	c.Text = b.String()
	return c
}

// scopeLabel names a report's scope for people.
func scopeLabel(scope string) string {
	if scope == ScopeCluster {
		return "cluster"
	}
	return "process"
}
