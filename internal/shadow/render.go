package shadow

import (
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-gw/sluice/internal/numfmt"
	"unicode"
)

// textFields is the number of fields per variant RenderText lists;
// textSamples the number of samples per route it shows.
const (
	textFields  = 20
	textSamples = 2
	// textDiffs is the number of diffs per sample, textBody the bytes of a
	// body RenderText shows.
	textDiffs = 5
	textBody  = 160
)

// RenderText writes reports as terminal tables (gateway report shadow):
// per route, one row per variant (and their total), then the fields that
// mismatched with their noise floor and verdict, then a sample or two.
// Everything that came from the network is shown with control characters
// escaped, so a body cannot drive the terminal.
func RenderText(w io.Writer, reports []RouteReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(reports) == 0 {
		fmt.Fprintln(tw, "no shadowed routes")
	}
	for i, rep := range reports {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "route %s  shadow %s", printable(rep.Route, 0), printable(rep.ShadowPool, 0))
		if rep.NoisePool != "" {
			fmt.Fprintf(tw, "  noise %s", printable(rep.NoisePool, 0))
		}
		fmt.Fprintf(tw, "  since %s  in flight %d  (delta = shadow - primary latency, ms)\n",
			rep.Since.Format(time.RFC3339), rep.InFlight)
		fmt.Fprintln(tw, "VARIANT\tPOOL\tMIRRORED\tCOMPARED\tMATCHED\tMISMATCHED\tSTATUS\tNOT JSON\tSHADOW 5XX\t"+
			"TIMEOUT\tERROR\tDROPPED\tSKIP BODY\tSKIP PRIMARY\tMISMATCH%\tLABEL%\tDELTA P50\tDELTA P95\tDELTA P99")
		for _, v := range rep.Variants {
			textCounters(tw, textVariant(v.Variant), printable(v.Pool, 0), v.Counters,
				numfmt.Percent(v.Label.Agreement), numfmt.Millis(v.LatencyDeltaMS.P50), numfmt.Millis(v.LatencyDeltaMS.P95), numfmt.Millis(v.LatencyDeltaMS.P99))
		}
		if len(rep.Variants) > 1 {
			textCounters(tw, "(total)", "-", rep.Totals, "-", "-", "-", "-")
		}
		textFieldTable(tw, rep)
		textSampleList(tw, rep)
	}
	return tw.Flush()
}

func textCounters(tw io.Writer, variant, pool string, c Counters, label, p50, p95, p99 string) {
	fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n",
		variant, pool, c.Mirrored, c.Compared, c.Matched, c.Mismatched, c.StatusMismatch, c.NotJSON, c.Shadow5xx,
		c.Timeout, c.Error, c.Dropped, c.SkippedBody, c.SkippedPrimary, numfmt.Percent(c.MismatchRate), label, p50, p95, p99)
}

func textFieldTable(tw io.Writer, rep RouteReport) {
	mismatched := false
	for _, v := range rep.Variants {
		mismatched = mismatched || len(v.Fields) > 0
	}
	if !mismatched {
		return
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "FIELD\tVARIANT\tMISMATCHES\tMISMATCH%\tNOISE%\tVERDICT")
	for _, v := range rep.Variants {
		for i, f := range v.Fields {
			if i == textFields {
				fmt.Fprintf(tw, "(%d more fields)\t%s\n", len(v.Fields)-textFields, textVariant(v.Variant))
				break
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", printable(f.Field, 0), textVariant(v.Variant),
				f.Mismatches, numfmt.Percent(f.Rate), numfmt.Percent(f.NoiseRate), f.Verdict)
		}
	}
}

// textSampleList shows the newest sample of each variant, then the next
// newest, up to textSamples.
func textSampleList(tw io.Writer, rep RouteReport) {
	shown := 0
	for round := range MaxSamples {
		for _, v := range rep.Variants {
			i := len(v.Samples) - 1 - round
			if i < 0 || shown == textSamples {
				continue
			}
			if shown == 0 {
				fmt.Fprintln(tw)
			}
			shown++
			textSample(tw, v.Variant, v.Samples[i])
		}
	}
}

func textSample(tw io.Writer, variant string, s Sample) {
	fmt.Fprintf(tw, "sample %s  %s  %s %s  id %s  status %d -> %d  latency %s -> %s ms\n",
		textVariant(variant), s.Outcome, printable(s.Method, 0), printable(s.URI, textBody), printable(s.RequestID, 0),
		s.PrimaryStatus, s.ShadowStatus, strconv.FormatFloat(s.PrimaryLatencyMS, 'f', 3, 64),
		strconv.FormatFloat(s.ShadowLatencyMS, 'f', 3, 64))
	for j, d := range s.Diffs {
		if j == textDiffs {
			break
		}
		fmt.Fprintf(tw, "  %s: %s -> %s\n", printable(d.Path, 0), printable(d.Primary, 0), printable(d.Candidate, 0))
	}
	if more := len(s.Diffs) - min(len(s.Diffs), textDiffs) + s.MoreDiffs; more > 0 {
		fmt.Fprintf(tw, "  (%d more diffs)\n", more)
	}
	if s.PrimaryBody != "" || s.ShadowBody != "" {
		fmt.Fprintf(tw, "  primary: %s\n", printable(s.PrimaryBody, textBody))
		fmt.Fprintf(tw, "  shadow:  %s\n", printable(s.ShadowBody, textBody))
	}
}

// textVariant is a variant's name for the terminal; "-" for the one group
// of a route without variants.
func textVariant(name string) string {
	if name == "" {
		return "-"
	}
	return printable(name, 0)
}

// printable is s for a terminal: control and other non-printing characters
// (tabs and newlines, which would break the table, and escape sequences)
// written as Go escapes (\x1b, \n); cut to limit bytes when limit > 0.
func printable(s string, limit int) string {
	if limit > 0 && len(s) > limit {
		s = s[:cutAt(s, limit)] + truncateMark
	}
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsPrint(r) {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRune(r) // '\x1b', '\n', '\u0085'
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}

// The HTML page is built from a view that the template only walks: every
// number is formatted here, in Go, so that the text and HTML renderings
// agree. html/template escapes every text it writes, and the bodies it
// shows come from the network.
type htmlPage struct {
	Generated string
	NoiseRule string
	Routes    []htmlRoute
}

type htmlRoute struct {
	Route, ShadowPool, NoisePool, Since string
	InFlight                            int
	Heads                               []string // variant columns of the summary, then "total"
	Rows                                []htmlRow
	Variants                            []htmlVariant
}

type htmlRow struct {
	Label   string
	Section int // when > 0, a heading row spanning that many columns
	Cells   []string
}

type htmlVariant struct {
	Title       string
	NoisePairs  int64
	Fields      []htmlField
	Buckets     []htmlBucket
	Samples     []htmlSample
	DeltaPairs  int64
	CountedNote string
}

type htmlField struct {
	Field, Mismatches, Rate, NoiseMismatches, NoiseRate, Verdict string
}

type htmlBucket struct {
	Range string
	Count int64
	Width float64 // bar width in percent of the largest bucket
}

type htmlSample struct {
	Time, RequestID, Method, URI, Outcome string
	Status, Latency                       string
	Diffs                                 []FieldDiff
	MoreDiffs                             int
	PrimaryBody, ShadowBody               string
	HasBodies                             bool
}

var pageTemplate = template.Must(template.New("shadow").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<title>Sluice shadow traffic</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;background:#fff}
h1{font-size:1.4em}h2{font-size:1.2em;margin-top:2em}h3{font-size:1.05em;margin-top:1.5em}
.meta{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.3em .7em;text-align:right;vertical-align:top}
th:first-child,td:first-child,td.text,th.text{text-align:left}
thead th{background:#f2f2f2}
tr.section td{background:#fafafa;font-weight:600;text-align:left}
td.difference{background:#fde8e8;font-weight:600}
td.noise{color:#666}
.bar{display:inline-block;height:.8em;background:#7a9ad8}
td.bar-cell{text-align:left;width:20em}
code,pre{font:12px/1.35 ui-monospace,monospace}
pre{margin:0;white-space:pre-wrap;word-break:break-all;max-height:20em;overflow:auto}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:.5em;margin:.3em 0}
.pair>div{border:1px solid #ccc;padding:.3em .5em;background:#fafafa}
.sample{border-left:3px solid #ccc;padding-left:.8em;margin:1em 0}
.legend{color:#666;font-size:.85em}
</style>
</head>
<body>
<h1>Shadow traffic</h1>
<p class="meta">Generated {{.Generated}}. Each mirrored request's candidate answer is compared with the primary's; delta is the shadow's latency minus the primary's (negative: the shadow was faster).</p>
<p class="legend">Noise rule: {{.NoiseRule}}</p>
{{- if not .Routes}}
<p>No shadowed routes.</p>
{{- end}}
{{- range .Routes}}
<h2>{{.Route}}</h2>
<p class="meta">shadow pool <code>{{.ShadowPool}}</code>{{if .NoisePool}} · noise pool <code>{{.NoisePool}}</code>{{end}} · since {{.Since}} · {{.InFlight}} in flight</p>
<table>
<thead><tr><th></th>{{range .Heads}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>
{{- range .Rows}}
{{- if .Section}}
<tr class="section"><td colspan="{{.Section}}">{{.Label}}</td></tr>
{{- else}}
<tr><td>{{.Label}}</td>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{- end}}
{{- end}}
</tbody>
</table>
{{- range .Variants}}
<h3>Primary {{.Title}}</h3>
{{- if .Fields}}
<table>
<thead><tr><th class="text">field</th><th>mismatches</th><th>mismatch rate</th><th>noise mismatches</th><th>noise rate</th><th class="text">verdict</th></tr></thead>
<tbody>
{{- range .Fields}}
<tr><td><code>{{.Field}}</code></td><td>{{.Mismatches}}</td><td>{{.Rate}}</td><td>{{.NoiseMismatches}}</td><td>{{.NoiseRate}}</td><td class="text {{.Verdict}}">{{.Verdict}}</td></tr>
{{- end}}
</tbody>
</table>
<p class="legend">{{.CountedNote}}</p>
{{- else}}
<p class="meta">No field mismatched.</p>
{{- end}}
{{- if .DeltaPairs}}
<table>
<thead><tr><th class="text">latency delta</th><th>pairs</th><th class="text"></th></tr></thead>
<tbody>
{{- range .Buckets}}
<tr><td>{{.Range}}</td><td>{{.Count}}</td><td class="bar-cell"><span class="bar" style="width:{{.Width}}%"></span></td></tr>
{{- end}}
</tbody>
</table>
{{- end}}
{{- if .Samples}}
<p><strong>Sample pairs</strong> <span class="meta">(newest first)</span></p>
{{- end}}
{{- range .Samples}}
<div class="sample">
<p><strong>{{.Outcome}}</strong> · {{.Time}} · <code>{{.Method}} {{.URI}}</code> · request id <code>{{.RequestID}}</code> · status {{.Status}} · latency {{.Latency}}</p>
{{- if .Diffs}}
<table>
<thead><tr><th class="text">path</th><th class="text">primary</th><th class="text">candidate</th></tr></thead>
<tbody>
{{- range .Diffs}}
<tr><td><code>{{.Path}}</code></td><td class="text"><code>{{.Primary}}</code></td><td class="text"><code>{{.Candidate}}</code></td></tr>
{{- end}}
</tbody>
</table>
{{- if .MoreDiffs}}
<p class="meta">and {{.MoreDiffs}} more differences</p>
{{- end}}
{{- end}}
{{- if .HasBodies}}
<div class="pair"><div><p class="meta">primary</p><pre>{{.PrimaryBody}}</pre></div><div><p class="meta">candidate</p><pre>{{.ShadowBody}}</pre></div></div>
{{- end}}
</div>
{{- end}}
{{- end}}
{{- end}}
<p class="legend">Rates are of compared pairs; latencies in milliseconds, quantiles within 1%. Samples are a uniform random choice of the non-matching pairs, texts cut at 2 KiB (marked …).</p>
</body>
</html>
`))

// RenderHTML writes reports as one self-contained page (no external
// assets, no script), generated at now: per route a summary table with the
// variants side by side, then per variant the fields that mismatched, the
// latency delta distribution and the sample pairs.
func RenderHTML(w io.Writer, reports []RouteReport, now time.Time) error {
	page := htmlPage{Generated: now.UTC().Format(time.RFC3339), NoiseRule: NoiseRule}
	for _, rep := range reports {
		page.Routes = append(page.Routes, htmlView(rep))
	}
	return pageTemplate.Execute(w, page)
}

func htmlView(rep RouteReport) htmlRoute {
	r := htmlRoute{Route: rep.Route, ShadowPool: rep.ShadowPool, NoisePool: rep.NoisePool,
		Since: rep.Since.Format(time.RFC3339), InFlight: rep.InFlight}
	for _, v := range rep.Variants {
		r.Heads = append(r.Heads, variantTitle(v))
	}
	withTotal := len(rep.Variants) > 1
	if withTotal {
		r.Heads = append(r.Heads, "total")
	}
	section := func(label string) {
		r.Rows = append(r.Rows, htmlRow{Label: label, Section: len(r.Heads) + 1})
	}
	row := func(label string, cell func(v VariantReport) string, total string) {
		hr := htmlRow{Label: label}
		for _, v := range rep.Variants {
			hr.Cells = append(hr.Cells, cell(v))
		}
		if withTotal {
			hr.Cells = append(hr.Cells, total)
		}
		r.Rows = append(r.Rows, hr)
	}
	count := func(label string, get func(c Counters) int64) {
		row(label, func(v VariantReport) string { return strconv.FormatInt(get(v.Counters), 10) },
			strconv.FormatInt(get(rep.Totals), 10))
	}

	section("Mirrors")
	count("mirrored", func(c Counters) int64 { return c.Mirrored })
	count("compared", func(c Counters) int64 { return c.Compared })
	count("matched", func(c Counters) int64 { return c.Matched })
	count("mismatched", func(c Counters) int64 { return c.Mismatched })
	count("status mismatch", func(c Counters) int64 { return c.StatusMismatch })
	count("not JSON", func(c Counters) int64 { return c.NotJSON })
	count("shadow 5xx", func(c Counters) int64 { return c.Shadow5xx })
	count("timeout", func(c Counters) int64 { return c.Timeout })
	count("error", func(c Counters) int64 { return c.Error })
	count("dropped (in-flight cap)", func(c Counters) int64 { return c.Dropped })
	count("skipped (request body too large)", func(c Counters) int64 { return c.SkippedBody })
	count("skipped (primary not comparable)", func(c Counters) int64 { return c.SkippedPrimary })
	row("mismatch rate", func(v VariantReport) string { return numfmt.Percent(v.Counters.MismatchRate) }, numfmt.Percent(rep.Totals.MismatchRate))
	section("Label agreement")
	row("label pairs", func(v VariantReport) string { return strconv.FormatInt(v.Label.Pairs, 10) }, "—")
	row("agreement", func(v VariantReport) string { return numfmt.Percent(v.Label.Agreement) }, "—")
	section("Latency delta, shadow − primary")
	row("pairs", func(v VariantReport) string { return strconv.FormatInt(v.LatencyDeltaMS.N, 10) }, "—")
	row("p50", func(v VariantReport) string { return withUnit(numfmt.Millis(v.LatencyDeltaMS.P50), " ms") }, "—")
	row("p95", func(v VariantReport) string { return withUnit(numfmt.Millis(v.LatencyDeltaMS.P95), " ms") }, "—")
	row("p99", func(v VariantReport) string { return withUnit(numfmt.Millis(v.LatencyDeltaMS.P99), " ms") }, "—")
	section("Noise")
	row("noise pairs", func(v VariantReport) string { return strconv.FormatInt(v.NoisePairs, 10) }, "—")

	for _, v := range rep.Variants {
		r.Variants = append(r.Variants, htmlVariantView(v))
	}
	return r
}

func htmlVariantView(v VariantReport) htmlVariant {
	hv := htmlVariant{Title: variantTitle(v), NoisePairs: v.NoisePairs, DeltaPairs: v.LatencyDeltaMS.N,
		CountedNote: fmt.Sprintf("Rates of %d compared pairs and %d noise pairs; a field counts once per pair.",
			v.Counters.Compared, v.NoisePairs)}
	for _, f := range v.Fields {
		hv.Fields = append(hv.Fields, htmlField{
			Field:           f.Field,
			Mismatches:      strconv.FormatInt(f.Mismatches, 10),
			Rate:            numfmt.Percent(f.Rate),
			NoiseMismatches: strconv.FormatInt(f.NoiseMismatches, 10),
			NoiseRate:       noiseCell(f.NoiseRate),
			Verdict:         f.Verdict,
		})
	}
	var most int64
	for _, b := range v.LatencyDeltaMS.Buckets {
		most = max(most, b.Count)
	}
	var lower *float64
	for _, b := range v.LatencyDeltaMS.Buckets {
		hb := htmlBucket{Range: bucketRange(lower, b.LeMS), Count: b.Count}
		if most > 0 {
			hb.Width = float64(100 * b.Count / most) // whole percents
		}
		hv.Buckets = append(hv.Buckets, hb)
		lower = b.LeMS
	}
	for i := len(v.Samples) - 1; i >= 0; i-- { // the newest first
		s := v.Samples[i]
		hv.Samples = append(hv.Samples, htmlSample{
			Time:        s.Time.Format(time.RFC3339),
			RequestID:   s.RequestID,
			Method:      s.Method,
			URI:         s.URI,
			Outcome:     s.Outcome,
			Status:      fmt.Sprintf("%d → %d", s.PrimaryStatus, s.ShadowStatus),
			Latency:     fmt.Sprintf("%.3f ms → %.3f ms", s.PrimaryLatencyMS, s.ShadowLatencyMS),
			Diffs:       s.Diffs,
			MoreDiffs:   s.MoreDiffs,
			PrimaryBody: s.PrimaryBody,
			ShadowBody:  s.ShadowBody,
			HasBodies:   s.PrimaryBody != "" || s.ShadowBody != "",
		})
	}
	return hv
}

// variantTitle names a primary variant and its pool: "control (iris-v1)",
// or the pool alone for a route without variants.
func variantTitle(v VariantReport) string {
	if v.Variant == "" {
		return v.Pool
	}
	return v.Variant + " (" + v.Pool + ")"
}

// noiseCell is a noise rate, or why there is none.
func noiseCell(x *float64) string {
	if x == nil {
		return "unmeasured"
	}
	return numfmt.Percent(x)
}

// bucketRange names the bucket (lower, upper] in milliseconds.
func bucketRange(lower, upper *float64) string {
	ms := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	switch {
	case lower == nil:
		return "≤ " + ms(*upper) + " ms"
	case upper == nil:
		return "> " + ms(*lower) + " ms"
	}
	return "(" + ms(*lower) + ", " + ms(*upper) + "] ms"
}

func withUnit(s, unit string) string {
	if s == "-" {
		return s
	}
	return s + unit
}
