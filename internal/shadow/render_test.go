package shadow

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/numfmt"
	"github.com/sluice-gw/sluice/internal/testutil"
)

// exampleRegistry is a route with a bit of everything: two variants,
// mismatches, a noise copy, a shadow 5xx with a hostile body, drops.
func exampleRegistry(t *testing.T) *Registry {
	t.Helper()
	r, _ := fakeClock()
	c := mustComparer(t, nil, 0, 0, "prediction")
	rt := r.Route("iris", irisIdentity(), c)
	for i := range 100 {
		candidate := "setosa"
		if i%4 == 0 {
			candidate = "virginica"
		}
		p := comparedPair(c, 200, `{"prediction":"setosa"}`, 200, `{"prediction":"`+candidate+`"}`)
		p.ShadowLatency = p.PrimaryLatency + time.Duration(i)*time.Millisecond
		rt.Pair(0, p)
	}
	for range 20 {
		rt.NoisePair(0, c.Compare(200, []byte(`{"prediction":"setosa"}`), 200, []byte(`{"prediction":"setosa"}`)))
	}
	hostile := comparedPair(c, 200, `{"prediction":"setosa"}`, 503, `<script>alert("x")</script>`)
	hostile.URI = `/predict?q=<img src=x onerror=alert(1)>`
	rt.Pair(1, hostile)
	for range 3 {
		rt.Count(1, Dropped)
	}
	rt.Count(0, Timeout)
	return r
}

// parseHTML walks the page with encoding/xml in strict mode (the template
// writes well-formed markup: every element closed, void ones self-closed),
// so a tag left open or crossed fails here. It returns the text, and the
// names of the elements seen.
func parseHTML(t *testing.T, page []byte) (text string, elements map[string]int) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(page))
	d.Strict = true
	d.Entity = xml.HTMLEntity
	elements = map[string]int{}
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
			elements[tok.Name.Local]++
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
	return b.String(), elements
}

func TestRenderHTML(t *testing.T) {
	reps := exampleRegistry(t).Report()
	var buf bytes.Buffer
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	if err := RenderHTML(&buf, reps, now); err != nil {
		t.Fatal(err)
	}
	page := buf.Bytes()
	for _, banned := range []string{"<script", "<img", "http://", "https://"} {
		if bytes.Contains(page, []byte(banned)) {
			t.Errorf("page contains %q: markup from the network, or an external request", banned)
		}
	}
	text, elements := parseHTML(t, page)
	v0 := reps[0].Variants[0]
	for _, want := range []string{
		"Generated 2026-03-02T08:00:00Z",
		"iris", "iris-v3", "iris-v1", "control (iris-v1)", "treatment (iris-v2)",
		"101",    // mirrored in total
		"25.00%", // mismatch rate of control, and the prediction field's
		"0.00%",  // its noise rate
		"75.00%", // label agreement
		numfmt.Millis(v0.LatencyDeltaMS.P50) + " ms", // delta with its unit
		"difference", "shadow 5xx", "dropped (in-flight cap)",
		`<script>alert("x")</script>`,             // the hostile body, as text
		`/predict?q=<img src=x onerror=alert(1)>`, // the hostile URI, as text
		`"setosa"`, `"virginica"`, // a diff, both sides
		"(-100, -10] ms", "> 1000 ms",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("page text lacks %q", want)
		}
	}
	if elements["pre"] != 2 {
		t.Errorf("%d <pre> bodies, want the 5xx sample's two side by side", elements["pre"])
	}
}

func TestRenderHTMLEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := RenderHTML(&buf, nil, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	if text, _ := parseHTML(t, buf.Bytes()); !strings.Contains(text, "No shadowed routes.") {
		t.Errorf("empty page: %s", text)
	}
	// A route with nothing recorded yet renders too.
	r, _ := fakeClock()
	r.Route("fresh", irisIdentity(), nil)
	buf.Reset()
	if err := RenderHTML(&buf, r.Report(), time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	parseHTML(t, buf.Bytes())
}

func TestRenderText(t *testing.T) {
	reps := exampleRegistry(t).Report()
	var buf bytes.Buffer
	if err := RenderText(&buf, reps); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Logf("\n%s", out)
	lines := strings.Split(out, "\n")
	find := func(prefix string) string { t.Helper(); return testutil.TableLine(t, out, prefix) }
	header := find("VARIANT")
	control, treatment, total := find("control "), find("treatment "), find("(total) ")
	v0 := reps[0].Variants[0]
	// Every cell starts in its header's column.
	for _, c := range []struct {
		column, row, cell string
	}{
		{"POOL", control, "iris-v1"},
		{"MIRRORED", control, "101 "},
		{"COMPARED", control, "100 "},
		{"MISMATCHED", control, "25 "},
		{"SHADOW 5XX", treatment, "1 "},
		{"DROPPED", treatment, "3 "},
		{"MISMATCH%", control, "25.00%"},
		{"MISMATCH%", treatment, "100.00%"},
		{"LABEL%", control, "75.00%"},
		{"DELTA P50", control, numfmt.Millis(v0.LatencyDeltaMS.P50)},
		{"MIRRORED", total, "102 "},
	} {
		testutil.InColumn(t, header, c.row, c.column, c.cell)
	}
	fieldHeader := find("FIELD")
	prediction := find("prediction ")
	testutil.InColumn(t, fieldHeader, prediction, "MISMATCH%", "25.00%")
	testutil.InColumn(t, fieldHeader, prediction, "NOISE%", "0.00%")
	if !strings.HasSuffix(prediction, "difference") {
		t.Errorf("verdict missing: %q", prediction)
	}
	find("route iris  shadow iris-v3  noise iris-v1  since 2026-03-01T12:00:00Z")
	find("sample ")
	// The newest sample of each variant: a diff of one, the bodies of the other.
	for _, want := range []string{`  prediction: "setosa" -> "virginica"`, `  shadow:  <script>alert("x")</script>`} {
		if !strings.Contains(out, want) {
			t.Errorf("sample line %q not shown:\n%s", want, out)
		}
	}
	for _, l := range lines {
		if strings.TrimRight(l, " ") != l {
			t.Errorf("trailing blanks in %q", l)
		}
	}

	buf.Reset()
	if err := RenderText(&buf, nil); err != nil || buf.String() != "no shadowed routes\n" {
		t.Errorf("empty: %q, %v", buf.String(), err)
	}
}

// A body from the network must not reach the terminal raw: an escape
// sequence could rewrite the screen, a newline or tab break the table.
func TestRenderTextEscapesControlCharacters(t *testing.T) {
	r, _ := fakeClock()
	rt := r.Route("iris", irisIdentity(), nil)
	rt.Pair(0, &Pair{
		Result:     Result{Outcome: NotJSON},
		URI:        "/p\ta\nth",
		ShadowBody: []byte("\x1b[2J\x1b[31mred\u0085\r"),
	})
	var buf bytes.Buffer
	if err := RenderText(&buf, r.Report()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.ContainsAny(out, "\x1b\r\t\u0085") {
		t.Fatalf("control characters reached the terminal: %q", out)
	}
	for _, want := range []string{`\x1b[2J\x1b[31mred\u0085\r`, `/p\ta\nth`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks the escaped %q:\n%s", want, out)
		}
	}
}

func TestRenderTextListsTheTopFields(t *testing.T) {
	r, _ := fakeClock()
	rt := r.Route("plain", Identity{Pool: "cand", Variants: []VariantInfo{{"", "prim"}}}, nil)
	for i := range textFields + 5 {
		field := fmt.Sprintf("f%02d", i)
		for range i + 1 { // f24 mismatches most
			rt.Pair(0, &Pair{Result: Result{Outcome: Mismatched, Diffs: []FieldDiff{{Path: field, Field: field, Primary: "1", Candidate: "2"}}}})
		}
	}
	var buf bytes.Buffer
	if err := RenderText(&buf, r.Report()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "\nf24 ") || strings.Contains(out, "\nf04 ") || !strings.Contains(out, "(5 more fields)  -\n") {
		t.Errorf("want the %d most mismatching fields, then a count of the rest:\n%s", textFields, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimRight(l, " ") != l {
			t.Errorf("trailing blanks in %q", l)
		}
	}
}
