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
	"fmt"
	"maps"
	"math"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

	// fields remembers what the settings make of a field (a path without
	// its indexes): a model answers with the same few fields every time,
	// and matching them against the patterns was most of a comparison's
	// cost. The map is replaced, never changed, so reading it takes no
	// lock; at most maxKnownFields are kept, others are worked out each
	// time.
	fields atomic.Pointer[map[string]fieldInfo]
	mu     sync.Mutex // serialises replacing fields
}

// fieldInfo is what a comparison needs to know of a field.
type fieldInfo struct {
	ignored bool // an ignore pattern matches the field
	label   bool // the label pattern matches the field
}

const maxKnownFields = 1024

// info returns what the settings make of field f.
func (c *Comparer) info(f []byte) fieldInfo {
	if in, ok := (*c.fields.Load())[string(f)]; ok {
		return in
	}
	field := string(f)
	in := fieldInfo{ignored: c.ignored(field), label: c.label != "" && matches(c.label, field)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if known := *c.fields.Load(); len(known) < maxKnownFields {
		next := maps.Clone(known)
		next[field] = in
		c.fields.Store(&next)
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
	c.fields.Store(&map[string]fieldInfo{})
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
func fieldOf(p string) string { return string(appendField(nil, []byte(p))) }

// appendField appends path p with its indexes dropped to dst. It runs for
// every leaf of every pair, so it is a loop, not a regexp.
func appendField(dst, p []byte) []byte {
	for i := 0; i < len(p); i++ {
		dst = append(dst, p[i])
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
	return dst
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
	if bytes.Equal(primary, candidate) {
		return c.identical(primary)
	}
	p, errP := flatten(primary)
	q, errQ := flatten(candidate)
	if errP != nil || errQ != nil {
		for _, f := range [2]*flat{p, q} {
			if f != nil {
				f.release()
			}
		}
		if bytes.Equal(bytes.TrimSpace(primary), bytes.TrimSpace(candidate)) {
			return Result{Outcome: Matched}
		}
		return Result{Outcome: NotJSON}
	}
	defer p.release()
	defer q.release()

	// Both sides are sorted by path: walk them together, once over every
	// path of either.
	var r Result
	var scratch [128]byte
	for i, j := 0, 0; i < len(p.leaves) || j < len(q.leaves); {
		var a, b *leaf
		var path []byte
		switch {
		case j == len(q.leaves):
			a, path = &p.leaves[i], p.pathOf(p.leaves[i])
			i++
		case i == len(p.leaves):
			b, path = &q.leaves[j], q.pathOf(q.leaves[j])
			j++
		default:
			pp, qp := p.pathOf(p.leaves[i]), q.pathOf(q.leaves[j])
			switch order := bytes.Compare(pp, qp); {
			case order < 0:
				a, path = &p.leaves[i], pp
				i++
			case order > 0:
				b, path = &q.leaves[j], qp
				j++
			default:
				a, b, path = &p.leaves[i], &q.leaves[j], pp
				i++
				j++
			}
		}
		field := appendField(scratch[:0], path)
		info := c.info(field)
		if info.label {
			r.LabelPairs++
			if a != nil && b != nil && a.equal(*b, 0, 0) {
				r.LabelAgree++
			}
		}
		if info.ignored || a != nil && b != nil && a.equal(*b, c.absTol, c.relTol) {
			continue
		}
		d := FieldDiff{Path: string(path), Field: string(field), Primary: absent, Candidate: absent}
		if a != nil {
			d.Primary = a.text()
		}
		if b != nil {
			d.Candidate = b.text()
		}
		r.Diffs = append(r.Diffs, d)
	}
	if len(r.Diffs) > 0 {
		r.Outcome = Mismatched
	}
	return r
}

// identical is the comparison of a body with itself: a match, whose label
// values (if any) all agree.
func (c *Comparer) identical(body []byte) Result {
	r := Result{Outcome: Matched}
	if c.label == "" {
		return r
	}
	f, err := flatten(body)
	if err != nil {
		return r
	}
	defer f.release()
	var scratch [128]byte
	for _, l := range f.leaves {
		if c.info(appendField(scratch[:0], f.pathOf(l))).label {
			r.LabelPairs++
			r.LabelAgree++
		}
	}
	return r
}
