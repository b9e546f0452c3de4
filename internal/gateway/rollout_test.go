package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// rolloutView is the part of GET /admin/rollouts these tests read.
type rolloutView struct {
	Route   string  `json:"route"`
	State   string  `json:"state"`
	Step    int     `json:"step"`
	Percent float64 `json:"percent"`
	Reason  string  `json:"reason"`
	Window  struct {
		Stable    struct{ Requests int64 } `json:"stable"`
		Candidate struct{ Requests int64 } `json:"candidate"`
	} `json:"window"`
	History []rolloutEvent `json:"history"`
}

type rolloutEvent struct {
	Event   string    `json:"event"`
	At      time.Time `json:"at"`
	Route   string    `json:"route"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Step    int       `json:"step"`
	Percent float64   `json:"percent"`
	Reason  string    `json:"reason"`
	By      string    `json:"by"`
	Gates   []struct {
		Name      string   `json:"name"`
		Value     *float64 `json:"value"`
		Threshold float64  `json:"threshold"`
		Pass      bool     `json:"pass"`
	} `json:"gates"`
}

func rolloutOf(t *testing.T, g *testGateway) rolloutView {
	t.Helper()
	var v struct {
		Rollouts []rolloutView `json:"rollouts"`
	}
	adminJSON(t, g.admin+"/admin/rollouts", &v)
	if len(v.Rollouts) != 1 {
		t.Fatalf("rollouts: %+v", v)
	}
	return v.Rollouts[0]
}

// waitForState polls the rollout until its state is want, failing on
// timeout with the last view.
func waitForState(t *testing.T, g *testGateway, want string, timeout time.Duration) rolloutView {
	t.Helper()
	var v rolloutView
	deadline := time.Now().Add(timeout)
	for {
		v = rolloutOf(t, g)
		if v.State == want {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout not %s within %v: %+v", want, timeout, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeModel is a backend that answers after delay and fails every
// failEvery-th request with 500 (0: never).
func fakeModel(t *testing.T, delay time.Duration, failEvery int64) string {
	var n atomic.Int64
	return testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		if delay > 0 {
			time.Sleep(delay)
		}
		if failEvery > 0 && n.Add(1)%failEvery == 0 {
			ctx.SetStatusCode(http.StatusInternalServerError)
			ctx.SetBodyString(`{"error":"injected"}`)
			return
		}
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"prediction":"setosa"}`)
	})
}

// canaryConfig is one canary route "iris" from pool v1 to v2.
func canaryConfig(stable, candidate, canary string) string {
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  v1: {backends: [%q], timeout: 2s}
  v2: {backends: [%q], timeout: 2s}
routes:
  - name: iris
    match: {path_prefix: /}
    canary:
      stable: v1
      candidate: v2
%s`, stable, candidate, canary)
}

// answer is one response as the client saw it.
type answer struct {
	sent, done time.Time
	variant    string
	status     int
}

// variantTraffic is client load that keeps every answer's variant.
type variantTraffic struct {
	stopCh  chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	answers []answer
}

func startVariantTraffic(url string, clients int) *variantTraffic {
	tr := &variantTraffic{stopCh: make(chan struct{})}
	for range clients {
		tr.wg.Go(func() {
			client := &http.Client{Timeout: 5 * time.Second}
			defer client.CloseIdleConnections()
			for {
				select {
				case <-tr.stopCh:
					return
				default:
				}
				a := answer{sent: time.Now()}
				resp, err := client.Post(url, "application/json", strings.NewReader(`{"input":[5.1,3.5,1.4,0.2]}`))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					a.status, a.variant = resp.StatusCode, resp.Header.Get("X-Sluice-Variant")
				}
				a.done = time.Now()
				tr.mu.Lock()
				tr.answers = append(tr.answers, a)
				tr.mu.Unlock()
			}
		})
	}
	return tr
}

func (tr *variantTraffic) stop() []answer {
	close(tr.stopCh)
	tr.wg.Wait()
	return tr.answers
}

func TestCanaryHealthyCandidateIsPromotedThroughEveryStep(t *testing.T) {
	g := startGateway(t, canaryConfig(fakeModel(t, 0, 0), fakeModel(t, 0, 0), `
      steps: [10, 30, 60, 100]
      interval: 400ms
      min_requests: 20
      gates: {success_ratio: 0.95, latency_ratio: 1.5, latency_slack: 100ms}
`))
	tr := startVariantTraffic(g.url+"/predict", 4)
	v := waitForState(t, g, "promoted", 60*time.Second)
	answers := tr.stop()

	if v.Percent != 100 || v.Step != 3 {
		t.Fatalf("promoted at %v%% step %d, want 100%% at the last step", v.Percent, v.Step)
	}
	var kinds []string
	for _, ev := range v.History {
		if ev.Event == "waiting" {
			continue // a slow machine may wait at a step; the test is about the steps
		}
		kinds = append(kinds, fmt.Sprintf("%s@%v#%d", ev.Event, ev.Percent, ev.Step))
		if ev.Event == "step" || ev.Event == "promoted" {
			if len(ev.Gates) != 2 {
				t.Fatalf("%s event without both gates: %+v", ev.Event, ev)
			}
			for _, gate := range ev.Gates {
				if gate.Value == nil || !gate.Pass {
					t.Fatalf("%s event with gate %s not measured or not passed: %+v", ev.Event, gate.Name, ev)
				}
			}
		}
	}
	if got, want := strings.Join(kinds, " "), "started@10#0 step@30#1 step@60#2 promoted@100#3"; got != want {
		t.Fatalf("history %q, want %q", got, want)
	}
	// Requests sent after the promotion all went to the candidate.
	promotedAt := v.History[len(v.History)-1].At
	for _, a := range answers {
		if a.sent.After(promotedAt.Add(300*time.Millisecond)) && a.variant != "candidate" {
			t.Fatalf("a request sent after the promotion went to %q", a.variant)
		}
	}
	if got := metricValue(t, g, `sluice_rollout_state{route="iris",state="promoted"}`); got != "1" {
		t.Fatalf("sluice_rollout_state promoted = %q", got)
	}
	if got := metricValue(t, g, `sluice_rollout_candidate_percent{route="iris"}`); got != "100" {
		t.Fatalf("sluice_rollout_candidate_percent = %q", got)
	}
}

// rollbackCase drives a canary whose candidate is bad and checks that it
// is rolled back at its first step, within the step's interval, and that
// no client got more of the candidate than the step allowed.
func rollbackCase(t *testing.T, candidate, gate string) {
	g := startGateway(t, canaryConfig(fakeModel(t, 10*time.Millisecond, 0), candidate, `
      steps: [10, 50, 100]
      interval: 20s
      min_requests: 30
`))
	tr := startVariantTraffic(g.url+"/predict", 8)
	v := waitForState(t, g, "rolled_back", 20*time.Second)
	time.Sleep(500 * time.Millisecond)
	answers := tr.stop()

	last := v.History[len(v.History)-1]
	if last.Event != "rolled_back" || last.Step != 0 || v.Percent != 0 {
		t.Fatalf("not rolled back at the first step: %+v", v)
	}
	if !strings.Contains(last.Reason, gate+" failed") {
		t.Fatalf("reason %q does not name gate %s", last.Reason, gate)
	}
	// Within one interval: the step started with the rollout.
	if took := last.At.Sub(v.History[0].At); took >= 20*time.Second {
		t.Fatalf("rolled back %v after the step started, past its interval", took)
	}
	var before, candidateBefore int
	for _, a := range answers {
		switch {
		case a.done.Before(last.At):
			before++
			if a.variant == "candidate" {
				candidateBefore++
			}
		case a.sent.After(last.At.Add(300*time.Millisecond)) && a.variant != "stable":
			t.Fatalf("a request sent after the rollback went to %q", a.variant)
		}
	}
	// Exact proportions by count: at most 10% (and one request of slack
	// per client for requests in flight at the edges).
	if limit := before/10 + 8; candidateBefore > limit {
		t.Fatalf("the candidate got %d of %d requests before the rollback, over 10%% (limit %d)", candidateBefore, before, limit)
	}
	if candidateBefore < 30 {
		t.Fatalf("rolled back after only %d candidate requests, under min_requests", candidateBefore)
	}
}

func TestCanaryWithErrorsIsRolledBackAtTheFirstStep(t *testing.T) {
	rollbackCase(t, fakeModel(t, 10*time.Millisecond, 5), "success_ratio")
}

func TestCanaryWithThreeTimesTheLatencyIsRolledBackAtTheFirstStep(t *testing.T) {
	rollbackCase(t, fakeModel(t, 30*time.Millisecond, 0), "latency_ratio")
}

func TestCanaryWithTooLittleTrafficWaitsAndNeverPromotes(t *testing.T) {
	g := startGateway(t, canaryConfig(fakeModel(t, 0, 0), fakeModel(t, 0, 0), `
      steps: [50, 100]
      interval: 300ms
      min_requests: 1000
`))
	for range 40 {
		if status, body, _ := send(t, "POST", g.url+"/predict", `{}`); status != 200 {
			t.Fatalf("%d %s", status, body)
		}
	}
	v := waitForState(t, g, "waiting", 10*time.Second)
	if v.Step != 0 || v.Percent != 50 {
		t.Fatalf("waiting at step %d (%v%%), want step 0 at 50%%", v.Step, v.Percent)
	}
	// Several more intervals: it still waits, one waiting event in all.
	time.Sleep(1500 * time.Millisecond)
	v = rolloutOf(t, g)
	if v.State != "waiting" || v.Step != 0 || len(v.History) != 2 {
		t.Fatalf("after more intervals: %+v", v)
	}
	if v.Window.Stable.Requests+v.Window.Candidate.Requests != 40 {
		t.Fatalf("window counts %d + %d requests, want 40", v.Window.Stable.Requests, v.Window.Candidate.Requests)
	}
}

func TestCanaryResumesAtItsStepAfterARestart(t *testing.T) {
	stateDir := t.TempDir()
	cfg := canaryConfig(fakeModel(t, 0, 0), fakeModel(t, 0, 0), `
      steps: [10, 50, 100]
      interval: 300ms
      min_requests: 20
      gates: {latency_slack: 100ms}
`) + fmt.Sprintf("state_dir: %q\n", stateDir)
	g := startGateway(t, cfg)
	tr := startVariantTraffic(g.url+"/predict", 4)
	testutil.Eventually(t, 30*time.Second, "step 1", func() bool { return rolloutOf(t, g).Step == 1 })
	tr.stop()
	before := rolloutOf(t, g)
	if before.Step != 1 {
		t.Fatalf("moved on without traffic: %+v", before)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	again := startGateway(t, cfg)
	after := rolloutOf(t, again)
	if after.Step != 1 || after.Percent != 50 || len(after.History) < len(before.History) {
		t.Fatalf("after the restart: step %d at %v%% with %d events, want step 1 at 50%% with at least %d",
			after.Step, after.Percent, len(after.History), len(before.History))
	}
	// It serves the step it resumed at: about half the requests each way.
	candidates := 0
	for range 40 {
		_, _, h := send(t, "POST", again.url+"/predict", `{}`)
		if h.Get("X-Sluice-Variant") == "candidate" {
			candidates++
		}
	}
	if candidates != 20 {
		t.Fatalf("%d of 40 requests went to the candidate at 50%%", candidates)
	}
}

func TestCanaryReplicasSharingRedisAgreeOnTheStep(t *testing.T) {
	addr := testutil.Redis(t)
	route := fmt.Sprintf("iris%d", time.Now().UnixNano())
	cfg := strings.Replace(canaryConfig(fakeModel(t, 0, 0), fakeModel(t, 0, 0), `
      steps: [10, 30, 60, 100]
      interval: 400ms
      min_requests: 20
      gates: {latency_slack: 100ms}
`), "name: iris", "name: "+route, 1) + fmt.Sprintf("redis: {addr: %q, timeout: 250ms}\n", addr)
	a, b := startGateway(t, cfg), startGateway(t, cfg)
	ta, tb := startVariantTraffic(a.url+"/predict", 2), startVariantTraffic(b.url+"/predict", 2)
	defer ta.stop()
	defer tb.stop()

	// Poll both while the rollout moves: they may differ only for a
	// moment (one controller round), never for longer.
	var disagreeSince time.Time
	deadline := time.Now().Add(60 * time.Second)
	for {
		va, vb := rolloutOf(t, a), rolloutOf(t, b)
		if va.Step != vb.Step || va.State != vb.State {
			if disagreeSince.IsZero() {
				disagreeSince = time.Now()
			} else if time.Since(disagreeSince) > time.Second {
				t.Fatalf("replicas disagree for over a second: %s step %d against %s step %d", va.State, va.Step, vb.State, vb.Step)
			}
		} else {
			disagreeSince = time.Time{}
			if va.State == "promoted" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not promoted within a minute: %+v / %+v", va, vb)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// One replica decided each transition: the shared history has each
	// step once.
	var steps []string
	for _, ev := range rolloutOf(t, a).History {
		if ev.Event != "waiting" {
			steps = append(steps, ev.Event)
		}
	}
	if got := strings.Join(steps, " "); got != "started step step promoted" {
		t.Fatalf("shared history %q", got)
	}
}

func TestCanaryWebhookGetsOneEventPerTransition(t *testing.T) {
	var mu sync.Mutex
	var events []rolloutEvent
	var bad []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev rolloutEvent
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			bad = append(bad, r.Method+" "+r.Header.Get("Content-Type"))
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			bad = append(bad, err.Error())
		}
		events = append(events, ev)
	}))
	defer hook.Close()
	g := startGateway(t, canaryConfig(fakeModel(t, 0, 0), fakeModel(t, 0, 0), fmt.Sprintf(`
      steps: [20, 100]
      interval: 300ms
      min_requests: 10
      gates: {latency_slack: 100ms}
      webhook: %s/hook
`, hook.URL)))
	tr := startVariantTraffic(g.url+"/predict", 2)
	v := waitForState(t, g, "promoted", 30*time.Second)
	tr.stop()
	if status, body, _ := send(t, "POST", g.admin+"/admin/rollouts/iris/abort", ""); status != 200 {
		t.Fatalf("abort: %d %s", status, body)
	}
	want := len(v.History) + 1 // the abort too
	testutil.Eventually(t, 10*time.Second, "every event posted", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) >= want
	})
	time.Sleep(200 * time.Millisecond) // and no more than that
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("malformed posts: %v", bad)
	}
	history := rolloutOf(t, g).History
	if len(events) != len(history) {
		t.Fatalf("%d events posted for %d transitions", len(events), len(history))
	}
	for i, ev := range events {
		h := history[i]
		if ev.Event != h.Event || ev.Route != "iris" || ev.To != h.To || ev.Step != h.Step || ev.Percent != h.Percent || ev.At.IsZero() {
			t.Fatalf("event %d: posted %+v, history has %+v", i, ev, h)
		}
	}
	if last := events[len(events)-1]; last.Event != "rolled_back" || last.By != "operator" {
		t.Fatalf("last event %+v, want the operator's rollback", last)
	}
}

func TestRolloutOperatorActions(t *testing.T) {
	g := startGateway(t, canaryConfig(fakeModel(t, 0, 0), fakeModel(t, 0, 0), `
      steps: [10, 100]
      interval: 1h
`))
	act := func(action string) (int, string) {
		status, body, _ := send(t, "POST", g.admin+"/admin/rollouts/iris/"+action, "")
		return status, body
	}
	for _, c := range []struct {
		action string
		status int
		state  string
	}{
		{"pause", 200, "paused"},
		{"pause", 409, "paused"},
		{"resume", 200, "progressing"},
		{"abort", 200, "rolled_back"},
		{"abort", 409, "rolled_back"},
		{"resume", 200, "progressing"},
		{"promote", 200, "promoted"},
		{"promote", 409, "promoted"},
		{"jump", 404, "promoted"},
	} {
		if status, body := act(c.action); status != c.status {
			t.Fatalf("%s: %d %s, want %d", c.action, status, body, c.status)
		}
		if got := rolloutOf(t, g).State; got != c.state {
			t.Fatalf("after %s: %s, want %s", c.action, got, c.state)
		}
	}
	if status, _, _ := send(t, "POST", g.admin+"/admin/rollouts/nosuch/pause", ""); status != 404 {
		t.Fatalf("unknown route: %d", status)
	}
	// Promoted: every request to the candidate; aborted: none.
	for range 10 {
		if _, _, h := send(t, "POST", g.url+"/predict", `{}`); h.Get("X-Sluice-Variant") != "candidate" {
			t.Fatalf("promoted, but a request went to %q", h.Get("X-Sluice-Variant"))
		}
	}
	act("abort")
	for range 10 {
		if _, _, h := send(t, "POST", g.url+"/predict", `{}`); h.Get("X-Sluice-Variant") != "stable" {
			t.Fatalf("aborted, but a request went to %q", h.Get("X-Sluice-Variant"))
		}
	}
}

func TestCanaryKeepsItsPlaceAcrossReloadsAndRestartsForANewCandidate(t *testing.T) {
	v1, v2, v3 := fakeModel(t, 0, 0), fakeModel(t, 0, 0), fakeModel(t, 0, 0)
	block := `
      steps: [10, 50, 100]
      interval: 1h
`
	g := startGateway(t, canaryConfig(v1, v2, block))
	send(t, "POST", g.admin+"/admin/rollouts/iris/pause", "")
	// Another interval, same pools: the rollout keeps its state.
	replaceFile(t, g.path, canaryConfig(v1, v2, strings.Replace(block, "1h", "30m", 1)))
	if _, err := g.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if v := rolloutOf(t, g); v.State != "paused" {
		t.Fatalf("after a reload with the same pools: %+v", v)
	}
	// A new candidate: a new rollout at step 0.
	cfg := strings.Replace(canaryConfig(v1, v2, block), "candidate: v2", "candidate: v3", 1)
	cfg = strings.Replace(cfg, "pools:\n", fmt.Sprintf("pools:\n  v3: {backends: [%q]}\n", v3), 1)
	replaceFile(t, g.path, cfg)
	if _, err := g.Reload("test"); err != nil {
		t.Fatal(err)
	}
	v := rolloutOf(t, g)
	if v.State != "progressing" || v.Step != 0 || v.Percent != 10 || !strings.Contains(v.History[len(v.History)-1].Reason, "v1 -> v2") {
		t.Fatalf("after a new candidate: %+v", v)
	}
}

func TestCanaryWhoseShadowAnswersDifferIsRolledBack(t *testing.T) {
	stable := fakeModel(t, 0, 0)
	candidate := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"prediction":"virginica"}`)
	})
	cfg := canaryConfig(stable, candidate, `
      steps: [10, 100]
      interval: 1h
      min_requests: 20
      gates: {latency_slack: 100ms, max_shadow_mismatch: 0.05}
    shadow: {pool: v2, percent: 50}
`)
	g := startGateway(t, cfg)
	tr := startVariantTraffic(g.url+"/predict", 4)
	v := waitForState(t, g, "rolled_back", 30*time.Second)
	tr.stop()
	if last := v.History[len(v.History)-1]; !strings.Contains(last.Reason, "max_shadow_mismatch failed") {
		t.Fatalf("rolled back for %q, want the shadow gate", last.Reason)
	}
}
