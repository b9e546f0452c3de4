package shadow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func mustComparer(t *testing.T, ignore []string, abs, rel float64, label string) *Comparer {
	t.Helper()
	c, err := NewComparer(ignore, abs, rel, label)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fields(r Result) string {
	var f []string
	for _, d := range r.Diffs {
		f = append(f, d.Path)
	}
	return strings.Join(f, ",")
}

func TestCompare(t *testing.T) {
	c := mustComparer(t, []string{"timestamp", "processing_time", "model_version", "meta.*"}, 1e-6, 1e-3, "prediction")
	single := `{"prediction":"%s","probabilities":{"setosa":%v,"versicolor":0.02},"model_version":"%s","timestamp":%d}`
	cases := []struct {
		name      string
		p, q      string
		ps, qs    int
		outcome   Outcome
		diffs     string
		labelPair int
		labelOK   int
	}{
		{"identical", fmt.Sprintf(single, "setosa", 0.97, "1", 1), fmt.Sprintf(single, "setosa", 0.97, "1", 1), 200, 200, Matched, "", 1, 1},
		{"ignored fields differ", fmt.Sprintf(single, "setosa", 0.97, "1", 1), fmt.Sprintf(single, "setosa", 0.97, "3", 99), 200, 200, Matched, "", 1, 1},
		{"number within abs tolerance", `{"x":1.0000000}`, `{"x":1.0000005}`, 200, 200, Matched, "", 0, 0},
		{"number within rel tolerance", `{"x":1000}`, `{"x":1000.9}`, 200, 200, Matched, "", 0, 0},
		{"number over both tolerances", `{"x":1}`, `{"x":1.01}`, 200, 200, Mismatched, "x", 0, 0},
		{"1, 1.0 and 1e0 are equal", `{"x":1,"y":1.0}`, `{"x":1e0,"y":1}`, 200, 200, Matched, "", 0, 0},
		{"label differs", fmt.Sprintf(single, "setosa", 0.97, "1", 1), fmt.Sprintf(single, "virginica", 0.97, "1", 1), 200, 200, Mismatched, "prediction", 1, 0},
		{"field missing on one side", `{"a":1,"b":2}`, `{"a":1}`, 200, 200, Mismatched, "b", 0, 0},
		{"type differs", `{"a":"1"}`, `{"a":1}`, 200, 200, Mismatched, "a", 0, 0},
		{"glob ignores a subtree", `{"meta":{"host":"a","ms":3},"y":1}`, `{"meta":{"host":"b","ms":9},"y":1}`, 200, 200, Matched, "", 0, 0},
		{"same values, other spacing and key order", `{"prediction":"setosa","x":[1,2]}`, `{ "x" : [ 1, 2.0 ], "prediction" : "setosa" }`, 200, 200, Matched, "", 1, 1},
		{"a string escaped on one side", `{"a":"caf\u00e9 \"x\""}`, `{"a":"café \"x\""}`, 200, 200, Matched, "", 0, 0},
		{"strings that differ once unescaped", `{"a":"x\ty"}`, `{"a":"x\\ty"}`, 200, 200, Mismatched, "a", 0, 0},
		{"a number and the same digits as a string", `{"a":1}`, `{"a":"1"}`, 200, 200, Mismatched, "a", 0, 0},
		{"status differs", `{"x":1}`, `{"x":1}`, 200, 500, StatusMismatch, "", 0, 0},
		{"not JSON, different", `{"x":1}`, `<html>oops</html>`, 200, 200, NotJSON, "", 0, 0},
		{"not JSON, same bytes", `plain text`, `plain text`, 200, 200, Matched, "", 0, 0},
		{"trailing data is not JSON", `{"x":1}`, `{"x":1} {"x":2}`, 200, 200, NotJSON, "", 0, 0},
		{"batch label agreement per row",
			`{"predictions":["setosa","versicolor","virginica"]}`,
			`{"predictions":["setosa","virginica","virginica"]}`, 200, 200, Mismatched, "predictions[1]", 3, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			label := c
			if strings.Contains(tc.p, "predictions") {
				label = mustComparer(t, nil, 1e-6, 1e-3, "predictions")
			}
			r := label.Compare(tc.ps, []byte(tc.p), tc.qs, []byte(tc.q))
			if r.Outcome != tc.outcome || fields(r) != tc.diffs || r.LabelPairs != tc.labelPair || r.LabelAgree != tc.labelOK {
				t.Fatalf("got %v diffs %q label %d/%d; want %v diffs %q label %d/%d",
					r.Outcome, fields(r), r.LabelAgree, r.LabelPairs, tc.outcome, tc.diffs, tc.labelOK, tc.labelPair)
			}
		})
	}
}

func TestDiffsAggregateByFieldWithoutIndexes(t *testing.T) {
	c := mustComparer(t, []string{"predictions[*].confidence"}, 0, 0, "")
	r := c.Compare(200, []byte(`{"predictions":[{"p":"a","confidence":0.9},{"p":"b","confidence":0.8}]}`),
		200, []byte(`{"predictions":[{"p":"a","confidence":0.1},{"p":"c","confidence":0.2}]}`))
	if len(r.Diffs) != 1 || r.Diffs[0].Path != "predictions[1].p" || r.Diffs[0].Field != "predictions[].p" ||
		r.Diffs[0].Primary != `"b"` || r.Diffs[0].Candidate != `"c"` {
		t.Fatalf("diffs %+v, want predictions[1].p only (confidence ignored at every index)", r.Diffs)
	}
}

func TestNewComparerRejectsBadSettings(t *testing.T) {
	for _, tc := range []struct {
		ignore   []string
		abs, rel float64
	}{
		{[]string{""}, 0, 0},
		{[]string{"a[b"}, 0, 0},
		{nil, -1, 0},
		{nil, 0, -0.1},
	} {
		if _, err := NewComparer(tc.ignore, tc.abs, tc.rel, ""); err == nil {
			t.Errorf("%+v accepted", tc)
		}
	}
}

// FuzzCompare: any two bodies compare without panicking, a body always
// matches itself, and the outcome is symmetric in the bodies.
func FuzzCompare(f *testing.F) {
	for _, s := range []string{`{"prediction":"setosa","probabilities":{"setosa":0.9}}`, `[1,2,{"a":[]}]`, `"x"`, `not json`, `{}`, `null`} {
		f.Add([]byte(s), []byte(`{"prediction":"virginica"}`))
	}
	c, err := NewComparer([]string{"timestamp", "meta.*"}, 1e-6, 1e-3, "prediction")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if r := c.Compare(200, a, 200, a); r.Outcome != Matched {
			t.Fatalf("a body does not match itself: %v %+v", r.Outcome, r.Diffs)
		}
		x, y := c.Compare(200, a, 200, b), c.Compare(200, b, 200, a)
		if x.Outcome != y.Outcome || len(x.Diffs) != len(y.Diffs) || x.LabelAgree != y.LabelAgree {
			t.Fatalf("not symmetric: %v/%d vs %v/%d", x.Outcome, len(x.Diffs), y.Outcome, len(y.Diffs))
		}
	})
}

// Regression: a body over the leaf limit was cut at leaves chosen by map
// order, so it could fail to match itself.
func TestHugeBodyMatchesItself(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range maxLeaves + 500 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%05d":%d`, i, i)
	}
	b.WriteString("}")
	c := mustComparer(t, nil, 0, 0, "")
	for range 5 {
		if r := c.Compare(200, []byte(b.String()), 200, []byte(b.String())); r.Outcome != Matched {
			t.Fatalf("a %d-leaf body does not match itself: %d diffs", maxLeaves+500, len(r.Diffs))
		}
	}
}

func TestFieldOfDropsIndexes(t *testing.T) {
	for in, want := range map[string]string{
		"prediction":                      "prediction",
		"predictions[3]":                  "predictions[]",
		"predictions[12].probabilities.a": "predictions[].probabilities.a",
		"m[0][1]":                         "m[][]",
		"odd[x]":                          "odd[x]",
		"half[12":                         "half[12",
		"a[*].b":                          "a[].b",
	} {
		if got := fieldOf(in); got != want {
			t.Errorf("fieldOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// refLeaf is a flattened value as the reference sees it: a number, or
// JSON text for the rest.
type refLeaf struct {
	isNum bool
	num   float64
	text  string
}

// flattenRef is flatten's result in the reference's terms.
func flattenRef(body []byte) (map[string]refLeaf, error) {
	f, err := flatten(body)
	if err != nil {
		return nil, err
	}
	defer f.release()
	out := make(map[string]refLeaf, len(f.leaves))
	for _, l := range f.leaves {
		out[string(f.pathOf(l))] = refLeaf{isNum: l.kind == kindNumber, num: l.num, text: l.text()}
	}
	if len(out) != len(f.leaves) {
		return nil, fmt.Errorf("%d leaves on %d paths", len(f.leaves), len(out))
	}
	return out, nil
}

// referenceFlatten is flatten written the obvious way, with encoding/json
// decoding into interfaces: slower, plainly right. The fuzz target below
// holds flatten to it.
func referenceFlatten(body []byte) (map[string]refLeaf, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF { // nothing but space may follow
		return nil, false
	}
	out := map[string]refLeaf{}
	var walk func(p string, v any)
	walk = func(p string, v any) {
		switch t := v.(type) {
		case map[string]any:
			if len(t) == 0 {
				out[p] = refLeaf{text: "{}"}
			}
			for k, child := range t {
				if p == "" {
					walk(k, child)
				} else {
					walk(p+"."+k, child)
				}
			}
		case []any:
			if len(t) == 0 {
				out[p] = refLeaf{text: "[]"}
			}
			for i, child := range t {
				walk(p+"["+strconv.Itoa(i)+"]", child)
			}
		case json.Number:
			f, err := t.Float64()
			out[p] = refLeaf{isNum: err == nil, num: f, text: t.String()}
		case string:
			out[p] = refLeaf{text: strconv.Quote(t)}
		default:
			b, _ := json.Marshal(t)
			out[p] = refLeaf{text: string(b)}
		}
	}
	walk("", v)
	return out, true
}

func FuzzFlattenMatchesReference(f *testing.F) {
	for _, s := range []string{`{"a":{"b":[1,2.50,"x\u00e9"]},"c":null,"d":true}`, `[[],{}]`, `"s"`, `1e400`,
		`{"a":1,"a":{"b":2}}`, `{"k\"ey":"v\n"}`, `[1,]`, `{"a":1} x`, ` {"a" : [ -0.0 , 1E2 ] } `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		want, ok := referenceFlatten(body)
		got, err := flattenRef(body)
		if ok != (err == nil) {
			t.Fatalf("valid: reference %v, flatten %v (%v)", ok, err == nil, err)
		}
		// encoding/json turns invalid UTF-8 into U+FFFD, which would make
		// two different byte strings equal; flatten keeps the bytes.
		if !ok || len(want) >= maxLeaves || !utf8.Valid(body) {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("leaves: %v, want %v", got, want)
		}
		for k, w := range want {
			g, ok := got[k]
			if !ok || g.isNum != w.isNum || g.text != w.text || (g.isNum && g.num != w.num) {
				t.Fatalf("leaf %q: %+v, want %+v", k, g, w)
			}
		}
	})
}

// BenchmarkCompare is the comparison of one pair of model answers, which
// runs for every mirrored request: a candidate that answers alike but for
// its timestamp and version (ignored), one that predicts another class,
// and one whose answer is byte for byte the primary's.
func BenchmarkCompare(b *testing.B) {
	c, err := NewComparer([]string{"timestamp", "model_version"}, 1e-6, 1e-3, "prediction")
	if err != nil {
		b.Fatal(err)
	}
	p := []byte(`{"prediction":"versicolor","probabilities":{"setosa":0.004720044332218085,"versicolor":0.8518887589147586,"virginica":0.1433911967530234},"confidence":0.8518887589147586,"timestamp":"2026-11-23T02:44:36.506138974Z","model":"iris","model_version":"1"}`)
	for _, bc := range []struct {
		name string
		q    []byte
		want Outcome
	}{
		{"matched", []byte(`{"prediction":"versicolor","probabilities":{"setosa":0.004720044332218085,"versicolor":0.8518887589147586,"virginica":0.1433911967530234},"confidence":0.8518887589147586,"timestamp":"2026-11-23T02:44:36.507000000Z","model":"iris","model_version":"2"}`), Matched},
		{"mismatched", []byte(`{"prediction":"virginica","probabilities":{"setosa":0.0011,"versicolor":0.3200,"virginica":0.6789},"confidence":0.6789,"timestamp":"2026-11-23T02:44:36.507000000Z","model":"iris","model_version":"3"}`), Mismatched},
		{"identical", p, Matched},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r := c.Compare(200, p, 200, bc.q); r.Outcome != bc.want {
					b.Fatal(r.Outcome)
				}
			}
		})
	}
}
