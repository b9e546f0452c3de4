package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// clusterView is the part of GET /admin/experiments these tests read.
type clusterView struct {
	Experiments []struct {
		Scope    string `json:"scope"`
		Note     string `json:"note"`
		Variants []struct {
			Name     string `json:"name"`
			Requests int64  `json:"requests"`
		} `json:"variants"`
		Outcomes []struct {
			Metric   string `json:"metric"`
			Variants []struct {
				Name string `json:"name"`
				N    int64  `json:"n"`
			} `json:"variants"`
		} `json:"outcomes"`
	} `json:"experiments"`
}

func experimentsOf(t *testing.T, g *testGateway) clusterView {
	t.Helper()
	var v clusterView
	adminJSON(t, g.admin+"/admin/experiments", &v)
	if len(v.Experiments) != 1 {
		t.Fatalf("experiments: %+v", v)
	}
	return v
}

// requestsMatch reports whether the report's scope and per-variant
// requests are as wanted.
func requestsMatch(v clusterView, scope string, want map[string]int64) bool {
	e := v.Experiments[0]
	if e.Scope != scope {
		return false
	}
	for _, variant := range e.Variants {
		if variant.Requests != want[variant.Name] {
			return false
		}
	}
	return true
}

// twoReplicas starts two gateways with one config (a sticky three-variant
// split) sharing the Redis at addr.
func twoReplicas(t *testing.T, addr string) (*testGateway, *testGateway) {
	cfg := threeVariants(t, "      sticky: header:X-User-Id") + fmt.Sprintf("redis: {addr: %q, timeout: 250ms}\n", addr)
	return startGateway(t, cfg), startGateway(t, cfg)
}

// sendKeys sends one request per key to g and counts them by the variant
// that answered.
func sendKeys(t *testing.T, g *testGateway, prefix string, n int, counts map[string]int64) {
	t.Helper()
	for i := range n {
		status, body, _ := get(t, g.url+"/", "X-User-Id", fmt.Sprintf("%s%d", prefix, i))
		if status != 200 {
			t.Fatalf("request %d: %d %s", i, status, body)
		}
		counts[body]++
	}
}

func TestExperimentsAggregateAcrossReplicas(t *testing.T) {
	g1, g2 := twoReplicas(t, testutil.Redis(t))
	want := map[string]int64{}
	sendKeys(t, g1, "one-", 120, want)
	sendKeys(t, g2, "two-", 80, want)
	for _, g := range []*testGateway{g1, g2} {
		eventually(t, 10*time.Second, "each replica's report shows both replicas' requests", func() bool {
			return requestsMatch(experimentsOf(t, g), "cluster", want)
		})
	}

	// Outcomes posted to one replica show in the other's report.
	var items []string
	outcomes := map[string]int64{}
	for i := range 40 {
		key := fmt.Sprintf("one-%d", i)
		_, variant, _ := get(t, g1.url+"/", "X-User-Id", key)
		want[variant]++
		outcomes[variant]++
		items = append(items, fmt.Sprintf(`{"key":%q,"metric":"converted","value":1}`, key))
	}
	if status, out := postJSON(t, g1.admin+"/admin/experiments/exp/outcomes", "["+strings.Join(items, ",")+"]"); status != 200 {
		t.Fatalf("outcomes: %d %v", status, out)
	}
	eventually(t, 10*time.Second, "the other replica's report shows the outcomes", func() bool {
		v := experimentsOf(t, g2)
		if !requestsMatch(v, "cluster", want) || len(v.Experiments[0].Outcomes) != 1 {
			return false
		}
		for _, o := range v.Experiments[0].Outcomes[0].Variants {
			if o.N != outcomes[o.Name] {
				return false
			}
		}
		return true
	})
}

// TestExperimentsSurviveRedisOutage: with Redis gone, requests still
// succeed and the report falls back to the process with a note; when a
// Redis returns on the same address, what was recorded meanwhile arrives
// there, exactly once.
func TestExperimentsSurviveRedisOutage(t *testing.T) {
	srv := testutil.StartRedis(t, testutil.RestartableAddr(t))
	g1, g2 := twoReplicas(t, srv.Addr)
	onG1, onG2 := map[string]int64{}, map[string]int64{}
	sendKeys(t, g1, "a-", 30, onG1)
	sendKeys(t, g2, "b-", 30, onG2)
	both := map[string]int64{}
	for _, m := range []map[string]int64{onG1, onG2} {
		for name, n := range m {
			both[name] += n
		}
	}
	// Push both replicas' numbers now rather than wait for the pushers:
	// a report also counts its own process's unpushed numbers, so a report
	// that adds up could hide numbers still waiting to be pushed, which
	// would then arrive after the outage on top of the outage's own.
	for _, g := range []*testGateway{g1, g2} {
		if err := g.Experiments().Push(t.Context()); err != nil {
			t.Fatalf("push before the outage: %v", err)
		}
	}
	if v := experimentsOf(t, g2); !requestsMatch(v, "cluster", both) {
		t.Fatalf("before the outage: %+v, want both replicas' %v", v.Experiments[0].Variants, both)
	}

	srv.Stop()
	meanwhile := map[string]int64{}
	sendKeys(t, g1, "c-", 50, meanwhile) // fails the test on any non-200
	for name, n := range meanwhile {
		onG1[name] += n
	}
	if v := experimentsOf(t, g1); !requestsMatch(v, "process", onG1) || !strings.Contains(v.Experiments[0].Note, "this process") {
		t.Fatalf("report while Redis is down: %+v, want this process's %v with a note", v.Experiments[0], onG1)
	}

	// A new, empty Redis on the same address receives exactly the numbers
	// recorded during the outage: g1's 50, and nothing twice.
	testutil.StartRedis(t, srv.Addr)
	back := time.Now()
	// Within about two seconds: go-redis dials again a second after the
	// server returns, and the pusher runs once a second.
	var last clusterView
	eventually(t, 10*time.Second, "the outage's requests arrive", func() bool {
		last = experimentsOf(t, g2)
		ok := requestsMatch(last, "cluster", meanwhile)
		if !ok && testing.Verbose() {
			t.Logf("%v: scope %q note %q variants %+v, want %v", time.Since(back).Round(100*time.Millisecond), last.Experiments[0].Scope, last.Experiments[0].Note, last.Experiments[0].Variants, meanwhile)
		}
		return ok
	})
	t.Logf("arrived %v after Redis returned", time.Since(back))
	time.Sleep(2500 * time.Millisecond) // two more pushes each
	for _, g := range []*testGateway{g1, g2} {
		if v := experimentsOf(t, g); !requestsMatch(v, "cluster", meanwhile) {
			t.Fatalf("after more pushes: %+v, want %v", v.Experiments[0], meanwhile)
		}
	}
}

// TestReloadMovesExperimentsToTheNewRedis: a reload that changes the redis
// block makes the gateway push to and read from the new server.
func TestReloadMovesExperimentsToTheNewRedis(t *testing.T) {
	first, second := testutil.Redis(t), testutil.Redis(t)
	base := threeVariants(t, "      sticky: header:X-User-Id")
	g := startGateway(t, base+fmt.Sprintf("redis: {addr: %q, timeout: 250ms}\n", first))
	before := map[string]int64{}
	sendKeys(t, g, "x-", 20, before)
	if err := g.Experiments().Push(context.Background()); err != nil {
		t.Fatal(err)
	}

	replaceFile(t, g.path, base+fmt.Sprintf("redis: {addr: %q, timeout: 250ms}\n", second))
	if _, err := g.Reload("admin"); err != nil {
		t.Fatal(err)
	}
	after := map[string]int64{}
	sendKeys(t, g, "y-", 30, after)
	// The new Redis gets what was not pushed to the old one.
	eventually(t, 10*time.Second, "the report reads the second Redis", func() bool {
		return requestsMatch(experimentsOf(t, g), "cluster", after)
	})

	replaceFile(t, g.path, base)
	if _, err := g.Reload("admin"); err != nil {
		t.Fatal(err)
	}
	for name, n := range after {
		before[name] += n
	}
	if v := experimentsOf(t, g); !requestsMatch(v, "process", before) || v.Experiments[0].Note != "" {
		t.Fatalf("without redis: %+v, want this process's %v", v.Experiments[0], before)
	}
}
