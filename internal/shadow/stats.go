package shadow

// The shadow state of every route: what became of its mirrors, per variant
// of the primary that answered. It lives in a Registry keyed by route name,
// outside the config snapshot, so that a reload that keeps a route's
// comparison keeps its numbers (STYLE.md habit 3). Each route carries an
// Identity (the shadow pool, the noise pool, the compare settings and the
// primary variants): a reload that changes it starts the route afresh,
// because old and new numbers no longer measure the same thing. Mirrors
// still in flight on the old config finish recording into the old, now
// unreachable, Route.
//
// Life of a route's shadow state:
//
//	absent --Route(name, id)--> counting(id) --Route(name, id')--> counting(id'), zeroed
//	counting --Reset / ResetAll--> counting(id), zeroed (the same *Route)
//	counting --Retain without name--> absent (its recorder closed)
//
// The in-flight slots of a route (TryAcquire/Release) belong to the route
// name, not to its identity: a reload that changes the identity keeps
// counting the mirrors still out, so the cap holds across it.
//
// Memory is bounded per (route, variant) group whatever the traffic: at
// most MaxFields distinct field names (the rest are counted under
// OtherField), two small latency histograms, MaxSamples samples of bounded
// size.

import (
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Bounds on the memory of one (route, variant) group.
const (
	// MaxFields is the number of distinct fields counted per group; any
	// further field is counted under OtherField. It also bounds the
	// cardinality of a per-field metric.
	MaxFields = 100
	// OtherField aggregates the fields beyond MaxFields, and any field name
	// longer than maxFieldName bytes.
	OtherField = "(other)"
	// MaxSamples is the size of the reservoir of non-matching pairs.
	MaxSamples = 8
	// MaxSampleDiffs is the number of field differences a sample keeps.
	MaxSampleDiffs = 10
	// MaxSampleBody bounds each body (and the URI) a sample keeps, in bytes.
	MaxSampleBody = 2 << 10

	// maxFieldName bounds a field name kept as a key (and a metric label).
	maxFieldName = 256
	// maxSampleValue bounds each value of a sampled FieldDiff, in bytes.
	maxSampleValue = 256
)

// The paired latency delta (shadow minus primary) is kept in two
// HdrHistograms of microseconds, one for negative deltas and one for the
// rest: an HdrHistogram holds non-negative values only, and shifting the
// deltas by an offset would cost all precision near zero. Two significant
// digits (quantiles within 1%) keep each histogram at about 20 KB.
const (
	// DeltaMax bounds |delta|; larger deltas are recorded as ±DeltaMax in
	// the quantiles (the coarse buckets still place them right).
	DeltaMax       = time.Minute
	deltaMaxMicros = int64(DeltaMax / time.Microsecond)
	deltaDigits    = 2
)

// deltaEdgesMS are the upper bounds (inclusive) of the coarse delta
// buckets, in milliseconds; a last bucket holds everything above.
var deltaEdgesMS = [...]float64{-1000, -100, -10, -1, 0, 1, 10, 100, 1000}

// VariantInfo names one primary variant of a route and its pool.
type VariantInfo struct {
	Name string
	Pool string
}

// Identity is what makes two configs the same shadow comparison.
type Identity struct {
	// Pool is the shadow (candidate) pool.
	Pool string
	// NoisePool is the pool of the second copy of the primary; "" without
	// noise.
	NoisePool string
	// Compare is a canonical text of the compare settings, built by the
	// caller (ignore patterns, tolerances, label).
	Compare string
	// Variants are the route's primary variants in config order; the index
	// of one is the variant argument of Count, Pair and NoisePair. A route
	// without variants has one unnamed group, index 0.
	Variants []VariantInfo
}

func (id Identity) equal(o Identity) bool {
	return id.Pool == o.Pool && id.NoisePool == o.NoisePool && id.Compare == o.Compare &&
		slices.Equal(id.Variants, o.Variants)
}

// Pair is one compared (primary, shadow) pair. The caller owns the slices
// and strings: what the route keeps is copied.
type Pair struct {
	// Result is Comparer.Compare(PrimaryStatus, PrimaryBody, ShadowStatus, ShadowBody).
	Result                        Result
	PrimaryStatus, ShadowStatus   int
	PrimaryLatency, ShadowLatency time.Duration
	RequestID, Method, URI        string
	// RequestBody is not kept by the report; a Record carries it.
	RequestBody, PrimaryBody, ShadowBody []byte
}

// Recorded is what Pair counted.
type Recorded struct {
	// Outcome of the pair: Compare's, with StatusMismatch turned into
	// Shadow5xx when the shadow failed (>= 500) and the primary did not.
	Outcome Outcome
	// Fields are the distinct field names counted as mismatching for this
	// pair, OtherField included, after the cap: at most MaxFields+1 values
	// per group ever, so a metric series per field stays bounded. Nil when
	// the pair matched.
	Fields []string
}

// Registry holds every shadowed route's state and recorder; safe for
// concurrent use.
type Registry struct {
	mu        sync.Mutex
	routes    map[string]*Route
	recorders map[string]*Recorder
	now       func() time.Time // time.Now; tests replace it
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{routes: make(map[string]*Route), recorders: make(map[string]*Recorder), now: time.Now}
}

// Route is the shadow state of one route under one Identity. Its methods
// are safe for concurrent use.
type Route struct {
	name  string
	id    Identity
	now   func() time.Time
	cmp   atomic.Pointer[Comparer]
	slots *atomic.Int64 // mirrors in flight; shared by every Route of this name
	state atomic.Pointer[routeState]
}

// routeState is what Reset replaces: the numbers since a moment.
type routeState struct {
	since  time.Time
	groups []*group // one per variant, in Identity order
}

// group is the state of one (route, variant).
type group struct {
	// counts is per outcome. Count adds without a lock; Pair adds under mu,
	// so that a report, which reads under mu, sees compared pairs and field
	// counts that agree.
	counts [numOutcomes]atomic.Int64

	mu          sync.Mutex
	pairSeq     uint64 // numbers the pairs, to count a field once per pair
	fields      map[string]*fieldCount
	labelPairs  int64
	labelAgree  int64
	noisePairs  int64
	deltaNeg    *hdrhistogram.Histogram // -delta of negative deltas, µs
	deltaPos    *hdrhistogram.Histogram // deltas >= 0, µs
	buckets     [len(deltaEdgesMS) + 1]int64
	nonMatching int64 // non-matching pairs offered to the reservoir
	samples     []Sample
}

// fieldCount is one field's mismatches against the candidate and against
// the noise copy.
type fieldCount struct {
	mismatches, noise int64
	lastPair          uint64 // pairSeq of the last pair that counted it
}

func newGroup() *group {
	return &group{
		fields:   make(map[string]*fieldCount),
		deltaNeg: hdrhistogram.New(1, deltaMaxMicros, deltaDigits),
		deltaPos: hdrhistogram.New(1, deltaMaxMicros, deltaDigits),
	}
}

func newState(now time.Time, variants int) *routeState {
	st := &routeState{since: now.UTC(), groups: make([]*group, max(variants, 1))}
	for i := range st.groups {
		st.groups[i] = newGroup()
	}
	return st
}

// Route returns the shadow state of a route, creating it. The same name and
// an equal identity return the same *Route, numbers kept; a different
// identity starts the route afresh (a new *Route). cmp is the Comparer the
// caller compares this route's pairs with, handed back by Route.Comparer;
// the latest one given is kept.
func (r *Registry) Route(name string, id Identity, cmp *Comparer) *Route {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.routes[name]
	if cur != nil && cur.id.equal(id) {
		cur.cmp.Store(cmp)
		return cur
	}
	id.Variants = slices.Clone(id.Variants)
	rt := &Route{name: name, id: id, now: r.now, slots: new(atomic.Int64)}
	if cur != nil {
		rt.slots = cur.slots
	}
	rt.cmp.Store(cmp)
	rt.state.Store(newState(r.now(), len(id.Variants)))
	r.routes[name] = rt
	return rt
}

// Retain forgets the routes not in keep, and closes their recorders
// (called after a reload).
func (r *Registry) Retain(keep map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name := range r.routes {
		if !keep[name] {
			delete(r.routes, name)
		}
	}
	for name, rec := range r.recorders {
		if !keep[name] {
			_ = rec.Close() // nothing to do about a failed close of a dropped route's file
			delete(r.recorders, name)
		}
	}
}

// Reset starts one route's numbers afresh (POST /admin/shadow/reset); false
// if the route is unknown. The *Route stays the same, and so do its
// in-flight slots.
func (r *Registry) Reset(name string) bool {
	r.mu.Lock()
	rt := r.routes[name]
	r.mu.Unlock()
	if rt == nil {
		return false
	}
	rt.reset()
	return true
}

// ResetAll starts every route's numbers afresh.
func (r *Registry) ResetAll() {
	for _, rt := range r.list() {
		rt.reset()
	}
}

// Report is the state of every route, sorted by route name.
func (r *Registry) Report() []RouteReport {
	routes := r.list()
	out := make([]RouteReport, len(routes))
	for i, rt := range routes {
		out[i] = rt.Report()
	}
	return out
}

// list is the current routes, sorted by name.
func (r *Registry) list() []*Route {
	r.mu.Lock()
	routes := make([]*Route, 0, len(r.routes))
	for _, rt := range r.routes {
		routes = append(routes, rt)
	}
	r.mu.Unlock()
	sort.Slice(routes, func(i, j int) bool { return routes[i].name < routes[j].name })
	return routes
}

func (rt *Route) reset() {
	rt.state.Store(newState(rt.now(), len(rt.id.Variants)))
}

// Name of the route.
func (rt *Route) Name() string { return rt.name }

// Identity the route was created with (a copy).
func (rt *Route) Identity() Identity {
	id := rt.id
	id.Variants = slices.Clone(id.Variants)
	return id
}

// Comparer the route's pairs are compared with (the last one given to
// Registry.Route).
func (rt *Route) Comparer() *Comparer { return rt.cmp.Load() }

// TryAcquire takes one in-flight mirror slot if fewer than limit are
// taken; lock-free. A true answer must be paired with one Release on the
// same Route.
func (rt *Route) TryAcquire(limit int) bool {
	for {
		n := rt.slots.Load()
		if n >= int64(limit) {
			return false
		}
		if rt.slots.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release gives back a slot taken by TryAcquire.
func (rt *Route) Release() { rt.slots.Add(-1) }

// InFlight is the number of slots taken.
func (rt *Route) InFlight() int { return int(rt.slots.Load()) }

// group returns the state of a variant, nil when the index is out of range
// (a caller's mistake: nothing is recorded).
func (rt *Route) group(variant int) *group {
	groups := rt.state.Load().groups
	if variant < 0 || variant >= len(groups) {
		return nil
	}
	return groups[variant]
}

// Count records a mirror that ended without a comparison: Dropped,
// SkippedBody, SkippedPrimary, Timeout or Error. variant is the index in
// Identity.Variants of the variant that answered the primary.
func (rt *Route) Count(variant int, o Outcome) {
	if g := rt.group(variant); g != nil && o >= 0 && o < numOutcomes {
		g.counts[o].Add(1)
	}
}

// Pair records one compared (primary, shadow) pair and returns what it
// counted. It allocates only for the Fields of a mismatching pair, a field
// name seen for the first time, and a pair taken into the reservoir.
func (rt *Route) Pair(variant int, p *Pair) Recorded {
	o := classify(p)
	if !compared(o) { // not a comparison: a caller's mistake, counted as what it says
		rt.Count(variant, o)
		return Recorded{Outcome: o}
	}
	rec := Recorded{Outcome: o}
	g := rt.group(variant)
	if g == nil {
		return rec
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.counts[o].Add(1)
	g.labelPairs += int64(p.Result.LabelPairs)
	g.labelAgree += int64(p.Result.LabelAgree)
	g.recordDelta(p.ShadowLatency - p.PrimaryLatency)
	if o == Mismatched {
		rec.Fields = g.countFields(p.Result.Diffs, false)
	}
	if o != Matched {
		g.offerSample(rt.now, p, o)
	}
	return rec
}

// NoisePair records one pair of the primary's answer and its noise copy's:
// res is Compare(primary, noise copy).
func (rt *Route) NoisePair(variant int, res Result) {
	g := rt.group(variant)
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.noisePairs++
	if res.Outcome == Mismatched {
		g.countFields(res.Diffs, true)
	}
}

// MismatchRate is the share of variant's compared pairs that did not
// match (Mismatched, StatusMismatch, NotJSON, Shadow5xx), and the number of
// compared pairs; 0, 0 before any comparison.
func (rt *Route) MismatchRate(variant int) (rate float64, compared int64) {
	g := rt.group(variant)
	if g == nil {
		return 0, 0
	}
	return mismatchRate(g.loadCounts())
}

// OverallMismatchRate is MismatchRate over every variant together.
func (rt *Route) OverallMismatchRate() (rate float64, compared int64) {
	var sum [numOutcomes]int64
	for _, g := range rt.state.Load().groups {
		counts := g.loadCounts()
		for o := range sum {
			sum[o] += counts[o]
		}
	}
	return mismatchRate(sum)
}

// Compared counts the compared pairs of the requests variant answered,
// and how many of them did not match (as MismatchRate counts them).
func (rt *Route) Compared(variant int) (mismatched, compared int64) {
	if g := rt.group(variant); g != nil {
		return mismatches(g.loadCounts())
	}
	return 0, 0
}

func mismatches(counts [numOutcomes]int64) (bad, n int64) {
	bad = counts[Mismatched] + counts[StatusMismatch] + counts[NotJSON] + counts[Shadow5xx]
	return bad, counts[Matched] + bad
}

func mismatchRate(counts [numOutcomes]int64) (float64, int64) {
	bad, n := mismatches(counts)
	if n == 0 {
		return 0, 0
	}
	return float64(bad) / float64(n), n
}

// classify is the outcome of a compared pair: a status mismatch where the
// shadow failed and the primary did not is the shadow's 5xx.
func classify(p *Pair) Outcome {
	o := p.Result.Outcome
	if o == StatusMismatch && p.ShadowStatus >= 500 && p.PrimaryStatus < 500 {
		return Shadow5xx
	}
	return o
}

// compared reports whether o is the outcome of a compared pair.
func compared(o Outcome) bool {
	switch o {
	case Matched, Mismatched, StatusMismatch, NotJSON, Shadow5xx:
		return true
	}
	return false
}

func (g *group) loadCounts() [numOutcomes]int64 {
	var out [numOutcomes]int64
	for o := range out {
		out[o] = g.counts[o].Load()
	}
	return out
}

// countFields counts each distinct field of diffs once, as a mismatch
// against the candidate or against the noise copy, and returns the names
// counted against the candidate. Called with g.mu held.
func (g *group) countFields(diffs []FieldDiff, noise bool) []string {
	g.pairSeq++
	var counted []string
	for i := range diffs {
		name, fc := g.field(diffs[i].Field)
		if fc.lastPair == g.pairSeq {
			continue // another index of a field already counted for this pair
		}
		fc.lastPair = g.pairSeq
		if noise {
			fc.noise++
		} else {
			fc.mismatches++
			counted = append(counted, name)
		}
	}
	return counted
}

// field returns the counts of a field and the name they are kept under:
// the field itself, or OtherField once MaxFields are kept.
func (g *group) field(name string) (string, *fieldCount) {
	if fc := g.fields[name]; fc != nil {
		return name, fc
	}
	if len(name) > maxFieldName || len(g.fields) >= MaxFields {
		name = OtherField
		if fc := g.fields[name]; fc != nil {
			return name, fc
		}
	}
	// A copy: the caller's string may share memory it reuses.
	name = strings.Clone(name)
	fc := new(fieldCount)
	g.fields[name] = fc
	return name, fc
}

// recordDelta adds one paired latency delta. Called with g.mu held.
func (g *group) recordDelta(d time.Duration) {
	us := min(max(int64(d/time.Microsecond), -deltaMaxMicros), deltaMaxMicros)
	// Cannot fail: the value is within the histograms' range.
	if us < 0 {
		_ = g.deltaNeg.RecordValue(-us)
	} else {
		_ = g.deltaPos.RecordValue(us)
	}
	ms := float64(d) / float64(time.Millisecond)
	i := 0
	for i < len(deltaEdgesMS) && ms > deltaEdgesMS[i] {
		i++
	}
	g.buckets[i]++
}

// offerSample offers a non-matching pair to the reservoir (Algorithm R,
// Vitter 1985: after n pairs, each is in it with probability
// MaxSamples/n). Only a pair taken is copied. Called with g.mu held.
func (g *group) offerSample(now func() time.Time, p *Pair, o Outcome) {
	g.nonMatching++
	slot := len(g.samples)
	if slot >= MaxSamples {
		slot = int(rand.Int64N(g.nonMatching))
		if slot >= MaxSamples {
			return
		}
	}
	s := Sample{
		Time:             now().UTC(),
		RequestID:        truncate(p.RequestID, MaxSampleBody),
		Method:           truncate(p.Method, MaxSampleBody),
		URI:              truncate(p.URI, MaxSampleBody),
		Outcome:          o.String(),
		PrimaryStatus:    p.PrimaryStatus,
		ShadowStatus:     p.ShadowStatus,
		PrimaryLatencyMS: millis(p.PrimaryLatency),
		ShadowLatencyMS:  millis(p.ShadowLatency),
	}
	diffs := p.Result.Diffs
	if len(diffs) > MaxSampleDiffs {
		s.MoreDiffs = len(diffs) - MaxSampleDiffs
		diffs = diffs[:MaxSampleDiffs]
	}
	for _, d := range diffs {
		s.Diffs = append(s.Diffs, FieldDiff{
			Path:      truncate(d.Path, maxSampleValue),
			Field:     truncate(d.Field, maxSampleValue),
			Primary:   truncate(d.Primary, maxSampleValue),
			Candidate: truncate(d.Candidate, maxSampleValue),
		})
	}
	if o != Mismatched { // for a mismatch the diffs say it all
		s.PrimaryBody = truncateBytes(p.PrimaryBody, MaxSampleBody)
		s.ShadowBody = truncateBytes(p.ShadowBody, MaxSampleBody)
	}
	if slot == len(g.samples) {
		g.samples = append(g.samples, s)
	} else {
		g.samples[slot] = s
	}
}

// truncateMark ends a text cut by truncate.
const truncateMark = "…"

// truncate returns a copy of s of at most limit bytes (plus the mark when
// cut), cut at a character boundary. The copy matters: the caller's
// strings may share memory it reuses.
func truncate(s string, limit int) string {
	if cut := cutAt(s, limit); cut < len(s) {
		return s[:cut] + truncateMark
	}
	return strings.Clone(s)
}

// truncateBytes is truncate for a body.
func truncateBytes(b []byte, limit int) string {
	if cut := cutAt(b, limit); cut < len(b) {
		return string(b[:cut]) + truncateMark
	}
	return string(b)
}

// cutAt is where to cut s to at most limit bytes without splitting a
// UTF-8 character: len(s) when it fits.
func cutAt[T string | []byte](s T, limit int) int {
	if len(s) <= limit {
		return len(s)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return cut
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
