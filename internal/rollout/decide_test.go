package rollout

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// t0 is when the test rollouts start.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// testSpec is a canary with every gate on: steps 10, 25, 50, 100, a
// minute per step, 100 requests per pool.
func testSpec() Spec {
	return Spec{
		Route: "chat", Stable: "v1", Candidate: "v2",
		Steps:    []float64{10, 25, 50, 100},
		Interval: time.Minute, MinRequests: 100,
		SuccessRatio: 0.95, LatencyRatio: 1.1, LatencySlack: time.Millisecond,
		OnFail: OnFailRollback,
	}
}

// healthy is a step where both pools answered 200 requests alike.
func healthy() Window {
	return Window{
		Stable:    Side{Requests: 200, P99: 20 * time.Millisecond},
		Candidate: Side{Requests: 200, P99: 20 * time.Millisecond},
	}
}

// at returns st moved to step (and its percent) in phase, as if it got
// there at t0.
func at(spec Spec, step int, phase Phase) State {
	st := start(spec, State{}, t0)
	st.Step, st.Percent, st.Phase = step, spec.Steps[step], phase
	switch phase {
	case Promoted:
		st.Percent = 100
	case RolledBack:
		st.Percent = 0
	}
	return st
}

func TestStart(t *testing.T) {
	spec := testSpec()
	st := start(spec, State{}, t0)
	if st.Phase != Progressing || st.Step != 0 || st.Percent != 10 {
		t.Fatalf("start: %s step %d at %g%%, want progressing step 0 at 10%%", st.Phase, st.Step, st.Percent)
	}
	if st.Version != 1 || st.Epoch != 1 || !st.StepStarted.Equal(t0) {
		t.Errorf("start: version %d epoch %d started %v, want 1, 1, %v", st.Version, st.Epoch, st.StepStarted, t0)
	}
	if len(st.History) != 1 || st.History[0].Kind != "started" || st.History[0].From != "" || st.History[0].To != Progressing {
		t.Errorf("start: history %+v, want one started event", st.History)
	}

	// A new rollout of a route numbers its versions and epochs after the
	// stored one, so a compare-and-set over the stored version works and
	// the new step's numbers are not the old one's.
	prev := at(spec, 2, Promoted)
	prev.Version, prev.Epoch = 9, 4
	spec.Candidate = "v3"
	st = start(spec, prev, t0)
	if st.Version != 10 || st.Epoch != 5 {
		t.Errorf("restart over version 9 epoch 4: version %d epoch %d, want 10, 5", st.Version, st.Epoch)
	}
	if st.Candidate != "v3" || st.Step != 0 || st.Percent != 10 || st.Phase != Progressing {
		t.Errorf("restart: %+v, want v3 progressing at step 0, 10%%", st)
	}
	if !strings.Contains(st.Reason, "v1 -> v2") {
		t.Errorf("restart reason %q does not name the previous rollout", st.Reason)
	}

	// A single step of 100 is a switch: promoted from the start, and the
	// history says so.
	spec.Steps = []float64{100}
	st = start(spec, State{}, t0)
	if st.Phase != Promoted || st.Percent != 100 || st.History[0].To != Promoted {
		t.Errorf("steps [100]: %s at %g%%, history to %s; want promoted at 100%% in both", st.Phase, st.Percent, st.History[0].To)
	}
}

func TestDecide(t *testing.T) {
	pause := func(s *Spec) { s.OnFail = OnFailPause }
	shadowGate := func(s *Spec) { s.MaxShadowMismatch = 0.1 }
	threeSteps := func(s *Spec) { s.Steps = []float64{10, 25, 50} }
	withWindow := func(f func(*Window)) Window {
		w := healthy()
		f(&w)
		return w
	}
	cases := []struct {
		name    string
		spec    func(*Spec)
		step    int
		phase   Phase
		w       Window
		after   time.Duration
		want    Phase // "" for no change
		step2   int
		percent float64
		reason  string // part of the reason
		epoch   bool   // a new step: the epoch moves
	}{
		{name: "healthy step passes after the interval", w: healthy(), after: time.Minute,
			want: Progressing, step2: 1, percent: 25, reason: "every gate held at 10%", epoch: true},
		{name: "healthy step at a later step", step: 1, w: healthy(), after: 2 * time.Minute,
			want: Progressing, step2: 2, percent: 50, epoch: true},
		{name: "interval not over", w: healthy(), after: 59 * time.Second},
		{name: "too few candidate requests after the interval", w: withWindow(func(w *Window) { w.Candidate.Requests = 99 }), after: time.Minute,
			want: Waiting, step2: 0, percent: 10, reason: "too few requests: stable 200, candidate 99 (min_requests 100)"},
		{name: "too few stable requests after the interval", w: withWindow(func(w *Window) { w.Stable.Requests = 3 }), after: time.Hour,
			want: Waiting, step2: 0, percent: 10, reason: "stable 3"},
		{name: "waiting then enough requests", phase: Waiting, w: healthy(), after: 5 * time.Minute,
			want: Progressing, step2: 1, percent: 25, epoch: true},
		{name: "waiting with still too few: no second event", phase: Waiting, w: withWindow(func(w *Window) { w.Candidate.Requests = 50 }), after: 5 * time.Minute},
		{name: "failed success gate rolls back before the interval", w: withWindow(func(w *Window) { w.Candidate.Errors = 20 }), after: time.Second,
			want: RolledBack, step2: 0, percent: 0, reason: "success_ratio failed", epoch: true},
		{name: "failed success gate while waiting rolls back", phase: Waiting, w: withWindow(func(w *Window) { w.Candidate.Errors = 100 }), after: 2 * time.Minute,
			want: RolledBack, step2: 0, percent: 0, reason: "success_ratio failed", epoch: true},
		{name: "failed success gate with too few requests decides nothing", w: withWindow(func(w *Window) { w.Candidate.Requests, w.Candidate.Errors = 99, 99 }), after: time.Second},
		{name: "failed success gate with too few requests waits after the interval", w: withWindow(func(w *Window) { w.Candidate.Requests, w.Candidate.Errors = 99, 99 }), after: time.Minute,
			want: Waiting, step2: 0, percent: 10},
		{name: "success within the ratio passes", w: withWindow(func(w *Window) { w.Candidate.Errors = 9 }), after: time.Minute,
			want: Progressing, step2: 1, percent: 25, epoch: true},
		{name: "on_fail pause keeps the percent", spec: pause, step: 2, w: withWindow(func(w *Window) { w.Candidate.Errors = 200 }), after: time.Second,
			want: Paused, step2: 2, percent: 50, reason: "success_ratio failed"},
		{name: "latency 3x the stable fails", w: withWindow(func(w *Window) { w.Candidate.P99 = 60 * time.Millisecond }), after: time.Second,
			want: RolledBack, step2: 0, percent: 0, reason: "latency_ratio failed", epoch: true},
		{name: "small absolute latency difference within the slack passes",
			w:     withWindow(func(w *Window) { w.Stable.P99, w.Candidate.P99 = time.Millisecond, 2*time.Millisecond }),
			after: time.Minute, want: Progressing, step2: 1, percent: 25, epoch: true},
		{name: "latency past ratio plus slack fails",
			w:     withWindow(func(w *Window) { w.Stable.P99, w.Candidate.P99 = time.Millisecond, 2200*time.Microsecond }),
			after: time.Minute, want: RolledBack, step2: 0, percent: 0, reason: "latency_ratio failed", epoch: true},
		{name: "shadow mismatch over the threshold fails", spec: shadowGate,
			w:     withWindow(func(w *Window) { w.Shadowed, w.ShadowCompared, w.ShadowMismatched = true, 200, 40 }),
			after: time.Second, want: RolledBack, step2: 0, percent: 0, reason: "max_shadow_mismatch failed: 40 of 200", epoch: true},
		{name: "shadow mismatch under the threshold passes", spec: shadowGate,
			w:     withWindow(func(w *Window) { w.Shadowed, w.ShadowCompared, w.ShadowMismatched = true, 200, 10 }),
			after: time.Minute, want: Progressing, step2: 1, percent: 25, epoch: true},
		{name: "too few shadow pairs is inconclusive before the interval", spec: shadowGate,
			w:     withWindow(func(w *Window) { w.Shadowed, w.ShadowCompared, w.ShadowMismatched = true, 50, 50 }),
			after: time.Second},
		{name: "too few shadow pairs waits after the interval", spec: shadowGate,
			w:     withWindow(func(w *Window) { w.Shadowed, w.ShadowCompared, w.ShadowMismatched = true, 50, 50 }),
			after: time.Minute, want: Waiting, step2: 0, percent: 10, reason: "shadow pairs 50"},
		{name: "no shadow gate without a threshold",
			w:     withWindow(func(w *Window) { w.Shadowed, w.ShadowCompared, w.ShadowMismatched = true, 200, 200 }),
			after: time.Minute, want: Progressing, step2: 1, percent: 25, epoch: true},
		{name: "a step before a step of 100 promotes", step: 2, w: healthy(), after: time.Minute,
			want: Promoted, step2: 3, percent: 100, reason: "last step", epoch: true},
		{name: "the last step promotes", spec: threeSteps, step: 2, w: healthy(), after: time.Minute,
			want: Promoted, step2: 2, percent: 100, epoch: true},
		{name: "paused does not move", phase: Paused, w: healthy(), after: time.Hour},
		{name: "paused does not roll back", phase: Paused, w: withWindow(func(w *Window) { w.Candidate.Errors = 200 }), after: time.Hour},
		{name: "promoted does not move", phase: Promoted, w: withWindow(func(w *Window) { w.Candidate.Errors = 200 }), after: time.Hour},
		{name: "rolled back does not move", phase: RolledBack, w: healthy(), after: time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := testSpec()
			if tc.spec != nil {
				tc.spec(&spec)
			}
			phase := tc.phase
			if phase == "" {
				phase = Progressing
			}
			st := at(spec, tc.step, phase)
			now := t0.Add(tc.after)
			next, ev := Decide(spec, st, tc.w, now)
			if tc.want == "" {
				if ev != nil {
					t.Fatalf("got event %s (%s), want none", ev.Kind, ev.Reason)
				}
				if next.Version != st.Version || next.Phase != st.Phase || next.Percent != st.Percent || len(next.History) != len(st.History) {
					t.Fatalf("state changed without an event: %+v", next)
				}
				return
			}
			if ev == nil {
				t.Fatalf("no event, want %s", tc.want)
			}
			if next.Phase != tc.want || next.Step != tc.step2 || next.Percent != tc.percent {
				t.Errorf("got %s step %d at %g%%, want %s step %d at %g%%", next.Phase, next.Step, next.Percent, tc.want, tc.step2, tc.percent)
			}
			if ev.To != tc.want || ev.From != phase || ev.Percent != tc.percent || ev.By != ByGateway {
				t.Errorf("event %s -> %s at %g%% by %s, want %s -> %s at %g%% by gateway", ev.From, ev.To, ev.Percent, ev.By, phase, tc.want, tc.percent)
			}
			if ev.Window == nil || *ev.Window != tc.w {
				t.Errorf("event window %+v, want %+v", ev.Window, tc.w)
			}
			if !strings.Contains(next.Reason, tc.reason) || ev.Reason != next.Reason {
				t.Errorf("reason %q (event %q), want it to contain %q", next.Reason, ev.Reason, tc.reason)
			}
			if next.Version != st.Version+1 {
				t.Errorf("version %d, want %d", next.Version, st.Version+1)
			}
			if tc.epoch {
				if next.Epoch != st.Epoch+1 || !next.StepStarted.Equal(now) {
					t.Errorf("epoch %d started %v, want a new epoch %d started %v", next.Epoch, next.StepStarted, st.Epoch+1, now)
				}
			} else if next.Epoch != st.Epoch || !next.StepStarted.Equal(st.StepStarted) {
				t.Errorf("epoch %d started %v, want the same epoch %d started %v", next.Epoch, next.StepStarted, st.Epoch, st.StepStarted)
			}
			if !next.UpdatedAt.Equal(now) || !ev.At.Equal(now) {
				t.Errorf("updated %v, event at %v, want %v", next.UpdatedAt, ev.At, now)
			}
			if len(next.History) != len(st.History)+1 {
				t.Fatalf("history has %d events, want %d", len(next.History), len(st.History)+1)
			}
			if last := next.History[len(next.History)-1]; !reflect.DeepEqual(last, *ev) {
				t.Errorf("last history event %+v, want the returned one %+v", last, *ev)
			}
			if ev.Step != next.Step {
				t.Errorf("event at step %d, state at step %d", ev.Step, next.Step)
			}
			if len(st.History) != 1 {
				t.Errorf("Decide changed the history of its input: %d events", len(st.History))
			}
		})
	}
}

func TestDecideEventKinds(t *testing.T) {
	spec := testSpec()
	st := at(spec, 0, Progressing)
	few := healthy()
	few.Candidate.Requests = 10

	// Waiting is announced once, then holds quietly until enough answered.
	waiting, ev := Decide(spec, st, few, t0.Add(time.Minute))
	if ev == nil || ev.Kind != "waiting" || waiting.Phase != Waiting {
		t.Fatalf("too few requests: event %+v, phase %s; want a waiting event", ev, waiting.Phase)
	}
	again, ev := Decide(spec, waiting, few, t0.Add(2*time.Minute))
	if ev != nil || again.Version != waiting.Version || len(again.History) != len(waiting.History) {
		t.Fatalf("second Decide while waiting: event %+v, version %d -> %d", ev, waiting.Version, again.Version)
	}
	stepped, ev := Decide(spec, again, healthy(), t0.Add(3*time.Minute))
	if ev == nil || ev.Kind != "step" || ev.Step != 1 || stepped.Step != 1 || stepped.Percent != 25 {
		t.Fatalf("enough requests while waiting: event %+v, state step %d at %g%%; want a step event to step 1 at 25%%", ev, stepped.Step, stepped.Percent)
	}
	if waiting.Epoch != st.Epoch || stepped.Epoch != st.Epoch+1 {
		t.Errorf("epochs %d (start), %d (waiting), %d (step); want the epoch to move on the step only", st.Epoch, waiting.Epoch, stepped.Epoch)
	}
	if stepped.Version != st.Version+2 {
		t.Errorf("version %d after waiting and a step from %d, want %d", stepped.Version, st.Version, st.Version+2)
	}

	// The gates: a rollback and a promotion are their own kinds.
	bad := healthy()
	bad.Candidate.Errors = 100
	if _, ev := Decide(spec, stepped, bad, t0.Add(3*time.Minute)); ev == nil || ev.Kind != "rolled_back" {
		t.Errorf("failed gate: event %+v, want rolled_back", ev)
	}
	promoted, ev := Decide(spec, at(spec, 2, Progressing), healthy(), t0.Add(time.Minute))
	if ev == nil || ev.Kind != "promoted" || promoted.Phase != Promoted {
		t.Errorf("last step: event %+v, want promoted", ev)
	}
}

func TestDecideWalksEveryStep(t *testing.T) {
	spec := testSpec()
	st := start(spec, State{}, t0)
	now := t0
	var percents []float64
	for range 10 {
		now = now.Add(spec.Interval)
		next, ev := Decide(spec, st, healthy(), now)
		if ev == nil {
			break
		}
		st = next
		percents = append(percents, st.Percent)
	}
	if fmt.Sprint(percents) != "[25 50 100]" || st.Phase != Promoted {
		t.Fatalf("percents %v ending %s, want [25 50 100] ending promoted", percents, st.Phase)
	}
	if st.Version != 4 || st.Epoch != 4 || len(st.History) != 4 {
		t.Errorf("version %d, epoch %d, %d events; want 4, 4, 4", st.Version, st.Epoch, len(st.History))
	}
}

func TestHistoryBounded(t *testing.T) {
	spec := testSpec()
	st := start(spec, State{}, t0)
	now := t0
	for i := range MaxHistory + 20 {
		action := ActionPause
		if i%2 == 1 {
			action = ActionResume
		}
		now = now.Add(time.Second)
		next, _, err := Override(spec, st, action, now)
		if err != nil {
			t.Fatalf("%s #%d: %v", action, i, err)
		}
		st = next
	}
	if len(st.History) != MaxHistory {
		t.Fatalf("%d events kept, want %d", len(st.History), MaxHistory)
	}
	if !st.History[MaxHistory-1].At.Equal(now) {
		t.Errorf("last event at %v, want the newest at %v", st.History[MaxHistory-1].At, now)
	}
	// 71 events in all (started + 70): the oldest 21 are gone.
	if want := t0.Add(21 * time.Second); !st.History[0].At.Equal(want) {
		t.Errorf("oldest event kept at %v, want %v", st.History[0].At, want)
	}
	if st.Version != MaxHistory+21 {
		t.Errorf("version %d, want %d (one per transition)", st.Version, MaxHistory+21)
	}
}

func TestOverride(t *testing.T) {
	spec := testSpec()
	cases := []struct {
		phase   Phase
		action  string
		want    Phase // "" for a conflict
		step    int
		percent float64
		epoch   bool
	}{
		{Progressing, ActionPause, Paused, 2, 50, false},
		{Waiting, ActionPause, Paused, 2, 50, false},
		{Paused, ActionPause, "", 0, 0, false},
		{Promoted, ActionPause, "", 0, 0, false},
		{RolledBack, ActionPause, "", 0, 0, false},

		{Paused, ActionResume, Progressing, 2, 50, true},
		{RolledBack, ActionResume, Progressing, 0, 10, true},
		{Progressing, ActionResume, "", 0, 0, false},
		{Waiting, ActionResume, "", 0, 0, false},
		{Promoted, ActionResume, "", 0, 0, false},

		{Progressing, ActionPromote, Promoted, 3, 100, true},
		{Waiting, ActionPromote, Promoted, 3, 100, true},
		{Paused, ActionPromote, Promoted, 3, 100, true},
		{RolledBack, ActionPromote, Promoted, 3, 100, true},
		{Promoted, ActionPromote, "", 0, 0, false},

		{Progressing, ActionAbort, RolledBack, 2, 0, true},
		{Waiting, ActionAbort, RolledBack, 2, 0, true},
		{Paused, ActionAbort, RolledBack, 2, 0, true},
		{Promoted, ActionAbort, RolledBack, 2, 0, true},
		{RolledBack, ActionAbort, "", 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(string(tc.phase)+"/"+tc.action, func(t *testing.T) {
			st := at(spec, 2, tc.phase)
			now := t0.Add(time.Minute)
			next, ev, err := Override(spec, st, tc.action, now)
			if tc.want == "" {
				if !errors.Is(err, ErrConflict) {
					t.Fatalf("err %v, want ErrConflict", err)
				}
				if ev != nil || next.Version != st.Version || next.Phase != st.Phase {
					t.Errorf("a refused action changed the state: %+v, event %+v", next, ev)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if next.Phase != tc.want || next.Step != tc.step || next.Percent != tc.percent {
				t.Errorf("got %s step %d at %g%%, want %s step %d at %g%%", next.Phase, next.Step, next.Percent, tc.want, tc.step, tc.percent)
			}
			if ev == nil || ev.By != ByOperator || ev.From != tc.phase || ev.To != tc.want || ev.Step != tc.step || ev.Percent != tc.percent || ev.Window != nil {
				t.Errorf("event %+v, want %s -> %s step %d at %g%% by operator without a window", ev, tc.phase, tc.want, tc.step, tc.percent)
			}
			if next.Version != st.Version+1 {
				t.Errorf("version %d, want %d", next.Version, st.Version+1)
			}
			if last := next.History[len(next.History)-1]; len(next.History) != len(st.History)+1 || !reflect.DeepEqual(last, *ev) {
				t.Errorf("history %+v, want the event appended", next.History)
			}
			if tc.epoch != (next.Epoch == st.Epoch+1) || (tc.epoch && !next.StepStarted.Equal(now)) {
				t.Errorf("epoch %d -> %d started %v; want a new epoch: %t", st.Epoch, next.Epoch, next.StepStarted, tc.epoch)
			}
		})
	}

	t.Run("event kinds", func(t *testing.T) {
		for _, k := range []struct {
			phase  Phase
			action string
			kind   string
		}{
			{Progressing, ActionPause, "paused"},
			{Paused, ActionResume, "resumed"},
			{RolledBack, ActionResume, "restarted"},
			{Paused, ActionPromote, "promoted"},
			{Progressing, ActionAbort, "rolled_back"},
		} {
			_, ev, err := Override(spec, at(spec, 1, k.phase), k.action, t0)
			if err != nil || ev.Kind != k.kind {
				t.Errorf("%s from %s: event %+v, err %v; want kind %s", k.action, k.phase, ev, err, k.kind)
			}
		}
	})

	t.Run("unknown action", func(t *testing.T) {
		st := at(spec, 1, Progressing)
		next, ev, err := Override(spec, st, "rewind", t0)
		if !errors.Is(err, ErrUnknownAction) || errors.Is(err, ErrConflict) {
			t.Fatalf("err %v, want ErrUnknownAction", err)
		}
		if ev != nil || next.Version != st.Version {
			t.Errorf("an unknown action changed the state")
		}
	})

	t.Run("resumed rollout restarts its interval", func(t *testing.T) {
		st := at(spec, 1, Progressing)
		paused, _, _ := Override(spec, st, ActionPause, t0.Add(30*time.Second))
		resumed, _, err := Override(spec, paused, ActionResume, t0.Add(10*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if _, ev := Decide(spec, resumed, healthy(), t0.Add(10*time.Minute+59*time.Second)); ev != nil {
			t.Errorf("a step passed %s after a resume: %s", 59*time.Second, ev.Reason)
		}
		if next, ev := Decide(spec, resumed, healthy(), t0.Add(11*time.Minute)); ev == nil || next.Step != 2 {
			t.Errorf("the step did not pass a full interval after the resume")
		}
	})
}

func TestEvaluate(t *testing.T) {
	spec := testSpec()
	spec.MaxShadowMismatch = 0.1
	w := Window{
		Stable:    Side{Requests: 200, Errors: 10, P99: 20 * time.Millisecond},
		Candidate: Side{Requests: 100, Errors: 10, P99: 30 * time.Millisecond},
		Shadowed:  true, ShadowCompared: 200, ShadowMismatched: 10,
	}
	gates, conclusive := Evaluate(spec, w)
	if !conclusive {
		t.Fatal("inconclusive with 200 and 100 requests and 200 pairs")
	}
	if len(gates) != 3 {
		t.Fatalf("%d gates, want 3: %+v", len(gates), gates)
	}
	want := []struct {
		name      string
		value     float64
		threshold float64
		pass      bool
	}{
		{GateSuccess, 0.9 / 0.95, 0.95, false},
		{GateLatency, 1.5, 1.1, false},
		{GateShadow, 0.05, 0.1, true},
	}
	for i, w := range want {
		g := gates[i]
		if g.Name != w.name || g.Value == nil || math.Abs(*g.Value-w.value) > 1e-9 || g.Threshold != w.threshold || g.Pass != w.pass {
			v := "nil"
			if g.Value != nil {
				v = fmt.Sprint(*g.Value)
			}
			t.Errorf("gate %d: %s value %s threshold %g pass %t; want %s %g %g %t", i, g.Name, v, g.Threshold, g.Pass, w.name, w.value, w.threshold, w.pass)
		}
		if g.Detail == "" {
			t.Errorf("gate %s has no detail", g.Name)
		}
	}
	if failed := failing(gates); !strings.Contains(failed, GateSuccess) || !strings.Contains(failed, GateLatency) || strings.Contains(failed, GateShadow) {
		t.Errorf("failing(%v) = %q, want the success and latency gates", gates, failed)
	}

	t.Run("no requests on a pool", func(t *testing.T) {
		gates, conclusive := Evaluate(spec, Window{Stable: Side{Requests: 200}})
		if conclusive {
			t.Error("conclusive without candidate requests")
		}
		for _, g := range gates {
			if g.Name != GateShadow && g.Value != nil {
				t.Errorf("gate %s has value %v without candidate requests", g.Name, *g.Value)
			}
		}
		if len(gates) != 2 {
			t.Errorf("%d gates without a shadow, want 2 (no shadow gate when the route does not mirror)", len(gates))
		}
	})

	t.Run("gates off", func(t *testing.T) {
		off := testSpec()
		off.SuccessRatio, off.LatencyRatio = 0, 0
		gates, conclusive := Evaluate(off, w)
		if len(gates) != 0 || !conclusive {
			t.Errorf("gates %+v conclusive %t, want none, conclusive", gates, conclusive)
		}
		if next, ev := Decide(off, at(off, 0, Progressing), w, t0.Add(time.Minute)); ev == nil || next.Step != 1 {
			t.Errorf("with every gate off the step did not pass")
		}
	})

	t.Run("stable failing everything", func(t *testing.T) {
		gates, _ := Evaluate(testSpec(), Window{
			Stable:    Side{Requests: 100, Errors: 100, P99: time.Millisecond},
			Candidate: Side{Requests: 100, Errors: 100, P99: time.Millisecond},
		})
		if g := gates[0]; g.Value == nil || *g.Value != 1 || !g.Pass {
			t.Errorf("both pools failing every request: %+v, want a ratio of 1 that passes", g)
		}
	})

	t.Run("success exactly at the ratio passes", func(t *testing.T) {
		gates, _ := Evaluate(testSpec(), Window{
			Stable:    Side{Requests: 100, P99: time.Millisecond},
			Candidate: Side{Requests: 100, Errors: 5, P99: time.Millisecond},
		})
		if !gates[0].Pass {
			t.Errorf("candidate at 95%% against 100%% with ratio 0.95: %+v, want a pass", gates[0])
		}
	})
}

func TestFit(t *testing.T) {
	spec := testSpec()
	st := at(spec, 3, Progressing)
	spec.Steps = []float64{20, 40}
	got := fit(spec, st)
	if got.Step != 1 || got.Percent != 40 {
		t.Errorf("step 3 of 4 fitted to 2 steps: step %d at %g%%, want step 1 at 40%%", got.Step, got.Percent)
	}
	if got := fit(spec, at(testSpec(), 2, Promoted)); got.Percent != 100 {
		t.Errorf("a promoted rollout fitted to new steps: %g%%, want 100%%", got.Percent)
	}
	if got := fit(spec, at(testSpec(), 1, RolledBack)); got.Percent != 0 {
		t.Errorf("a rolled back rollout fitted to new steps: %g%%, want 0%%", got.Percent)
	}
}
