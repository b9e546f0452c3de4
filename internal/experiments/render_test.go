package experiments

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/numfmt"
	"github.com/sluice-gw/sluice/internal/testutil"
)

// parseHTML walks the page with encoding/xml in strict mode (our template
// writes well-formed markup: every element closed, void ones self-closed), so
// a tag left open or crossed fails here. It returns the text and the
// attributes seen, per element name.
func parseHTML(t *testing.T, page []byte) (text string, attrs map[string][]xml.Attr) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(page))
	d.Strict = true
	d.Entity = xml.HTMLEntity
	attrs = map[string][]xml.Attr{}
	var b strings.Builder
	var open []string
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("page does not parse: %v\n%s", err, page)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			open = append(open, tok.Name.Local)
			attrs[tok.Name.Local] = append(attrs[tok.Name.Local], tok.Attr...)
		case xml.EndElement:
			open = open[:len(open)-1]
		case xml.CharData:
			b.Write(tok)
			b.WriteByte(' ')
		}
	}
	if len(open) != 0 {
		t.Fatalf("unclosed elements %v", open)
	}
	return b.String(), attrs
}

func TestRenderHTML(t *testing.T) {
	reps := exampleRegistry().Report()
	var buf bytes.Buffer
	if err := RenderHTML(&buf, reps); err != nil {
		t.Fatal(err)
	}
	page := buf.Bytes()
	if bytes.Contains(page, []byte("<script")) || bytes.Contains(page, []byte("http://")) || bytes.Contains(page, []byte("https://")) {
		t.Fatal("the page must be self-contained: no scripts, no external links")
	}
	text, attrs := parseHTML(t, page)
	tr := reps[0].Variants[1]
	for _, want := range []string{
		"iris", "control (baseline)", "treatment",
		"2000", "500", // requests
		"5.00%", "1.00%", // error rates
		numfmt.Millis(tr.LatencyMS.P99),
		"p " + pvalue(*tr.Comparison.ErrorRate.PValue) + " ✔ variant wins",
		"Outcome: click", "Outcome: revenue",
		interval(reps[0].Outcomes[1].Variants[1].CI95),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("page text lacks %q", want)
		}
	}
	sig := 0
	for _, a := range attrs["td"] {
		if a.Name.Local == "class" && a.Value == "sig" {
			sig++
		}
	}
	// error rate, latency, click and revenue: all significant in the example.
	if sig != 4 {
		t.Errorf("%d significant cells marked, want 4", sig)
	}
	baseline := false
	for _, a := range attrs["th"] {
		baseline = baseline || (a.Name.Local == "class" && a.Value == "baseline")
	}
	if !baseline {
		t.Error("baseline column not labelled")
	}
}

func TestRenderHTMLEscapes(t *testing.T) {
	// Route names come from the config file; never trust them into markup.
	r, _ := fakeClock()
	r.Experiment(`<img src=x onerror=alert(1)>`, `"quoted" & <b>`, []string{"a", "<i>b</i>"})
	var buf bytes.Buffer
	if err := RenderHTML(&buf, r.Report()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "<img") || strings.Contains(buf.String(), "<i>") {
		t.Fatal("names rendered as markup")
	}
	text, _ := parseHTML(t, buf.Bytes())
	if !strings.Contains(text, `<img src=x onerror=alert(1)>`) {
		t.Fatal("escaped route name lost")
	}
}

func TestRenderHTMLEmptyAndEdges(t *testing.T) {
	for name, reps := range map[string][]RouteReport{
		"no routes": nil,
		"edges": func() []RouteReport {
			r, _ := fakeClock()
			r.Experiment("empty", "id", []string{"a", "b"})
			e := r.Experiment("one", "id", []string{"a", "b"})
			e.Variant(1).Record(time.Millisecond, true)
			_ = e.AddOutcome(1, "click", 1)
			return r.Report()
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := RenderHTML(&buf, reps); err != nil {
				t.Fatal(err)
			}
			parseHTML(t, buf.Bytes())
			if err := RenderText(&buf, reps); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRenderTextAligned(t *testing.T) {
	reps := exampleRegistry().Report()
	var buf bytes.Buffer
	if err := RenderText(&buf, reps); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Logf("\n%s", out)
	lines := strings.Split(out, "\n")
	find := func(prefix string) string { t.Helper(); return testutil.TableLine(t, out, prefix) }
	header := find("VARIANT")
	control, treatment := find("control (baseline)"), find("treatment ")
	tr := reps[0].Variants[1]
	// Every cell starts in its header's column.
	for _, c := range []struct {
		column, row, cell string
	}{
		{"VARIANT", treatment, "treatment"},
		{"REQUESTS", control, "2000"},
		{"REQUESTS", treatment, "500"},
		{"ERRORS", treatment, "5 "},
		{"ERR%", control, "5.00%"},
		{"P99", treatment, numfmt.Millis(tr.LatencyMS.P99)},
		{"ERR P", control, "- "},
		{"ERR P", treatment, pvalue(*tr.Comparison.ErrorRate.PValue) + "*"},
		{"LAT P", treatment, pvalue(*tr.Comparison.Latency.PValue) + "*"},
	} {
		testutil.InColumn(t, header, c.row, c.column, c.cell)
	}
	outcomeHeader := find("OUTCOME")
	revenue := find("revenue  treatment")
	if col, at := strings.Index(outcomeHeader, "MEAN"), strings.Index(revenue, "13 "); col != at {
		t.Errorf("outcome mean at %d, header at %d", at, col)
	}
	if col, at := strings.Index(header, "LAT WINNER"), strings.LastIndex(treatment, "variant"); col != at {
		t.Errorf("latency winner at %d, header at %d", at, col)
	}
	for _, l := range lines {
		if strings.TrimRight(l, " ") != l {
			t.Errorf("trailing blanks in %q", l)
		}
	}
	if !strings.Contains(out, "route iris") || !strings.Contains(revenue, "variant") {
		t.Errorf("missing route title or winner:\n%s", out)
	}
	if _, err := strconv.Atoi(strings.Fields(control)[2]); err != nil {
		t.Errorf("requests column not numeric in %q", control)
	}
}
