package rollout

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Decide is the controller's judgement of one rollout at one moment: the
// state it should be in, given its spec, its state now and the numbers of
// its current step. It returns the new state and the event that led there,
// or st unchanged and nil. It is a pure function: the same inputs always
// give the same answer, on every replica.
//
//	a gate fails, with enough requests      -> rolled_back (or paused), at once
//	the step's interval has not passed yet  -> no change
//	too few requests                        -> waiting
//	every gate holds                        -> the next step, or promoted
func Decide(spec Spec, st State, w Window, now time.Time) (State, *Event) {
	if st.Phase != Progressing && st.Phase != Waiting {
		return st, nil
	}
	gates, conclusive := Evaluate(spec, w)
	if conclusive {
		if failed := failing(gates); failed != "" {
			if spec.OnFail == OnFailPause {
				return transition(st, Paused, st.Step, st.Percent, now, failed, ByGateway, gates, w, false)
			}
			return transition(st, RolledBack, st.Step, 0, now, failed, ByGateway, gates, w, true)
		}
	}
	if now.Sub(st.StepStarted) < spec.Interval {
		return st, nil
	}
	if !conclusive {
		if st.Phase == Waiting {
			return st, nil
		}
		reason := fmt.Sprintf("interval over with too few requests: stable %d, candidate %d", w.Stable.Requests, w.Candidate.Requests)
		if w.Shadowed {
			reason += fmt.Sprintf(", shadow pairs %d", w.ShadowCompared)
		}
		return transition(st, Waiting, st.Step, st.Percent, now, fmt.Sprintf("%s (min_requests %d)", reason, spec.MinRequests), ByGateway, gates, w, false)
	}
	next := st.Step + 1
	if next >= len(spec.Steps) || spec.Steps[next] >= 100 {
		return transition(st, Promoted, len(spec.Steps)-1, 100, now, "every gate held at the last step", ByGateway, gates, w, true)
	}
	return transition(st, Progressing, next, spec.Steps[next], now,
		fmt.Sprintf("every gate held at %s%%", percentText(st.Percent)), ByGateway, gates, w, true)
}

// Actions an operator may take (POST /admin/rollouts/{route}/{action}).
const (
	ActionPause   = "pause"
	ActionResume  = "resume"
	ActionPromote = "promote"
	ActionAbort   = "abort"
)

// ErrConflict is an action the rollout's state does not allow.
var ErrConflict = errors.New("not allowed in this state")

// ErrUnknownAction is an action that does not exist.
var ErrUnknownAction = errors.New("unknown action")

// Override applies an operator's action, as Decide applies the gates:
//
//	pause    progressing or waiting -> paused (the candidate keeps its share)
//	resume   paused -> progressing at the same step, its interval and
//	         numbers started afresh; rolled_back -> progressing at step 0
//	promote  anything but promoted -> promoted (candidate 100%)
//	abort    anything but rolled_back -> rolled_back (candidate 0%)
func Override(spec Spec, st State, action string, now time.Time) (State, *Event, error) {
	switch action {
	case ActionPause:
		if st.Phase != Progressing && st.Phase != Waiting {
			return st, nil, fmt.Errorf("pause: the rollout is %s: %w", st.Phase, ErrConflict)
		}
		next, ev := transition(st, Paused, st.Step, st.Percent, now, "paused by an operator", ByOperator, nil, Window{}, false)
		return next, ev, nil
	case ActionResume:
		switch st.Phase {
		case Paused:
			next, ev := transition(st, Progressing, st.Step, st.Percent, now, "resumed by an operator", ByOperator, nil, Window{}, true)
			return next, ev, nil
		case RolledBack:
			next, ev := transition(st, Progressing, 0, spec.Steps[0], now, "restarted by an operator", ByOperator, nil, Window{}, true)
			return next, ev, nil
		}
		return st, nil, fmt.Errorf("resume: the rollout is %s: %w", st.Phase, ErrConflict)
	case ActionPromote:
		if st.Phase == Promoted {
			return st, nil, fmt.Errorf("promote: the rollout is promoted already: %w", ErrConflict)
		}
		next, ev := transition(st, Promoted, len(spec.Steps)-1, 100, now, "promoted by an operator", ByOperator, nil, Window{}, true)
		return next, ev, nil
	case ActionAbort:
		if st.Phase == RolledBack {
			return st, nil, fmt.Errorf("abort: the rollout is rolled back already: %w", ErrConflict)
		}
		next, ev := transition(st, RolledBack, st.Step, 0, now, "aborted by an operator", ByOperator, nil, Window{}, true)
		return next, ev, nil
	}
	return st, nil, fmt.Errorf("%q (want pause, resume, promote or abort): %w", action, ErrUnknownAction)
}

// transition moves st to phase, at step and percent, recording why.
// newWindow starts the numbers afresh (a new step, or the end of the
// rollout).
func transition(st State, phase Phase, step int, percent float64, now time.Time, reason, by string, gates []Gate, w Window, newWindow bool) (State, *Event) {
	ev := &Event{
		Kind: eventKind(st.Phase, phase), At: now.UTC(), Route: st.Route, Stable: st.Stable, Candidate: st.Candidate,
		From: st.Phase, To: phase, Step: step, Percent: percent, Reason: reason, By: by, Gates: gates,
	}
	if by == ByGateway {
		wc := w
		ev.Window = &wc
	}
	next := st
	next.Phase, next.Step, next.Percent, next.Reason = phase, step, percent, reason
	next.Version++
	next.UpdatedAt = ev.At
	if newWindow {
		next.Epoch++
		next.StepStarted = ev.At
	}
	next.History = append(append([]Event(nil), st.History...), *ev)
	if len(next.History) > MaxHistory {
		next.History = next.History[len(next.History)-MaxHistory:]
	}
	return next, ev
}

// eventKind names a transition for the webhook and the history.
func eventKind(from, to Phase) string {
	switch {
	case to == Progressing && from == Paused:
		return "resumed"
	case to == Progressing && from == RolledBack:
		return "restarted"
	case to == Progressing:
		return "step"
	}
	return string(to)
}

// Evaluate computes each gate over a step's numbers. conclusive is false
// while either pool (or the shadow, when it is a gate) has fewer than
// min_requests: then no gate may fail or pass the step.
func Evaluate(spec Spec, w Window) (gates []Gate, conclusive bool) {
	min := spec.MinRequests
	conclusive = w.Stable.Requests >= min && w.Candidate.Requests >= min
	if spec.SuccessRatio > 0 {
		g := Gate{Name: GateSuccess, Threshold: spec.SuccessRatio, Detail: noData}
		if w.Stable.Requests > 0 && w.Candidate.Requests > 0 {
			s, c := w.Stable.SuccessRate(), w.Candidate.SuccessRate()
			// Both rates 0 is a tie; a stable at 0 cannot be failed.
			ratio := 1.0
			if s > 0 {
				ratio = c / s
			}
			g.Value = &ratio
			g.Pass = ratio >= spec.SuccessRatio
			g.Detail = fmt.Sprintf("candidate %.2f%% against stable %.2f%% succeeded", 100*c, 100*s)
		}
		gates = append(gates, g)
	}
	if spec.LatencyRatio > 0 {
		g := Gate{Name: GateLatency, Threshold: spec.LatencyRatio, Detail: noData}
		if w.Stable.Requests > 0 && w.Candidate.Requests > 0 {
			s, c := w.Stable.P99, w.Candidate.P99
			ratio := 1.0
			if s > 0 {
				ratio = float64(c) / float64(s)
			}
			g.Value = &ratio
			bound := time.Duration(float64(s)*spec.LatencyRatio) + spec.LatencySlack
			g.Pass = c <= bound
			g.Detail = fmt.Sprintf("candidate p99 %s against stable %s (bound %s)", ms(c), ms(s), ms(bound))
		}
		gates = append(gates, g)
	}
	if spec.MaxShadowMismatch > 0 && w.Shadowed {
		g := Gate{Name: GateShadow, Threshold: spec.MaxShadowMismatch, Detail: noData}
		if w.ShadowCompared > 0 {
			rate := float64(w.ShadowMismatched) / float64(w.ShadowCompared)
			g.Value = &rate
			g.Pass = rate < spec.MaxShadowMismatch
			g.Detail = fmt.Sprintf("%d of %d shadow pairs mismatched", w.ShadowMismatched, w.ShadowCompared)
		}
		conclusive = conclusive && w.ShadowCompared >= min
		gates = append(gates, g)
	}
	return gates, conclusive
}

// noData is the detail of a gate that has nothing to compare yet.
const noData = "no requests of both pools yet"

// failing names the gates that failed, or "" when all held.
func failing(gates []Gate) string {
	var out []string
	for _, g := range gates {
		if !g.Pass {
			out = append(out, fmt.Sprintf("%s failed: %s", g.Name, g.Detail))
		}
	}
	return strings.Join(out, "; ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

func percentText(p float64) string { return fmt.Sprintf("%g", p) }
