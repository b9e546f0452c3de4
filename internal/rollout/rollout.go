// Package rollout is progressive delivery decided by the gateway itself: a
// canary route's candidate pool gets a growing share of the route's
// requests, step by step, while it answers as well as the stable pool, and
// none once it does not, as Argo Rollouts and Flagger do from Prometheus
// queries, here from the requests the gateway forwards.
//
// Life of a rollout (Decide and Override are the only ways between states):
//
//	progressing --interval over, gates hold--> progressing (next step)
//	progressing --last step passed-----------> promoted (candidate 100%)
//	progressing --interval over, too few-----> waiting --enough, gates hold--> next step
//	progressing|waiting --a gate fails-------> rolled_back (candidate 0%), or paused (on_fail: pause)
//	operators: pause, resume, promote, abort (see Override)
//
// What outlives what: a Rollout lives in the Registry across reloads while
// its route keeps the same stable and candidate pools; its State is saved
// through a Coordinator (a file in state_dir, or Redis shared by the
// replicas) at every transition, so a restart resumes at the same step.
// The numbers of a step (Window) are kept per step: a new step starts them
// afresh.
package rollout

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/experiments"
)

// Phase is where a rollout stands.
type Phase string

// The phases, as /admin/rollouts names them.
const (
	Progressing Phase = "progressing"
	Waiting     Phase = "waiting"
	Paused      Phase = "paused"
	Promoted    Phase = "promoted"
	RolledBack  Phase = "rolled_back"
)

// Phases lists every phase, for the state gauge.
var Phases = []Phase{Progressing, Waiting, Paused, Promoted, RolledBack}

// Who made a transition.
const (
	ByGateway  = "gateway"
	ByOperator = "operator"
)

// Gate names.
const (
	GateSuccess = "success_ratio"
	GateLatency = "latency_ratio"
	GateShadow  = "max_shadow_mismatch"
)

// OnFail values.
const (
	OnFailRollback = config.CanaryRollback
	OnFailPause    = config.CanaryPause
)

// MaxHistory bounds the events a state keeps.
const MaxHistory = 50

// Spec is a route's canary block, as the controller reads it.
type Spec struct {
	Route             string
	Stable, Candidate string
	Steps             []float64
	Interval          time.Duration
	MinRequests       int64
	SuccessRatio      float64 // 0: off
	LatencyRatio      float64 // 0: off
	LatencySlack      time.Duration
	MaxShadowMismatch float64 // 0: off
	OnFail            string
	Webhook           string
}

// SpecOf reads a validated canary block.
func SpecOf(route string, c *config.Canary) Spec {
	return Spec{
		Route: route, Stable: c.Stable, Candidate: c.Candidate,
		Steps:    append([]float64(nil), c.Steps...),
		Interval: c.Interval.D(), MinRequests: int64(c.MinRequests),
		SuccessRatio: *c.Gates.SuccessRatio, LatencyRatio: *c.Gates.LatencyRatio,
		LatencySlack: c.Gates.LatencySlack.D(), MaxShadowMismatch: c.Gates.MaxShadowMismatch,
		OnFail: c.OnFail, Webhook: c.Webhook,
	}
}

// State is a rollout's progress: what is saved, shared between replicas and
// shown by /admin/rollouts.
type State struct {
	Route     string `json:"route"`
	Stable    string `json:"stable"`
	Candidate string `json:"candidate"`
	Phase     Phase  `json:"state"`
	// Step indexes the spec's steps; Percent is the candidate's share now.
	Step    int     `json:"step"`
	Percent float64 `json:"percent"`
	// Version counts every change: a save succeeds only over the version it
	// read (compare and set). Epoch counts windows: it moves when a step
	// starts, so every replica starts its numbers afresh together.
	Version     uint64    `json:"version"`
	Epoch       uint64    `json:"epoch"`
	StepStarted time.Time `json:"step_started_at"`
	Reason      string    `json:"reason,omitempty"`
	UpdatedAt   time.Time `json:"updated_at"`
	History     []Event   `json:"history"`
}

// start is a new rollout at its first step, numbered after prev (the
// stored state of an earlier rollout of the route, or zero).
func start(spec Spec, prev State, now time.Time) State {
	st := State{
		Route: spec.Route, Stable: spec.Stable, Candidate: spec.Candidate,
		Phase: Progressing, Percent: spec.Steps[0],
		Version: prev.Version, Epoch: prev.Epoch,
	}
	reason := "started"
	if prev.Candidate != "" {
		reason = "started: the canary block changed from " + prev.Stable + " -> " + prev.Candidate
	}
	phase := Progressing
	if spec.Steps[0] >= 100 {
		phase = Promoted // a single step of 100: a blue-green switch
	}
	st, _ = transition(st, phase, 0, spec.Steps[0], now, reason, ByGateway, nil, Window{}, true)
	st.History[0].From, st.History[0].Kind = "", "started"
	return st
}

// sameRollout reports whether st belongs to spec: same stable and
// candidate. Other changes (steps, gates, interval) keep its place.
func sameRollout(spec Spec, st State) bool {
	return st.Stable == spec.Stable && st.Candidate == spec.Candidate
}

// fit adapts a kept state to a changed spec: a step past the new last one
// becomes the last, and a rollout under way takes its step's percent.
func fit(spec Spec, st State) State {
	if st.Step >= len(spec.Steps) {
		st.Step = len(spec.Steps) - 1
	}
	if st.Phase == Progressing || st.Phase == Waiting || st.Phase == Paused {
		st.Percent = spec.Steps[st.Step]
	}
	return st
}

// Event is one transition: what the history keeps and the webhook posts.
type Event struct {
	// Kind is started, step, waiting, paused, resumed, restarted,
	// promoted or rolled_back.
	Kind      string    `json:"event"`
	At        time.Time `json:"at"`
	Route     string    `json:"route"`
	Stable    string    `json:"stable"`
	Candidate string    `json:"candidate"`
	From      Phase     `json:"from"`
	To        Phase     `json:"to"`
	Step      int       `json:"step"`
	Percent   float64   `json:"percent"`
	Reason    string    `json:"reason"`
	By        string    `json:"by"`
	Gates     []Gate    `json:"gates,omitempty"`
	Window    *Window   `json:"window,omitempty"`
}

// Gate is one gate's value over a step against its threshold. Value is
// nil (and Pass false) until both pools have answered; a gate counts only
// once both have min_requests. The latency gate's value is the p99 ratio;
// it passes while the candidate's p99 is at most threshold times the
// stable's plus latency_slack (Detail gives the bound).
type Gate struct {
	Name      string   `json:"name"`
	Value     *float64 `json:"value"`
	Threshold float64  `json:"threshold"`
	Pass      bool     `json:"pass"`
	Detail    string   `json:"detail,omitempty"`
}

// Window is a step's numbers: each pool's requests, and the shadow
// comparison when the route mirrors to the candidate.
type Window struct {
	Stable           Side  `json:"stable"`
	Candidate        Side  `json:"candidate"`
	Shadowed         bool  `json:"shadowed"`
	ShadowCompared   int64 `json:"shadow_compared"`
	ShadowMismatched int64 `json:"shadow_mismatched"`
}

// Side is one pool's requests at a step.
type Side struct {
	Requests int64         `json:"requests"`
	Errors   int64         `json:"errors"`
	P99      time.Duration `json:"p99_ns"`
}

// SuccessRate is the share of requests that did not fail; 1 without any.
func (s Side) SuccessRate() float64 {
	if s.Requests == 0 {
		return 1
	}
	return 1 - float64(s.Errors)/float64(s.Requests)
}

// Counts are a step's numbers as recorded, which add up across replicas.
type Counts struct {
	Stable           SideCounts `json:"stable"`
	Candidate        SideCounts `json:"candidate"`
	Shadowed         bool       `json:"shadowed"`
	ShadowCompared   int64      `json:"shadow_compared"`
	ShadowMismatched int64      `json:"shadow_mismatched"`
}

// SideCounts are one pool's requests, failures and latency histogram (in
// microseconds; nil when empty).
type SideCounts struct {
	Requests int64                   `json:"requests"`
	Errors   int64                   `json:"errors"`
	Latency  *hdrhistogram.Histogram `json:"-"`
}

// Merge adds o's numbers to c.
func (c *Counts) Merge(o Counts) {
	c.Stable.merge(o.Stable)
	c.Candidate.merge(o.Candidate)
	c.Shadowed = c.Shadowed || o.Shadowed
	c.ShadowCompared += o.ShadowCompared
	c.ShadowMismatched += o.ShadowMismatched
}

func (s *SideCounts) merge(o SideCounts) {
	s.Requests += o.Requests
	s.Errors += o.Errors
	if o.Latency == nil {
		return
	}
	if s.Latency == nil {
		s.Latency = hdrhistogram.New(o.Latency.LowestTrackableValue(), o.Latency.HighestTrackableValue(), int(o.Latency.SignificantFigures()))
	}
	s.Latency.Merge(o.Latency)
}

// Window is what the gates read of the counts.
func (c Counts) Window() Window {
	return Window{
		Stable: c.Stable.side(), Candidate: c.Candidate.side(),
		Shadowed: c.Shadowed, ShadowCompared: c.ShadowCompared, ShadowMismatched: c.ShadowMismatched,
	}
}

func (s SideCounts) side() Side {
	out := Side{Requests: s.Requests, Errors: s.Errors}
	if s.Latency != nil && s.Latency.TotalCount() > 0 {
		out.P99 = time.Duration(s.Latency.ValueAtQuantile(99)) * time.Microsecond
	}
	return out
}

// Rollout is one canary route's live rollout. The request path reads the
// candidate's share (Basis) and records each answer (Record) without a
// lock; the controller holds mu while it decides.
type Rollout struct {
	basis  atomic.Uint64          // the candidate's share in hundredths of a percent
	window atomic.Pointer[window] // the current step's numbers

	mu     sync.Mutex
	spec   Spec
	state  State
	shadow func() (mismatched, compared int64) // nil unless the route mirrors to the candidate
	last   Counts                              // the merged numbers the controller last read
	leader bool                                // whether this replica decided in the last round
}

// window records a step's requests on this replica.
type window struct {
	epoch             uint64
	stable, candidate *experiments.Variant
	// the shadow's totals when the step started
	shadowMismatched, shadowCompared int64
}

// Basis is the candidate's share now, in hundredths of a percent (0 to
// 10000).
func (r *Rollout) Basis() uint64 { return r.basis.Load() }

// Record counts one forwarded request of the route: which pool the
// rollout chose, how long it took and whether it failed. It does not
// allocate.
func (r *Rollout) Record(candidate bool, latency time.Duration, failed bool) {
	w := r.window.Load()
	if candidate {
		w.candidate.Record(latency, failed)
	} else {
		w.stable.Record(latency, failed)
	}
}

// adopt makes st the rollout's state: its share applies to the next
// request, and a new epoch starts the numbers afresh. Called with mu held.
func (r *Rollout) adopt(st State) {
	r.state = st
	r.basis.Store(uint64(math.Round(st.Percent * 100)))
	if w := r.window.Load(); w == nil || w.epoch != st.Epoch {
		r.newWindow(st.Epoch)
	}
}

func (r *Rollout) newWindow(epoch uint64) {
	w := &window{epoch: epoch, stable: experiments.NewRecorder("stable"), candidate: experiments.NewRecorder("candidate")}
	if r.shadow != nil {
		w.shadowMismatched, w.shadowCompared = r.shadow()
	}
	r.window.Store(w)
}

// counts reads this replica's numbers of the current step.
func (r *Rollout) counts() Counts {
	w := r.window.Load()
	c := Counts{Stable: sideCounts(w.stable), Candidate: sideCounts(w.candidate)}
	if r.shadow != nil {
		c.Shadowed = true
		mismatched, compared := r.shadow()
		if compared < w.shadowCompared || mismatched < w.shadowMismatched {
			// The shadow report was reset: count from the reset.
			w.shadowMismatched, w.shadowCompared = 0, 0
		}
		c.ShadowMismatched, c.ShadowCompared = mismatched-w.shadowMismatched, compared-w.shadowCompared
	}
	return c
}

func sideCounts(v *experiments.Variant) SideCounts {
	st := v.Traffic()
	return SideCounts{Requests: st.Latency.N, Errors: st.Errors, Latency: st.Histogram}
}
