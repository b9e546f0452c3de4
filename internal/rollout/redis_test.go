package rollout

import (
	"context"
	"math"
	"reflect"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// redisTimeout is generous for a loopback Redis under the race detector.
const redisTimeout = 250 * time.Millisecond

// redisClient connects to the Redis at addr (each test starts its own, so
// the fixed key names do not meet another test's).
func redisClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestSharedLease(t *testing.T) {
	ctx := context.Background()
	addr := testutil.Redis(t)
	client := redisClient(t, addr)
	a := NewShared(redisClient(t, addr), "replica-a", redisTimeout)
	b := NewShared(redisClient(t, addr), "replica-b", redisTimeout)

	if !a.Leader(ctx, "chat") {
		t.Fatal("a: no lease on a free route")
	}
	for i := range 3 {
		if b.Leader(ctx, "chat") {
			t.Fatalf("b took the lease a holds (try %d)", i)
		}
		if !a.Leader(ctx, "chat") {
			t.Fatalf("a lost its lease on renewal (try %d)", i)
		}
	}
	key := sharedPrefix + "chat:lease"
	if owner, err := client.Get(ctx, key).Result(); err != nil || owner != "replica-a" {
		t.Errorf("lease key holds %q (%v), want replica-a", owner, err)
	}
	if ttl, err := client.PTTL(ctx, key).Result(); err != nil || ttl <= 0 || ttl > LeaseTTL {
		t.Errorf("lease ttl %v (%v), want within (0, %v]", ttl, err, LeaseTTL)
	}

	// The lease expires (as if a stopped renewing for LeaseTTL): b takes
	// it, and a no longer decides.
	if err := client.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	if !b.Leader(ctx, "chat") {
		t.Fatal("b did not take the expired lease")
	}
	if a.Leader(ctx, "chat") {
		t.Fatal("a still decides after b took the lease")
	}
	if !b.Leader(ctx, "chat") {
		t.Fatal("b lost its lease on renewal")
	}
}

func TestSharedLeaderWithoutRedis(t *testing.T) {
	// A port nobody listens on: nobody decides.
	s := NewShared(redisClient(t, testutil.ClosedAddr(t)), "replica-a", redisTimeout)
	if s.Leader(context.Background(), "chat") {
		t.Error("leader without a Redis")
	}
	if _, _, err := s.Load(context.Background(), "chat"); err == nil {
		t.Error("load without a Redis: no error")
	}
}

func TestSharedSaveCompareAndSet(t *testing.T) {
	ctx := context.Background()
	addr := testutil.Redis(t)
	a := NewShared(redisClient(t, addr), "replica-a", redisTimeout)
	b := NewShared(redisClient(t, addr), "replica-b", redisTimeout)
	spec := testSpec()

	if _, ok, err := a.Load(ctx, spec.Route); err != nil || ok {
		t.Fatalf("load before any save: %t %v, want nothing", ok, err)
	}
	st := start(spec, State{}, t0) // version 1
	if ok, err := a.Save(ctx, st, 0); err != nil || !ok {
		t.Fatalf("first save over version 0: %t %v", ok, err)
	}
	// b starts the same rollout a moment later, over what it read (none).
	if ok, err := b.Save(ctx, st, 0); err != nil || ok {
		t.Fatalf("a second first save over version 0: %t %v, want refused", ok, err)
	}
	got, ok, err := b.Load(ctx, spec.Route)
	if err != nil || !ok || !reflect.DeepEqual(got, st) {
		t.Fatalf("b loads %+v (%t %v), want what a saved %+v", got, ok, err, st)
	}

	stepped, ev := Decide(spec, st, healthy(), t0.Add(time.Minute)) // version 2
	if ev == nil {
		t.Fatal("no step")
	}
	paused, _, err := Override(spec, st, ActionPause, t0.Add(time.Minute)) // version 2, from 1
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := a.Save(ctx, stepped, st.Version); err != nil || !ok {
		t.Fatalf("save over the right version: %t %v", ok, err)
	}
	if ok, err := b.Save(ctx, paused, st.Version); err != nil || ok {
		t.Fatalf("save over a stale version: %t %v, want refused", ok, err)
	}
	got, _, _ = b.Load(ctx, spec.Route)
	if got.Phase != Progressing || got.Step != 1 || got.Version != stepped.Version {
		t.Errorf("after a refused save: %s step %d version %d, want the step a saved", got.Phase, got.Step, got.Version)
	}
	// b reads again and retries over what it read.
	paused, _, err = Override(spec, got, ActionPause, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Save(ctx, paused, got.Version); err != nil || !ok {
		t.Fatalf("save over the version just read: %t %v", ok, err)
	}
	if got, _, _ := a.Load(ctx, spec.Route); got.Phase != Paused || got.Version != 3 {
		t.Errorf("a loads %s version %d, want paused version 3", got.Phase, got.Version)
	}

	// Another route is another key.
	other := spec
	other.Route = "embed"
	if ok, err := a.Save(ctx, start(other, State{}, t0), 0); err != nil || !ok {
		t.Errorf("first save of another route: %t %v", ok, err)
	}
}

// latencies is a histogram as the recorder keeps it: n values of d, in
// microseconds.
func latencies(t *testing.T, n int, d time.Duration) *hdrhistogram.Histogram {
	t.Helper()
	h := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	if err := h.RecordValues(int64(d/time.Microsecond), int64(n)); err != nil {
		t.Fatal(err)
	}
	return h
}

func near(got, want time.Duration) bool {
	return math.Abs(float64(got-want)) <= 0.01*float64(want)
}

func TestSharedExchange(t *testing.T) {
	ctx := context.Background()
	addr := testutil.Redis(t)
	a := NewShared(redisClient(t, addr), "replica-a", redisTimeout)
	b := NewShared(redisClient(t, addr), "replica-b", redisTimeout)

	// a's requests all took 1ms, b's 10ms.
	ca := Counts{
		Stable:    SideCounts{Requests: 100, Errors: 1, Latency: latencies(t, 100, time.Millisecond)},
		Candidate: SideCounts{Requests: 20, Errors: 2, Latency: latencies(t, 20, time.Millisecond)},
		Shadowed:  true, ShadowCompared: 10, ShadowMismatched: 1,
	}
	cb := Counts{
		Stable:    SideCounts{Requests: 100, Latency: latencies(t, 100, 10*time.Millisecond)},
		Candidate: SideCounts{Requests: 30, Errors: 3, Latency: latencies(t, 30, 10*time.Millisecond)},
		Shadowed:  true, ShadowCompared: 5, ShadowMismatched: 4,
	}

	got, err := a.Exchange(ctx, "chat", 7, ca)
	if err != nil {
		t.Fatal(err)
	}
	if w := got.Window(); w.Stable.Requests != 100 || w.Candidate.Requests != 20 || !near(w.Stable.P99, time.Millisecond) {
		t.Errorf("a alone: %+v, want its own numbers", w)
	}

	got, err = b.Exchange(ctx, "chat", 7, cb)
	if err != nil {
		t.Fatal(err)
	}
	w := got.Window()
	want := Window{
		Stable:    Side{Requests: 200, Errors: 1},
		Candidate: Side{Requests: 50, Errors: 5},
		Shadowed:  true, ShadowCompared: 15, ShadowMismatched: 5,
	}
	p99s, p99c := w.Stable.P99, w.Candidate.P99
	w.Stable.P99, w.Candidate.P99 = 0, 0
	if w != want {
		t.Errorf("merged window %+v, want %+v", w, want)
	}
	// Half the stable's requests took 10ms: its p99 is b's; its median
	// is a's, so a's histogram is in the merge too.
	if !near(p99s, 10*time.Millisecond) || !near(p99c, 10*time.Millisecond) {
		t.Errorf("merged p99 stable %v candidate %v, want 10ms (b's latencies)", p99s, p99c)
	}
	if h := got.Stable.Latency; h == nil || h.TotalCount() != 200 || !near(time.Duration(h.ValueAtQuantile(25))*time.Microsecond, time.Millisecond) {
		t.Errorf("merged stable histogram %v, want 200 values, the lower half at 1ms", h)
	}

	// Publishing again replaces a replica's numbers: they are totals of the
	// step, not increments.
	got, err = a.Exchange(ctx, "chat", 7, ca)
	if err != nil {
		t.Fatal(err)
	}
	if got.Stable.Requests != 200 || got.Candidate.Requests != 50 {
		t.Errorf("after a publishes twice: %d and %d requests, want 200 and 50", got.Stable.Requests, got.Candidate.Requests)
	}

	// Another step (epoch), or another route, starts from nothing.
	got, err = a.Exchange(ctx, "chat", 8, Counts{Stable: SideCounts{Requests: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Stable.Requests != 3 || got.Candidate.Requests != 0 || got.Stable.Latency != nil {
		t.Errorf("a new epoch: %+v, want only the 3 requests just published", got.Window())
	}
	got, err = b.Exchange(ctx, "embed", 7, Counts{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Stable.Requests != 0 || got.Shadowed {
		t.Errorf("another route: %+v, want nothing", got.Window())
	}

	// The step's numbers expire eventually.
	ttl, err := redisClient(t, addr).TTL(ctx, sharedPrefix+"chat:w:7").Result()
	if err != nil || ttl <= 0 {
		t.Errorf("window ttl %v (%v), want one", ttl, err)
	}
}
