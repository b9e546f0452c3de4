package experiments

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// testTimeout is generous for a loopback Redis under the race detector.
const testTimeout = 250 * time.Millisecond

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// clustered returns a registry aggregating through the Redis at addr, with
// the iris experiment (control, treatment) created.
func clustered(t *testing.T, addr string) (*Registry, *Experiment) {
	t.Helper()
	client := redis.NewClient(ClientOptions(addr, "", 0, testTimeout))
	t.Cleanup(func() { _ = client.Close() })
	r := NewRegistry()
	r.SetCluster(NewCluster(client, testTimeout, quietLog))
	return r, r.Experiment("iris", "s|control,treatment", []string{"control", "treatment"})
}

// rawHash reads a variant's hash as Redis holds it.
func rawHash(t *testing.T, addr, variant string) map[string]string {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	h, err := client.HGetAll(context.Background(), variantKey("iris", "s|control,treatment", variant)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func record(e *Experiment, variant, n int, latency time.Duration, failed bool) {
	for range n {
		e.Variant(variant).Record(latency, failed)
	}
}

func mustPush(t *testing.T, r *Registry) {
	t.Helper()
	if err := r.Push(context.Background()); err != nil {
		t.Fatalf("push: %v", err)
	}
}

// pushUntilOK pushes until Redis answers: after an outage go-redis fails
// fast for up to a second before it dials again.
func pushUntilOK(t *testing.T, r *Registry) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.Push(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("Redis did not come back within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestClusterReportSumsEveryReplica(t *testing.T) {
	addr := testutil.Redis(t)
	r1, e1 := clustered(t, addr)
	r2, e2 := clustered(t, addr)

	record(e1, 0, 30, 2*time.Millisecond, false)
	record(e1, 1, 10, 4*time.Millisecond, true)
	record(e2, 0, 20, 6*time.Millisecond, true)
	for _, v := range []float64{1, 0, 1} {
		if err := e1.AddOutcome(1, "converted", v); err != nil {
			t.Fatal(err)
		}
	}
	if err := e2.AddOutcome(1, "converted", 1); err != nil {
		t.Fatal(err)
	}
	mustPush(t, r1)
	// r2 has pushed nothing yet: its own report still counts its numbers
	// (unpushed), r1's only sees what is in Redis.
	check := func(name string, r *Registry, control, controlErrors int64) {
		t.Helper()
		reps := r.Report()
		if len(reps) != 1 {
			t.Fatalf("%s: %d reports", name, len(reps))
		}
		rep := reps[0]
		if rep.Scope != ScopeCluster || !strings.Contains(rep.Note, "p50/p95/p99 are this process's") {
			t.Errorf("%s: scope %q note %q, want cluster with a note on quantiles", name, rep.Scope, rep.Note)
		}
		if got := rep.Variants[0]; got.Requests != control || got.Errors != controlErrors {
			t.Errorf("%s: control %d requests, %d errors; want %d, %d", name, got.Requests, got.Errors, control, controlErrors)
		}
		if got := rep.Variants[1]; got.Requests != 10 || got.Errors != 10 {
			t.Errorf("%s: treatment %d requests, %d errors; want 10, 10", name, got.Requests, got.Errors)
		}
	}
	check("r1 before r2 pushed", r1, 30, 0)
	check("r2 before its push", r2, 50, 20)
	mustPush(t, r2)
	check("r1", r1, 50, 20)
	check("r2", r2, 50, 20)

	rep := r1.Report()[0]
	if mean := *rep.Variants[0].LatencyMS.Mean; math.Abs(mean-(30*2+20*6)/50.0) > 1e-9 {
		t.Errorf("control mean %v ms, want 3.6 (both replicas)", mean)
	}
	if p50 := rep.Variants[0].LatencyMS.P50; p50 == nil || math.Abs(*p50-2) > 0.01 {
		t.Errorf("control p50 %v, want r1's own 2ms", p50)
	}
	if len(rep.Outcomes) != 1 || rep.Outcomes[0].Variants[1].N != 4 || *rep.Outcomes[0].Variants[1].Mean != 0.75 {
		t.Errorf("outcomes %+v, want treatment n=4 mean 0.75", rep.Outcomes)
	}

	var text strings.Builder
	if err := RenderText(&text, r1.Report()); err != nil || !strings.Contains(text.String(), "cluster numbers: ") {
		t.Errorf("text report does not say whose numbers these are (%v):\n%s", err, text.String())
	}

	// Pushing again with nothing new sends nothing; the sums stay put.
	mustPush(t, r1)
	mustPush(t, r2)
	if h := rawHash(t, addr, "control"); h["requests"] != "50" || h["errors"] != "20" {
		t.Errorf("control hash %v, want 50 requests, 20 errors", h)
	}
}

// TestFailedPushIsResentOnce: numbers recorded while Redis is gone arrive
// when it returns, once, and the report in between falls back with a note.
func TestFailedPushIsResentOnce(t *testing.T) {
	srv := testutil.StartRedis(t, testutil.RestartableAddr(t))
	r, e := clustered(t, srv.Addr)
	record(e, 0, 10, time.Millisecond, false)
	mustPush(t, r)

	srv.Stop()
	record(e, 0, 5, time.Millisecond, true)
	if err := e.AddOutcome(0, "clicks", 3); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := r.Push(context.Background()); err == nil {
			t.Fatal("push with Redis stopped: want an error")
		}
	}
	rep := r.Report()[0]
	if rep.Scope != ScopeProcess || !strings.Contains(rep.Note, "this process") || rep.Variants[0].Requests != 15 {
		t.Fatalf("report while down: scope %q note %q requests %d; want the process's 15 with a note",
			rep.Scope, rep.Note, rep.Variants[0].Requests)
	}

	// A fresh, empty Redis on the same address: it gets exactly what the
	// earlier one never did.
	testutil.StartRedis(t, srv.Addr)
	pushUntilOK(t, r)
	mustPush(t, r)
	h := rawHash(t, srv.Addr, "control")
	if h["requests"] != "5" || h["errors"] != "5" || h["o:clicks:n"] != "1" || h["o:clicks:sum"] != "3" {
		t.Fatalf("hash after the outage %v: want the 5 requests, 5 errors and 1 outcome recorded meanwhile", h)
	}
}

// TestPushInDoubtIsNotDoubleCounted: a push that times out may still have
// been applied (Redis was slow, not gone). The next push finds out from the
// marker and does not send those numbers again.
func TestPushInDoubtIsNotDoubleCounted(t *testing.T) {
	srv := testutil.StartRedis(t, testutil.RestartableAddr(t))
	r, e := clustered(t, srv.Addr)
	record(e, 1, 10, time.Millisecond, false)
	mustPush(t, r)

	srv.Pause()
	record(e, 1, 5, time.Millisecond, false)
	err := r.Push(context.Background())
	srv.Resume()
	if err == nil {
		t.Fatal("push to a paused Redis: want a timeout")
	}
	record(e, 1, 1, time.Millisecond, false)
	// The paused server may or may not have applied the MULTI it had been
	// sent when it resumed; either way the sum must end at 16.
	pushUntilOK(t, r)
	mustPush(t, r)
	if h := rawHash(t, srv.Addr, "treatment"); h["requests"] != "16" {
		t.Fatalf("treatment hash %v: want exactly 16 requests", h)
	}
	if got := r.Report()[0].Variants[1].Requests; got != 16 {
		t.Fatalf("report: %d requests, want 16", got)
	}
}

func TestWithoutClusterReportIsPerProcess(t *testing.T) {
	r := NewRegistry()
	e := r.Experiment("iris", "s|a", []string{"a"})
	record(e, 0, 3, time.Millisecond, false)
	if err := r.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep := r.Report()[0]
	if rep.Scope != ScopeProcess || rep.Note != "" || rep.Variants[0].Requests != 3 {
		t.Fatalf("report %+v", rep)
	}
}

func TestReadStatsParsesOutcomeMetricsWithColons(t *testing.T) {
	st := readStats("v", map[string]string{
		"requests": "4", "errors": "1", "latency_sum": "10.5", "latency_sumsq": "30.25",
		"o:ns:click:n": "2", "o:ns:click:sum": "3", "o:ns:click:sumsq": "5", "bogus": "x", "o:nofield": "1",
	})
	if st.Latency != (Moments{N: 4, Sum: 10.5, SumSq: 30.25}) || st.Errors != 1 {
		t.Fatalf("traffic %+v", st)
	}
	if len(st.Outcomes) != 1 || st.Outcomes["ns:click"] != (Moments{N: 2, Sum: 3, SumSq: 5}) {
		t.Fatalf("outcomes %+v", st.Outcomes)
	}
}
