// Package experiments keeps the A/B record of split routes and compares their
// variants.
//
// Every split route has an Experiment: per variant, the requests it answered,
// how many failed, their latencies (sums for the mean and variance, an
// HdrHistogram for the quantiles) and any business outcomes reported through
// the admin API. Report compares each variant with the first one, the
// baseline: error rates by a two-proportion z-test, latencies and outcomes by
// Welch's t-test.
//
// The state must outlive config reloads (a reload that only moves weights is
// the same experiment), so it lives in a Registry keyed by route name, outside
// the config snapshot. Each experiment carries an identity (the route's salt and
// variant names): a reload that changes it starts the route's experiment over,
// because who-sees-what changed and old and new numbers no longer compare.
// Requests still in flight on the old config finish recording into the old,
// now unreachable, experiment.
//
// Life of a route's experiment:
//
//	absent --Experiment(route, id)--> running(id) --Experiment(route, id')--> running(id'), zeroed
//	running --Retain without route--> absent
//
// Reading the numbers is cheap for the hot path: Variant.Record locks one of a
// few shards; Report adds the shards up.
//
// With a Cluster (a Redis shared by the gateway replicas), a background
// pusher adds every variant's new numbers to Redis and Report reads every
// replica's sums back; see cluster.go.
package experiments

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// Bounds on what operators may record as outcomes.
const (
	// MaxMetrics is the number of distinct outcome metrics one experiment
	// accepts; each costs memory in every variant and a table in the report.
	MaxMetrics = 64
	// MaxMetricLen bounds a metric name, in bytes.
	MaxMetricLen = 64
	// MaxOutcomeMagnitude bounds |value| so that sums of squares stay finite
	// (1e24 per value leaves room for 1e280 of them).
	MaxOutcomeMagnitude = 1e12
)

// Errors of AddOutcome, to be told apart with errors.Is.
var (
	ErrNoVariant      = errors.New("no such variant")
	ErrMetricName     = errors.New("invalid metric name")
	ErrTooManyMetrics = errors.New("too many metrics")
	ErrOutcomeValue   = errors.New("invalid outcome value")
)

// Registry holds every split route's experiment; safe for concurrent use.
type Registry struct {
	mu     sync.Mutex
	routes map[string]*Experiment
	now    func() time.Time // time.Now; tests replace it

	// sync is the state shared with other replicas through Redis; see
	// cluster.go. Its own mutex serialises pushes and cluster reads.
	sync clusterSync
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{routes: make(map[string]*Experiment), now: time.Now, sync: newClusterSync()}
}

// Experiment is one route's A/B test: its variants in config order, the first
// being the baseline. Several Experiment values may share one trial (the
// recorded state) when a reload reorders the variants without changing the
// identity: each keeps the order it was created with.
type Experiment struct {
	route    string
	variants []*Variant
	trial    *trial
}

// trial is the state of an experiment that outlives a reordering of variants.
type trial struct {
	identity  string
	startedAt time.Time
	byName    map[string]*Variant

	mu      sync.Mutex // guards metrics and every variant's outcomes
	metrics map[string]struct{}

	// pushed is, per variant name, what this process has added to Redis
	// so far (cumulative, without histogram): the next push sends the
	// difference. Guarded by the registry's sync.mu.
	pushed map[string]VariantStats
}

// Experiment returns the experiment of a split route, creating it. variants
// are the variant names in config order; the first is the baseline every other
// is compared with. identity is what makes it the same experiment (the caller
// passes the salt plus the sorted variant names): when identity changes, the
// route's experiment starts over from zero.
//
// The names, too, are part of what makes it the same experiment: if they
// change under the same identity (a caller's mistake), it starts over as well,
// since the recorded numbers could not be attributed.
func (r *Registry) Experiment(route, identity string, variants []string) *Experiment {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.routes[route]; cur != nil && cur.trial.identity == identity && sameNames(cur.trial.byName, variants) {
		if cur.hasOrder(variants) {
			return cur
		}
		e := &Experiment{route: route, trial: cur.trial}
		for _, name := range variants {
			e.variants = append(e.variants, cur.trial.byName[name])
		}
		r.routes[route] = e
		return e
	}
	t := &trial{
		identity:  identity,
		startedAt: r.now().UTC(),
		byName:    make(map[string]*Variant, len(variants)),
		metrics:   make(map[string]struct{}),
		pushed:    make(map[string]VariantStats),
	}
	e := &Experiment{route: route, trial: t}
	for _, name := range variants {
		v := t.byName[name]
		if v == nil { // a duplicate name (config validation forbids it) shares its state
			v = newVariant(name)
			t.byName[name] = v
		}
		e.variants = append(e.variants, v)
	}
	r.routes[route] = e
	return e
}

func sameNames(have map[string]*Variant, want []string) bool {
	for _, name := range want {
		if have[name] == nil {
			return false
		}
	}
	distinct := make(map[string]bool, len(want))
	for _, name := range want {
		distinct[name] = true
	}
	return len(distinct) == len(have)
}

func (e *Experiment) hasOrder(names []string) bool {
	return slices.EqualFunc(e.variants, names, func(v *Variant, name string) bool { return v.name == name })
}

// Retain drops the experiments of routes not in keep (called after a reload).
func (r *Registry) Retain(keep map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for route := range r.routes {
		if !keep[route] {
			delete(r.routes, route)
		}
	}
}

// Route is the name of the experiment's route.
func (e *Experiment) Route() string { return e.route }

// Identity is what makes it the same experiment across reloads.
func (e *Experiment) Identity() string { return e.trial.identity }

// StartedAt is when the experiment (this identity) started, in UTC.
func (e *Experiment) StartedAt() time.Time { return e.trial.startedAt }

// Len is the number of variants.
func (e *Experiment) Len() int { return len(e.variants) }

// Variant i, in the order given to Experiment. Never nil for a valid i.
func (e *Experiment) Variant(i int) *Variant { return e.variants[i] }

// VariantIndex finds a variant by name (-1 if none).
func (e *Experiment) VariantIndex(name string) int {
	for i, v := range e.variants {
		if v.name == name {
			return i
		}
	}
	return -1
}

// AddOutcome records a business outcome (a click: 1, a conversion value...)
// for variant i under metric. Metric names are chosen by operators: at most
// MaxMetricLen bytes of letters, digits and "_-.:/", at most MaxMetrics of
// them per experiment. value must be finite and within MaxOutcomeMagnitude.
func (e *Experiment) AddOutcome(i int, metric string, value float64) error {
	if i < 0 || i >= len(e.variants) {
		return fmt.Errorf("outcome for variant %d of route %q (%d variants): %w", i, e.route, len(e.variants), ErrNoVariant)
	}
	if err := checkMetric(metric); err != nil {
		return err
	}
	if !(value >= -MaxOutcomeMagnitude && value <= MaxOutcomeMagnitude) { // NaN fails both
		return fmt.Errorf("outcome %q = %v: must be finite and within ±%g: %w", metric, value, MaxOutcomeMagnitude, ErrOutcomeValue)
	}
	t := e.trial
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, known := t.metrics[metric]; !known {
		if len(t.metrics) >= MaxMetrics {
			return fmt.Errorf("outcome metric %q on route %q: already %d metrics: %w", metric, e.route, MaxMetrics, ErrTooManyMetrics)
		}
		t.metrics[metric] = struct{}{}
	}
	v := e.variants[i]
	acc := v.outcomes[metric]
	if acc == nil {
		acc = new(accumulator)
		v.outcomes[metric] = acc
	}
	acc.add(value)
	return nil
}

// checkMetric keeps metric names to a charset that is safe in every place
// they are shown (JSON, HTML, a terminal, a Redis key).
func checkMetric(metric string) error {
	if metric == "" || len(metric) > MaxMetricLen {
		return fmt.Errorf("metric name of %d bytes (want 1 to %d): %w", len(metric), MaxMetricLen, ErrMetricName)
	}
	for _, c := range []byte(metric) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_', c == '-', c == '.', c == ':', c == '/':
		default:
			return fmt.Errorf("metric name %q: byte %q not allowed (letters, digits and _-.:/ are): %w", metric, c, ErrMetricName)
		}
	}
	return nil
}

// Stats returns the raw sufficient statistics of every variant, in the
// experiment's order: what a replica would add to the others'.
func (e *Experiment) Stats() []VariantStats { return e.stats(true) }

// stats is Stats, with the latency histograms only when asked for.
func (e *Experiment) stats(withHistogram bool) []VariantStats {
	out := make([]VariantStats, len(e.variants))
	for i, v := range e.variants {
		out[i] = v.traffic(withHistogram)
	}
	e.trial.mu.Lock()
	for i, v := range e.variants {
		if len(v.outcomes) == 0 {
			continue
		}
		out[i].Outcomes = make(map[string]Moments, len(v.outcomes))
		for metric, acc := range v.outcomes {
			out[i].Outcomes[metric] = acc.moments()
		}
	}
	e.trial.mu.Unlock()
	return out
}

// Report computes the current comparison of every experiment, sorted by
// route. With a cluster set (SetCluster) the numbers are those of every
// replica together, read from Redis; without one, or when Redis does not
// answer within its timeout, this process's (and each report says which).
func (r *Registry) Report() []RouteReport {
	exps := r.experiments()
	if reports, ok := r.clusterReport(exps); ok {
		return reports
	}
	out := make([]RouteReport, len(exps))
	for i, e := range exps {
		out[i] = e.Report()
	}
	return out
}

// experiments lists the current experiments, sorted by route.
func (r *Registry) experiments() []*Experiment {
	r.mu.Lock()
	exps := make([]*Experiment, 0, len(r.routes))
	for _, e := range r.routes {
		exps = append(exps, e)
	}
	r.mu.Unlock()
	sort.Slice(exps, func(i, j int) bool { return exps[i].route < exps[j].route })
	return exps
}

// Report computes the current comparison of this experiment.
func (e *Experiment) Report() RouteReport {
	return BuildReport(e.route, e.trial.identity, e.trial.startedAt, e.Stats())
}
