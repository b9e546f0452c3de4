package rollout

import (
	"time"
)

// Report is one rollout as /admin/rollouts shows it.
type Report struct {
	Route       string    `json:"route"`
	Stable      string    `json:"stable"`
	Candidate   string    `json:"candidate"`
	State       Phase     `json:"state"`
	Step        int       `json:"step"`
	Steps       []float64 `json:"steps"`
	Percent     float64   `json:"percent"`
	StepStarted time.Time `json:"step_started_at"`
	// NextDecision is the earliest moment the step can pass (null once the
	// rollout has ended or is paused).
	NextDecision *time.Time `json:"next_decision_at"`
	Interval     string     `json:"interval"`
	MinRequests  int64      `json:"min_requests"`
	OnFail       string     `json:"on_fail"`
	Reason       string     `json:"reason,omitempty"`
	// Window is the step's numbers, over every replica; Gates their values
	// against the thresholds.
	Window  Window  `json:"window"`
	Gates   []Gate  `json:"gates"`
	History []Event `json:"history"`
	// Decider says whether this replica decides (always, without Redis).
	Decider bool `json:"decider"`
}

// Report describes every rollout, by route name.
func (g *Registry) Report() []Report {
	out := []Report{}
	for _, r := range g.list() {
		r.mu.Lock()
		st, spec, w, leader := r.state, r.spec, r.last.Window(), r.leader
		r.mu.Unlock()
		gates, _ := Evaluate(spec, w)
		rep := Report{
			Route: spec.Route, Stable: spec.Stable, Candidate: spec.Candidate,
			State: st.Phase, Step: st.Step, Steps: spec.Steps, Percent: st.Percent,
			StepStarted: st.StepStarted, Interval: spec.Interval.String(), MinRequests: spec.MinRequests,
			OnFail: spec.OnFail, Reason: st.Reason, Window: w, Gates: gates,
			History: st.History, Decider: leader,
		}
		if st.Phase == Promoted || st.Phase == RolledBack {
			// Ended: the gates as they stood at the last decision.
			rep.Gates, rep.Window = lastDecision(st.History, w)
		}
		if rep.Gates == nil {
			rep.Gates = []Gate{}
		}
		if st.Phase == Progressing || st.Phase == Waiting {
			next := st.StepStarted.Add(spec.Interval)
			rep.NextDecision = &next
		}
		out = append(out, rep)
	}
	return out
}

// Status is one rollout for the metrics.
type Status struct {
	Route   string
	Phase   Phase
	Step    int
	Percent float64
}

// Statuses lists every rollout's phase, step and share.
func (g *Registry) Statuses() []Status {
	var out []Status
	for _, r := range g.list() {
		r.mu.Lock()
		out = append(out, Status{Route: r.spec.Route, Phase: r.state.Phase, Step: r.state.Step, Percent: r.state.Percent})
		r.mu.Unlock()
	}
	return out
}

// lastDecision is the gates and numbers of the latest event that has them
// (w and no gates when none has).
func lastDecision(history []Event, w Window) ([]Gate, Window) {
	for i := len(history) - 1; i >= 0; i-- {
		if ev := history[i]; len(ev.Gates) > 0 && ev.Window != nil {
			return ev.Gates, *ev.Window
		}
	}
	return nil, w
}
