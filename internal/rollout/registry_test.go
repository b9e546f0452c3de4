package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// clock is a fake time for a Registry: tests move it, rounds read it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// events collects the transitions a Registry announces.
type events struct {
	mu  sync.Mutex
	all []Event
}

func (e *events) add(ev Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

func (e *events) kinds() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.all {
		out = append(out, ev.Kind)
	}
	return strings.Join(out, " ")
}

// testRegistry is a Registry on a fake clock at t0, with coord (nil: the
// default, keeping nothing on disk), recording its events.
func testRegistry(t *testing.T, coord Coordinator) (*Registry, *clock, *events) {
	t.Helper()
	g := NewRegistry(quietLog)
	c := &clock{t: t0}
	g.now = c.now
	if coord != nil {
		g.SetCoordinator(coord)
	}
	evs := &events{}
	g.OnEvent(evs.add)
	return g, c, evs
}

// regSpec is testSpec with a few requests enough to decide.
func regSpec() Spec {
	spec := testSpec()
	spec.MinRequests = 5
	return spec
}

// feed records n requests of each pool, 2ms each; the candidate's fail
// when failing is set.
func feed(r *Rollout, n int, failing bool) {
	for range n {
		r.Record(false, 2*time.Millisecond, false)
		r.Record(true, 2*time.Millisecond, failing)
	}
}

func reportOf(t *testing.T, g *Registry, route string) Report {
	t.Helper()
	for _, rep := range g.Report() {
		if rep.Route == route {
			return rep
		}
	}
	t.Fatalf("no report for %s", route)
	return Report{}
}

func checkAt(t *testing.T, g *Registry, r *Rollout, phase Phase, step int, percent float64) {
	t.Helper()
	rep := reportOf(t, g, r.spec.Route)
	if rep.State != phase || rep.Step != step || rep.Percent != percent {
		t.Fatalf("%s step %d at %g%%, want %s step %d at %g%% (reason %q)", rep.State, rep.Step, rep.Percent, phase, step, percent, rep.Reason)
	}
	if want := uint64(percent * 100); r.Basis() != want {
		t.Fatalf("basis %d, want %d", r.Basis(), want)
	}
}

func TestRegistryStarts(t *testing.T) {
	g, _, evs := testRegistry(t, nil)
	spec := regSpec()
	r := g.Rollout(spec, nil)
	checkAt(t, g, r, Progressing, 0, 10)
	rep := reportOf(t, g, "chat")
	if rep.Stable != "v1" || rep.Candidate != "v2" || !rep.StepStarted.Equal(t0) || rep.NextDecision == nil || !rep.NextDecision.Equal(t0.Add(time.Minute)) {
		t.Errorf("report %+v, want v1 -> v2 started at t0, next decision a minute later", rep)
	}
	if len(rep.History) != 1 || rep.History[0].Kind != "started" || evs.kinds() != "started" {
		t.Errorf("history %+v, events %q; want one started event", rep.History, evs.kinds())
	}
	if st := g.Statuses(); len(st) != 1 || st[0] != (Status{Route: "chat", Phase: Progressing, Step: 0, Percent: 10}) {
		t.Errorf("statuses %+v", st)
	}
	if rep.Gates == nil {
		t.Error("report gates are null, want a list")
	}
}

// pass moves r one step on: both pools answer enough, the interval passes,
// a round decides.
func pass(ctx context.Context, g *Registry, c *clock, r *Rollout) {
	feed(r, 5, false)
	c.advance(time.Minute)
	g.Round(ctx)
}

func TestRegistryKeepsRolloutAcrossReloads(t *testing.T) {
	ctx := context.Background()
	g, c, evs := testRegistry(t, nil)
	spec := regSpec()
	r := g.Rollout(spec, nil)
	pass(ctx, g, c, r)
	checkAt(t, g, r, Progressing, 1, 25)
	version := r.state.Version

	// A reload with the same pools: the same rollout, at the same step;
	// other changes apply.
	changed := spec
	changed.Interval = 2 * time.Minute
	if again := g.Rollout(changed, nil); again != r {
		t.Fatal("a reload with the same pools made a new rollout")
	}
	checkAt(t, g, r, Progressing, 1, 25)
	if rep := reportOf(t, g, "chat"); rep.Interval != "2m0s" {
		t.Errorf("interval %s after the reload, want 2m0s", rep.Interval)
	}
	changed.Steps = []float64{10, 30, 60, 100}
	g.Rollout(changed, nil)
	checkAt(t, g, r, Progressing, 1, 30)

	// A new candidate is a new rollout, at the first step.
	next := changed
	next.Candidate = "v3"
	r2 := g.Rollout(next, nil)
	if r2 == r {
		t.Fatal("a new candidate kept the old rollout")
	}
	checkAt(t, g, r2, Progressing, 0, 10)
	rep := reportOf(t, g, "chat")
	if rep.Candidate != "v3" || !strings.Contains(rep.Reason, "v1 -> v2") {
		t.Errorf("new rollout: candidate %s reason %q, want v3 naming the previous v1 -> v2", rep.Candidate, rep.Reason)
	}
	if r2.state.Version <= version {
		t.Errorf("new rollout at version %d, want after the old one's %d", r2.state.Version, version)
	}
	if got := evs.kinds(); got != "started step started" {
		t.Errorf("events %q, want started step started", got)
	}
	if len(g.Report()) != 1 {
		t.Errorf("%d reports for one route", len(g.Report()))
	}
}

func TestRegistryPromotesThroughSteps(t *testing.T) {
	ctx := context.Background()
	g, c, evs := testRegistry(t, nil)
	r := g.Rollout(regSpec(), nil)

	// Enough requests, but the interval is not over.
	feed(r, 5, false)
	c.advance(59 * time.Second)
	g.Round(ctx)
	checkAt(t, g, r, Progressing, 0, 10)
	if rep := reportOf(t, g, "chat"); rep.Window.Stable.Requests != 5 || rep.Window.Candidate.Requests != 5 || !rep.Decider {
		t.Errorf("report window %+v decider %t, want the 5 and 5 recorded, deciding", rep.Window, rep.Decider)
	}
	c.advance(time.Second)
	g.Round(ctx)
	checkAt(t, g, r, Progressing, 1, 25)

	// A new step counts afresh: the previous step's requests do not pass it.
	c.advance(time.Minute)
	g.Round(ctx)
	checkAt(t, g, r, Waiting, 1, 25)
	g.Round(ctx)
	feed(r, 5, false)
	g.Round(ctx)
	checkAt(t, g, r, Progressing, 2, 50)

	pass(ctx, g, c, r)
	checkAt(t, g, r, Promoted, 3, 100)
	if rep := reportOf(t, g, "chat"); rep.NextDecision != nil {
		t.Errorf("promoted with a next decision at %v", rep.NextDecision)
	}
	if got := evs.kinds(); got != "started step waiting step promoted" {
		t.Errorf("events %q", got)
	}

	// Promoted is the end: more rounds change nothing.
	pass(ctx, g, c, r)
	if got := evs.kinds(); got != "started step waiting step promoted" {
		t.Errorf("events after the end %q", got)
	}
}

func TestRegistryRollsBack(t *testing.T) {
	ctx := context.Background()
	g, c, evs := testRegistry(t, nil)
	r := g.Rollout(regSpec(), nil)
	pass(ctx, g, c, r)

	// The candidate fails half its requests: rolled back at the next round,
	// without waiting for the interval.
	feed(r, 5, false)
	feed(r, 5, true)
	c.advance(time.Second)
	g.Round(ctx)
	checkAt(t, g, r, RolledBack, 1, 0)
	rep := reportOf(t, g, "chat")
	if !strings.Contains(rep.Reason, GateSuccess+" failed") {
		t.Errorf("reason %q, want the success gate named", rep.Reason)
	}
	var found bool
	for _, gate := range rep.Gates {
		if gate.Name == GateSuccess {
			found = true
			if gate.Pass || gate.Value == nil || *gate.Value > 0.51 {
				t.Errorf("success gate %+v, want a failing value of 0.5", gate)
			}
		}
	}
	if !found {
		t.Errorf("report gates %+v, want the success gate", rep.Gates)
	}
	if got := evs.kinds(); got != "started step rolled_back" {
		t.Errorf("events %q", got)
	}
}

func TestRegistryShadowGate(t *testing.T) {
	ctx := context.Background()
	g, c, _ := testRegistry(t, nil)
	spec := regSpec()
	spec.MaxShadowMismatch = 0.1
	var mismatched, compared atomic.Int64
	// The shadow has run before the rollout: those pairs are not its.
	mismatched.Store(50)
	compared.Store(100)
	shadow := func() (int64, int64) { return mismatched.Load(), compared.Load() }
	r := g.Rollout(spec, shadow)

	feed(r, 5, false)
	mismatched.Add(1)
	compared.Add(20)
	c.advance(time.Minute)
	g.Round(ctx)
	checkAt(t, g, r, Progressing, 1, 25)
	if w := reportOf(t, g, "chat").History[1].Window; w == nil || !w.Shadowed || w.ShadowCompared != 20 || w.ShadowMismatched != 1 {
		t.Errorf("step window %+v, want 1 of 20 pairs", w)
	}

	// At the next step every new pair mismatches.
	feed(r, 5, false)
	mismatched.Add(10)
	compared.Add(10)
	c.advance(time.Second)
	g.Round(ctx)
	checkAt(t, g, r, RolledBack, 1, 0)
	if rep := reportOf(t, g, "chat"); !strings.Contains(rep.Reason, "10 of 10 shadow pairs") {
		t.Errorf("reason %q, want the 10 of 10 pairs of the step", rep.Reason)
	}
}

func TestRegistryResumesAfterRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	spec := regSpec()

	g, c, _ := testRegistry(t, NewLocal(dir))
	r := g.Rollout(spec, nil)
	pass(ctx, g, c, r)
	checkAt(t, g, r, Progressing, 1, 25)
	if _, err := os.Stat(filepath.Join(dir, "rollout-chat.json")); err != nil {
		t.Fatalf("no state file: %v", err)
	}
	before := r.state

	// A new process over the same state_dir.
	g2, c2, evs2 := testRegistry(t, NewLocal(dir))
	c2.advance(10 * time.Minute)
	r2 := g2.Rollout(spec, nil)
	checkAt(t, g2, r2, Progressing, 1, 25)
	if r2.state.Version != before.Version || !r2.state.StepStarted.Equal(before.StepStarted) || len(r2.state.History) != len(before.History) {
		t.Errorf("resumed %+v, want the saved %+v", r2.state, before)
	}
	if got := evs2.kinds(); got != "" {
		t.Errorf("a resumed rollout announced %q", got)
	}
	// It goes on from there.
	feed(r2, 5, false)
	g2.Round(ctx)
	checkAt(t, g2, r2, Progressing, 2, 50)

	// A restart with another candidate starts over.
	g3, _, _ := testRegistry(t, NewLocal(dir))
	other := spec
	other.Candidate = "v3"
	r3 := g3.Rollout(other, nil)
	checkAt(t, g3, r3, Progressing, 0, 10)
	if !strings.Contains(r3.state.Reason, "v1 -> v2") || r3.state.Version <= before.Version {
		t.Errorf("restart with a new candidate: reason %q version %d", r3.state.Reason, r3.state.Version)
	}
	if got, ok, err := NewLocal(dir).Load(ctx, "chat"); err != nil || !ok || got.Candidate != "v3" {
		t.Errorf("stored after the new start: %+v %t %v, want v3", got, ok, err)
	}
}

func TestRegistryAct(t *testing.T) {
	ctx := context.Background()
	g, c, evs := testRegistry(t, NewLocal(t.TempDir()))
	r := g.Rollout(regSpec(), nil)
	pass(ctx, g, c, r)

	st, err := g.Act(ctx, "chat", ActionPause)
	if err != nil || st.Phase != Paused || st.Percent != 25 {
		t.Fatalf("pause: %s at %g%% (%v)", st.Phase, st.Percent, err)
	}
	checkAt(t, g, r, Paused, 1, 25)
	if rep := reportOf(t, g, "chat"); rep.NextDecision != nil {
		t.Errorf("paused with a next decision at %v", rep.NextDecision)
	}
	// Paused holds, however good the numbers.
	pass(ctx, g, c, r)
	checkAt(t, g, r, Paused, 1, 25)
	if _, err := g.Act(ctx, "chat", ActionPause); !errors.Is(err, ErrConflict) {
		t.Errorf("pause twice: %v, want ErrConflict", err)
	}

	st, err = g.Act(ctx, "chat", ActionResume)
	if err != nil || st.Phase != Progressing || !st.StepStarted.Equal(c.now()) {
		t.Fatalf("resume: %+v (%v), want progressing with its interval from now", st, err)
	}
	checkAt(t, g, r, Progressing, 1, 25)

	if st, err = g.Act(ctx, "chat", ActionPromote); err != nil || st.Phase != Promoted {
		t.Fatalf("promote: %s (%v)", st.Phase, err)
	}
	checkAt(t, g, r, Promoted, 3, 100)
	if _, err := g.Act(ctx, "chat", ActionPromote); !errors.Is(err, ErrConflict) {
		t.Errorf("promote twice: %v, want ErrConflict", err)
	}

	if st, err = g.Act(ctx, "chat", ActionAbort); err != nil || st.Phase != RolledBack {
		t.Fatalf("abort: %s (%v)", st.Phase, err)
	}
	checkAt(t, g, r, RolledBack, 3, 0)
	if _, err := g.Act(ctx, "chat", ActionAbort); !errors.Is(err, ErrConflict) {
		t.Errorf("abort twice: %v, want ErrConflict", err)
	}

	if _, err = g.Act(ctx, "chat", ActionResume); err != nil {
		t.Fatalf("resume after the rollback: %v", err)
	}
	checkAt(t, g, r, Progressing, 0, 10)

	if _, err := g.Act(ctx, "chat", "rewind"); !errors.Is(err, ErrUnknownAction) {
		t.Errorf("unknown action: %v, want ErrUnknownAction", err)
	}
	if _, err := g.Act(ctx, "nope", ActionPause); !errors.Is(err, ErrNoRollout) {
		t.Errorf("unknown route: %v, want ErrNoRollout", err)
	}
	if got := evs.kinds(); got != "started step paused resumed promoted rolled_back restarted" {
		t.Errorf("events %q", got)
	}
	for _, ev := range evs.all[2:] {
		if ev.By != ByOperator {
			t.Errorf("%s by %s, want operator", ev.Kind, ev.By)
		}
	}
	if stored, ok, err := NewLocal(g.coordinator().(*Local).dir).Load(ctx, "chat"); err != nil || !ok || stored.Phase != Progressing || stored.Step != 0 || stored.Version != r.state.Version {
		t.Errorf("stored %+v (%t %v), want the last action saved", stored, ok, err)
	}

	g.Retain(map[string]bool{"other": true})
	if _, err := g.Act(ctx, "chat", ActionPause); !errors.Is(err, ErrNoRollout) {
		t.Errorf("after Retain dropped the route: %v, want ErrNoRollout", err)
	}
	if len(g.Report()) != 0 {
		t.Errorf("reports after Retain dropped the route: %+v", g.Report())
	}
}

func TestRegistryWebhook(t *testing.T) {
	got := make(chan map[string]any, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var ev map[string]any
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook got %s with content type %q", req.Method, req.Header.Get("Content-Type"))
		}
		if err := json.NewDecoder(req.Body).Decode(&ev); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		got <- ev
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	g, c, _ := testRegistry(t, nil)
	go g.hooks.run(ctx)
	spec := regSpec()
	spec.Webhook = srv.URL
	r := g.Rollout(spec, nil)
	pass(ctx, g, c, r)
	g.Round(ctx) // no transition: nothing posted
	if _, err := g.Act(ctx, "chat", ActionPause); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Act(ctx, "chat", ActionAbort); err != nil {
		t.Fatal(err)
	}

	want := []struct {
		event, from, to string
		step            float64
		percent         float64
		by              string
	}{
		{"started", "", "progressing", 0, 10, ByGateway},
		{"step", "progressing", "progressing", 1, 25, ByGateway},
		{"paused", "progressing", "paused", 1, 25, ByOperator},
		{"rolled_back", "paused", "rolled_back", 1, 0, ByOperator},
	}
	for i, w := range want {
		var ev map[string]any
		select {
		case ev = <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d (%s) not posted", i, w.event)
		}
		if ev["event"] != w.event || ev["route"] != "chat" || ev["from"] != w.from || ev["to"] != w.to ||
			ev["step"] != w.step || ev["percent"] != w.percent || ev["by"] != w.by ||
			ev["stable"] != "v1" || ev["candidate"] != "v2" {
			t.Errorf("event %d: %v, want %+v", i, ev, w)
		}
		if w.event == "step" {
			if _, ok := ev["window"].(map[string]any); !ok {
				t.Errorf("step event without its window: %v", ev)
			}
			if gates, _ := ev["gates"].([]any); len(gates) != 2 {
				t.Errorf("step event gates %v, want the 2 gates", ev["gates"])
			}
		}
	}
	select {
	case ev := <-got:
		t.Errorf("an extra event was posted: %v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestRegistryWebhookRetries(t *testing.T) {
	var calls atomic.Int32
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		close(done)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	h := newWebhooks(quietLog)
	h.retry = []time.Duration{time.Millisecond, time.Millisecond}
	go h.run(ctx)
	h.send(srv.URL, Event{Kind: "step", Route: "chat"})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("no retry after a 503: %d calls", calls.Load())
	}
}

func TestRegistriesShareRedis(t *testing.T) {
	ctx := context.Background()
	addr := testutil.Redis(t)
	spec := regSpec()
	ga, ca, evsA := testRegistry(t, NewShared(redisClient(t, addr), "replica-a", redisTimeout))
	gb, cb, evsB := testRegistry(t, NewShared(redisClient(t, addr), "replica-b", redisTimeout))
	ra := ga.Rollout(spec, nil)
	rb := gb.Rollout(spec, nil)
	if ra.state.Version != rb.state.Version || rb.state.Epoch != ra.state.Epoch {
		t.Fatalf("b did not take a's start: versions %d and %d", ra.state.Version, rb.state.Version)
	}
	if evsB.kinds() != "" {
		t.Errorf("b announced %q, want nothing: a started the rollout", evsB.kinds())
	}

	round := func() {
		ga.Round(ctx)
		gb.Round(ctx)
	}
	advance := func(d time.Duration) {
		ca.advance(d)
		cb.advance(d)
	}
	// Neither replica alone has min_requests (5); together they do.
	feed(ra, 3, false)
	feed(rb, 3, false)
	round()
	advance(time.Minute)
	// b rounds first: it has every number, but a holds the lease.
	gb.Round(ctx)
	if rep := reportOf(t, gb, "chat"); rep.Step != 0 || evsB.kinds() != "" || rep.Decider {
		t.Fatalf("b, not the leader, moved the rollout: step %d, events %q, decider %t", rep.Step, evsB.kinds(), rep.Decider)
	}
	if w := reportOf(t, gb, "chat").Window; w.Stable.Requests != 6 || w.Candidate.Requests != 6 {
		t.Errorf("b's report window %+v, want both replicas' 6 and 6", w)
	}
	ga.Round(ctx)
	gb.Round(ctx)
	for name, g := range map[string]*Registry{"a": ga, "b": gb} {
		rep := reportOf(t, g, "chat")
		if rep.State != Progressing || rep.Step != 1 || rep.Percent != 25 {
			t.Errorf("%s: %s step %d at %g%%, want progressing step 1 at 25%%", name, rep.State, rep.Step, rep.Percent)
		}
	}
	if ra.Basis() != 2500 || rb.Basis() != 2500 {
		t.Errorf("basis a %d b %d, want 2500 on both", ra.Basis(), rb.Basis())
	}
	if !reportOf(t, ga, "chat").Decider || reportOf(t, gb, "chat").Decider {
		t.Errorf("deciders a %t b %t, want a only", reportOf(t, ga, "chat").Decider, reportOf(t, gb, "chat").Decider)
	}
	if evsA.kinds() != "started step" || evsB.kinds() != "" {
		t.Errorf("events a %q b %q, want a to decide alone", evsA.kinds(), evsB.kinds())
	}
	if h := ra.state.History; len(h) != 2 || h[1].Window.Stable.Requests != 6 || h[1].Window.Candidate.Requests != 6 {
		t.Errorf("the step was decided on %+v, want both replicas' 6 and 6", h[len(h)-1].Window)
	}

	// a stops renewing its lease (it expires): b decides from then on.
	feed(ra, 3, false)
	feed(rb, 3, false)
	round()
	if err := redisClient(t, addr).Del(ctx, sharedPrefix+"chat:lease").Err(); err != nil {
		t.Fatal(err)
	}
	advance(time.Minute)
	gb.Round(ctx)
	ga.Round(ctx)
	gb.Round(ctx)
	for name, g := range map[string]*Registry{"a": ga, "b": gb} {
		if rep := reportOf(t, g, "chat"); rep.Step != 2 || rep.Percent != 50 {
			t.Errorf("%s after the handover: step %d at %g%%, want step 2 at 50%%", name, rep.Step, rep.Percent)
		}
	}
	if reportOf(t, ga, "chat").Decider || !reportOf(t, gb, "chat").Decider {
		t.Error("after the handover b should decide, a not")
	}
	if evsA.kinds() != "started step" || evsB.kinds() != "step" {
		t.Errorf("events a %q b %q, want the second step by b alone", evsA.kinds(), evsB.kinds())
	}

	// An operator pauses on b, then another resumes on a at once (a has
	// not had a round since): a acts on the state b wrote.
	if _, err := gb.Act(ctx, "chat", ActionPause); err != nil {
		t.Fatal(err)
	}
	if st, err := ga.Act(ctx, "chat", ActionResume); err != nil || st.Phase != Progressing || st.Step != 2 {
		t.Fatalf("resume on a right after the pause on b: %s step %d (%v)", st.Phase, st.Step, err)
	}
	// b follows within a round.
	gb.Round(ctx)
	if rep := reportOf(t, gb, "chat"); rep.State != Progressing || rep.Step != 2 || rb.Basis() != 5000 {
		t.Errorf("b after a resumed: %s step %d basis %d, want progressing at step 2, 5000", rep.State, rep.Step, rb.Basis())
	}
	if _, err := gb.Act(ctx, "chat", ActionAbort); err != nil {
		t.Fatal(err)
	}
	ga.Round(ctx)
	if rep := reportOf(t, ga, "chat"); rep.State != RolledBack || ra.Basis() != 0 {
		t.Errorf("a after b aborted: %s at basis %d, want rolled_back at 0", rep.State, ra.Basis())
	}
}
