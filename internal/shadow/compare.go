// Package shadow holds what Sluice needs to tell whether a candidate model
// answers like the primary. This file is the comparison of one pair of
// answers; the report state (stats.go, report.go, render.go) and the
// recorder of mismatching pairs (record.go) build on it.
//
// A pair is compared field by field. Both JSON bodies are flattened to
// leaf paths (probabilities.setosa, predictions[3].prediction); numbers
// match within an absolute or a relative tolerance, everything else must be
// equal, and paths matching an ignore pattern are skipped. Differing status
// codes and bodies that are not JSON are outcomes of their own rather than
// field mismatches, so a report can tell "answers differently" from
// "failed" and "answered something else".
//
// # Noise
//
// Some fields differ between two runs of the very same model (a sampled
// token, a float summed in another order). With a noise pool, a share of
// requests is also sent to a second copy of the primary, and those pairs
// measure, per field, how often the primary disagrees with itself. For a
// field with candidate mismatch rate p1 = m1/n1 (n1 = compared pairs) and
// noise rate p0 = m0/n0 (n0 = noise pairs), the verdict is:
//
//   - without noise pairs (n0 = 0): "difference" when m1 > 0; the noise
//     rate is unknown (null in the report);
//   - otherwise "difference" only when
//     p1 - p0 > max(0.01, 3·sqrt(p0(1-p0)/n0 + p1(1-p1)/n1)),
//     that is by at least one percentage point and by three standard
//     errors of the difference; else "noise" when the noise copy also
//     mismatched the field (m0 > 0), else "below_margin".
//
// The rule is NoiseRule, and is repeated in every report.
package shadow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/buger/jsonparser"
)

// Outcome is how a pair compared.
type Outcome int

// The outcomes of Compare come first; the rest are what else can become of
// a mirrored request (see Route.Pair and Route.Count). Their String names are
// Prometheus label values.
const (
	Matched        Outcome = iota // every compared field within tolerance
	Mismatched                    // at least one field differs
	StatusMismatch                // the status codes differ; bodies not compared
	NotJSON                       // a body is not JSON and the bodies differ
	Shadow5xx                     // the shadow answered >= 500 while the primary answered < 500
	Timeout                       // the shadow did not answer within its timeout
	Error                         // connect error, no backend, or an unreadable or oversized shadow answer
	Dropped                       // the in-flight cap was reached: the mirror was never sent
	SkippedBody                   // the request body was over the shadow max_body: not mirrored
	SkippedPrimary                // the primary's answer cannot be compared (the gateway failed the request, no Content-Length, over max_body)

	numOutcomes = iota
)

var outcomeNames = [numOutcomes]string{
	"matched", "mismatched", "status_mismatch", "not_json",
	"shadow_5xx", "timeout", "error", "dropped", "skipped_body", "skipped_primary",
}

func (o Outcome) String() string {
	if o < 0 || o >= numOutcomes {
		return "outcome(" + strconv.Itoa(int(o)) + ")"
	}
	return outcomeNames[o]
}

// Outcomes lists every outcome in order, for pre-creating metric series.
func Outcomes() []Outcome {
	all := make([]Outcome, numOutcomes)
	for i := range all {
		all[i] = Outcome(i)
	}
	return all
}

// OutcomeNames lists every outcome's String name in order: the label
// values of a per-outcome metric.
func OutcomeNames() []string {
	return append([]string(nil), outcomeNames[:]...)
}

// FieldDiff is one leaf that differs. Path is exact (with indexes); Field
// is Path with indexes dropped (predictions[].prediction), the key that
// reports aggregate on. Values are JSON text; absent means the field is
// missing on that side.
type FieldDiff struct {
	Path      string `json:"path"`
	Field     string `json:"field"`
	Primary   string `json:"primary"`
	Candidate string `json:"candidate"`
}

// Result is the comparison of one pair.
type Result struct {
	Outcome Outcome
	// Diffs are the differing leaves, in path order (Mismatched only).
	Diffs []FieldDiff
	// LabelPairs counts the label values compared (one per row of a
	// batch) and LabelAgree those equal; both 0 without a label.
	LabelPairs, LabelAgree int
}

// Comparer compares pairs by one route's compare settings. Its settings
// are immutable and it is safe for concurrent use.
type Comparer struct {
	ignore []string // normalised glob patterns
	absTol float64
	relTol float64
	label  string // normalised label path pattern; "" for none

	// paths remembers what the settings make of a leaf path: a model
	// answers with the same few paths every time, and matching them
	// against the patterns was most of a comparison's cost. At most
	// maxKnownPaths are kept; others are worked out each time.
	paths      sync.Map // string -> pathInfo
	knownPaths atomic.Int32
}

// pathInfo is what a comparison needs to know of a leaf path.
type pathInfo struct {
	field   string // the path without indexes
	ignored bool   // an ignore pattern matches the field
	label   bool   // the label pattern matches the field
}

const maxKnownPaths = 4096

// info returns what the settings make of path p.
func (c *Comparer) info(p string) pathInfo {
	if v, ok := c.paths.Load(p); ok {
		return v.(pathInfo)
	}
	field := fieldOf(p)
	in := pathInfo{field: field, ignored: c.ignored(field), label: c.label != "" && matches(c.label, field)}
	if c.knownPaths.Load() < maxKnownPaths {
		if _, loaded := c.paths.LoadOrStore(p, in); !loaded {
			c.knownPaths.Add(1)
		}
	}
	return in
}

// absent stands for a field one side does not have.
const absent = "(absent)"

// NewComparer checks the settings. Ignore patterns are globs over field
// paths: "*" matches any run of characters, "[*]" or "[]" any array
// index, and a pattern without "." or "[" also matches a field of that
// name at any depth (timestamp skips meta.timestamp). label names the
// field holding the predicted class, the same way.
func NewComparer(ignore []string, absTol, relTol float64, label string) (*Comparer, error) {
	if absTol < 0 || relTol < 0 || math.IsNaN(absTol) || math.IsNaN(relTol) {
		return nil, fmt.Errorf("tolerances must be 0 or more")
	}
	c := &Comparer{absTol: absTol, relTol: relTol}
	for _, p := range ignore {
		n := normalisePattern(p)
		if _, err := path.Match(n, ""); err != nil || p == "" {
			return nil, fmt.Errorf("ignore pattern %q is not a valid glob", p)
		}
		c.ignore = append(c.ignore, n)
	}
	if label != "" {
		c.label = normalisePattern(label)
		if _, err := path.Match(c.label, ""); err != nil {
			return nil, fmt.Errorf("label %q is not a valid field path", label)
		}
	}
	return c, nil
}

var indexRE = regexp.MustCompile(`\[(\*|\d*)\]`)

// normalisePattern turns array indexes into "[]" and escapes the brackets
// for path.Match.
func normalisePattern(p string) string {
	return strings.ReplaceAll(indexRE.ReplaceAllString(p, "[]"), "[]", `\[\]`)
}

// fieldOf drops the indexes of a path: predictions[3].x -> predictions[].x.
// It runs for every leaf of every pair, so it is a loop, not a regexp, and
// a path without an index is returned as is.
func fieldOf(p string) string {
	if strings.IndexByte(p, '[') < 0 {
		return p
	}
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		b = append(b, p[i])
		if p[i] != '[' {
			continue
		}
		j := i + 1
		for j < len(p) && (p[j] >= '0' && p[j] <= '9' || p[j] == '*') {
			j++
		}
		if j < len(p) && p[j] == ']' {
			i = j - 1 // the loop appends the ']'
		}
	}
	return string(b)
}

// matches reports whether the normalised pattern matches a field. A bare
// name matches the last name of the field, through any trailing array
// indexes (prediction matches meta.prediction; predictions matches
// predictions[]).
func matches(pattern, field string) bool {
	if ok, _ := path.Match(pattern, field); ok {
		return true
	}
	if strings.ContainsAny(pattern, ".[") {
		return false
	}
	name := field
	for strings.HasSuffix(name, "[]") {
		name = name[:len(name)-2]
	}
	ok, _ := path.Match(pattern, name[strings.LastIndexAny(name, ".]")+1:])
	return ok
}

func (c *Comparer) ignored(field string) bool {
	for _, p := range c.ignore {
		if matches(p, field) {
			return true
		}
	}
	return false
}

// Compare compares the candidate's answer with the primary's.
func (c *Comparer) Compare(primaryStatus int, primary []byte, candidateStatus int, candidate []byte) Result {
	if primaryStatus != candidateStatus {
		return Result{Outcome: StatusMismatch}
	}
	p, errP := flatten(primary)
	q, errQ := flatten(candidate)
	if errP != nil || errQ != nil {
		if bytes.Equal(bytes.TrimSpace(primary), bytes.TrimSpace(candidate)) {
			return Result{Outcome: Matched}
		}
		return Result{Outcome: NotJSON}
	}
	var r Result
	for _, k := range unionPaths(p, q) {
		info := c.info(k)
		a, inP := p[k]
		b, inQ := q[k]
		if info.label {
			r.LabelPairs++
			if inP && inQ && a.equal(b, 0, 0) {
				r.LabelAgree++
			}
		}
		if info.ignored {
			continue
		}
		if inP && inQ && a.equal(b, c.absTol, c.relTol) {
			continue
		}
		d := FieldDiff{Path: k, Field: info.field, Primary: absent, Candidate: absent}
		if inP {
			d.Primary = a.text
		}
		if inQ {
			d.Candidate = b.text
		}
		r.Diffs = append(r.Diffs, d)
	}
	if len(r.Diffs) > 0 {
		r.Outcome = Mismatched
	}
	return r
}

// leaf is one flattened value: a number, or JSON text for the rest.
type leaf struct {
	isNum bool
	num   float64
	text  string
}

func (a leaf) equal(b leaf, absTol, relTol float64) bool {
	if a.isNum && b.isNum {
		d := math.Abs(a.num - b.num)
		return a.num == b.num || d <= absTol || d <= relTol*math.Max(math.Abs(a.num), math.Abs(b.num))
	}
	return a.isNum == b.isNum && a.text == b.text
}

// maxLeaves bounds how much of a body is compared: an answer this large is
// compared on its first maxLeaves leaves.
const maxLeaves = 10000

// flatten decodes a JSON body into its leaves by path. It runs twice per
// mirrored request, so it walks the body in place (buger/jsonparser)
// rather than decoding it into maps and interfaces; encoding/json only
// checks that the body is one valid JSON value first, which also bounds
// its nesting.
func flatten(body []byte) (map[string]leaf, error) {
	if !json.Valid(body) {
		return nil, fmt.Errorf("not a single valid JSON value")
	}
	value, typ, _, err := jsonparser.Get(body)
	if err != nil {
		return nil, err
	}
	out := make(map[string]leaf, 16)
	walk(make([]byte, 0, 64), value, typ, out)
	return out, nil
}

// member is one key of an object and its value.
type member struct {
	key   string
	value []byte
	typ   jsonparser.ValueType
}

// walk adds the leaves of value, found at path p, to out.
func walk(p []byte, value []byte, typ jsonparser.ValueType, out map[string]leaf) {
	if len(out) >= maxLeaves {
		return
	}
	switch typ {
	case jsonparser.Object:
		var members []member
		_ = jsonparser.ObjectEach(value, func(k, v []byte, t jsonparser.ValueType, _ int) error {
			key, err := jsonparser.ParseString(k)
			if err != nil {
				key = string(k)
			}
			// A repeated key keeps its last value, as encoding/json does.
			for i := range members {
				if members[i].key == key {
					members = slices.Delete(members, i, i+1)
					break
				}
			}
			members = append(members, member{key, v, t})
			return nil
		})
		if len(members) == 0 {
			out[string(p)] = leaf{text: "{}"}
		}
		// In key order, so that a body cut at maxLeaves is always cut at
		// the same leaves.
		slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
		for _, m := range members {
			q := p
			if len(q) > 0 {
				q = append(q, '.')
			}
			walk(append(q, m.key...), m.value, m.typ, out)
		}
	case jsonparser.Array:
		i := 0
		_, _ = jsonparser.ArrayEach(value, func(v []byte, t jsonparser.ValueType, _ int, _ error) {
			q := append(p, '[')
			q = strconv.AppendInt(q, int64(i), 10)
			walk(append(q, ']'), v, t, out)
			i++
		})
		if i == 0 {
			out[string(p)] = leaf{text: "[]"}
		}
	case jsonparser.Number:
		f, err := strconv.ParseFloat(string(value), 64)
		out[string(p)] = leaf{isNum: err == nil, num: f, text: string(value)}
	case jsonparser.String:
		s, err := jsonparser.ParseString(value)
		if err != nil {
			s = string(value)
		}
		out[string(p)] = leaf{text: strconv.Quote(s)}
	default: // true, false, null
		out[string(p)] = leaf{text: string(value)}
	}
}

// unionPaths is every path of either side, sorted.
func unionPaths(a, b map[string]leaf) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, dup := a[k]; !dup {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
