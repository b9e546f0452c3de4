package gateway

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// spawnConfig is a gateway whose pool w runs the test binary as workers
// on ports from a range; modes are passed to every worker.
func spawnConfig(t *testing.T, replicas int, extra string, modes ...string) string {
	t.Helper()
	lo := 20000 + (os.Getpid()*7+len(t.Name())*131)%30000
	args := []string{fmt.Sprintf("%q", os.Args[0]), `"spawn-test-worker"`, `"{addr}"`}
	for _, m := range modes {
		args = append(args, fmt.Sprintf("%q", m))
	}
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  w:
    timeout: 2s
    spawn:
      command: [%s]
      replicas: %d
      ports: "%d-%d"
      stop_timeout: 2s
%s
routes:
  - {name: main, match: {path_prefix: /}, pool: w}
`, strings.Join(args, ", "), replicas, lo, lo+40, extra)
}

type poolsView struct {
	Pools []struct {
		Name     string
		Spawned  bool
		Backends []struct {
			Addr       string
			Available  bool
			SpawnedPID int64 `json:"spawned_pid"`
			Restarts   uint64
			Failures   uint64
			Conns      int
		}
	}
}

// replicas returns addr -> pid of the available replicas of pool w.
func replicas(t *testing.T, g *testGateway) map[string]int64 {
	t.Helper()
	var v poolsView
	adminJSON(t, g.admin+"/admin/pools", &v)
	out := map[string]int64{}
	for _, p := range v.Pools {
		for _, b := range p.Backends {
			if b.Available && b.SpawnedPID > 0 {
				out[b.Addr] = b.SpawnedPID
			}
		}
	}
	return out
}

func alive(pid int64) bool { return syscall.Kill(int(pid), 0) == nil }

func TestSpawnedReplicasServeAndStopWithTheGateway(t *testing.T) {
	g := startGateway(t, spawnConfig(t, 2, ""))
	eventually(t, 10*time.Second, "two healthy replicas", func() bool { return len(replicas(t, g)) == 2 })
	seen := map[string]bool{}
	for range 20 {
		status, body, _ := get(t, g.url+"/")
		if status != 200 || !strings.HasPrefix(body, "version=1 pid=") {
			t.Fatalf("got %d %q", status, body)
		}
		seen[body] = true
	}
	if len(seen) != 2 {
		t.Errorf("20 requests reached %d replicas, want both", len(seen))
	}
	pids := replicas(t, g)
	if err := g.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	for addr, pid := range pids {
		eventually(t, 5*time.Second, "replica "+addr+" gone after shutdown", func() bool { return !alive(pid) })
	}
}

// TestKilledReplicaComesBack is the kill -9 acceptance check in test form:
// under steady load, the other replica serves throughout, the killed one
// is back within its backoff, and at most the requests in flight on it fail.
func TestKilledReplicaComesBack(t *testing.T) {
	g := startGateway(t, spawnConfig(t, 2, ""))
	eventually(t, 10*time.Second, "two healthy replicas", func() bool { return len(replicas(t, g)) == 2 })
	before := replicas(t, g)

	const clients = 4
	traffic := startTraffic(g.url+"/", "GET", "", clients)
	time.Sleep(300 * time.Millisecond)

	var victimAddr string
	var victimPID int64
	for a, p := range before {
		victimAddr, victimPID = a, p
		break
	}
	if err := syscall.Kill(int(victimPID), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	eventually(t, 5*time.Second, "killed replica back with a new pid", func() bool {
		now := replicas(t, g)
		return now[victimAddr] != 0 && now[victimAddr] != victimPID && len(now) == 2
	})
	back := time.Since(killed)
	time.Sleep(300 * time.Millisecond)
	total, failed, _, _ := traffic.stop()

	t.Logf("replica back %v after kill -9; %d requests, %d failed", back.Round(time.Millisecond), total, failed)
	if failed > clients {
		t.Fatalf("%d requests failed; at most the %d that could be in flight on the killed replica may", failed, clients)
	}
	if !strings.Contains(metricsText(t, g), `sluice_spawned_worker_restarts_total{pool="w"} 1`) {
		t.Errorf("restart not counted in sluice_spawned_worker_restarts_total")
	}
}

func TestReloadScalesReplicas(t *testing.T) {
	g := startGateway(t, spawnConfig(t, 1, ""))
	eventually(t, 10*time.Second, "one replica", func() bool { return len(replicas(t, g)) == 1 })
	first := replicas(t, g)

	replaceFile(t, g.path, spawnConfig(t, 3, ""))
	eventually(t, 10*time.Second, "three replicas", func() bool { return len(replicas(t, g)) == 3 })
	for addr, pid := range first {
		if replicas(t, g)[addr] != pid {
			t.Fatalf("scaling up replaced the running replica %s", addr)
		}
	}
	three := replicas(t, g)

	replaceFile(t, g.path, spawnConfig(t, 1, ""))
	eventually(t, 10*time.Second, "back to one replica", func() bool { return len(replicas(t, g)) == 1 })
	for addr, pid := range three {
		if _, kept := replicas(t, g)[addr]; !kept {
			eventually(t, 5*time.Second, "removed replica "+addr+" exits", func() bool { return !alive(pid) })
		}
	}
}

// TestChangedCommandRollsWithoutFailures: a new command replaces the
// replicas one at a time, each new one healthy before an old one stops,
// and no request fails meanwhile.
func TestChangedCommandRollsWithoutFailures(t *testing.T) {
	g := startGateway(t, spawnConfig(t, 2, "", "version=1"))
	eventually(t, 10*time.Second, "two replicas", func() bool { return len(replicas(t, g)) == 2 })
	old := replicas(t, g)

	traffic := startTraffic(g.url+"/", "GET", "", 4)
	replaceFile(t, g.path, spawnConfig(t, 2, "", "version=2", "slowstart=300ms"))
	eventually(t, 20*time.Second, "every replica on the new command", func() bool {
		for range 10 {
			if _, body, _ := get(t, g.url+"/"); !strings.HasPrefix(body, "version=2") {
				return false
			}
		}
		return len(replicas(t, g)) == 2
	})
	total, failed, _, first := traffic.stop()
	if failed > 0 {
		t.Fatalf("%d of %d requests failed during the rollout (first: %s)", failed, total, first)
	}
	for addr, pid := range old {
		eventually(t, 5*time.Second, "old replica "+addr+" exits", func() bool { return !alive(pid) })
	}
	t.Logf("rollout under load: %d requests, none failed", total)
}

func TestWorkerIgnoringSIGTERMIsKilled(t *testing.T) {
	g := startGateway(t, strings.Replace(spawnConfig(t, 1, "", "ignore-term"), "stop_timeout: 2s", "stop_timeout: 300ms", 1))
	eventually(t, 10*time.Second, "one replica", func() bool { return len(replicas(t, g)) == 1 })
	var pid int64
	for _, p := range replicas(t, g) {
		pid = p
	}
	start := time.Now()
	if err := g.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("worker that ignores SIGTERM still alive after shutdown")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown took %v with stop_timeout 300ms", d)
	}
}

func TestUnhealthyWorkerNeverTakesTraffic(t *testing.T) {
	g := startGateway(t, strings.Replace(spawnConfig(t, 1, "", "unhealthy"), "stop_timeout: 2s", "stop_timeout: 2s\n      start_timeout: 300ms", 1))
	var v poolsView
	eventually(t, 10*time.Second, "restarted for never becoming healthy", func() bool {
		adminJSON(t, g.admin+"/admin/pools", &v)
		return len(v.Pools[0].Backends) == 1 && v.Pools[0].Backends[0].Restarts >= 1
	})
	if status, body, _ := get(t, g.url+"/"); status != 503 || !strings.Contains(body, `"unavailable"`) {
		t.Fatalf("request to a pool with no healthy replica: %d %s, want 503 unavailable", status, body)
	}
	if status, _, _ := get(t, g.admin+"/readyz"); status != 503 {
		t.Fatalf("/readyz with no healthy replica: %d, want 503", status)
	}
}

// TestRollInPlaceWithoutSpareAddress: with as many backends as replicas
// there is no spare address, so each old replica stops before its
// replacement starts at the same address; the other replica serves
// meanwhile, so no request fails.
func TestRollInPlaceWithoutSpareAddress(t *testing.T) {
	a, b := testutil.RestartableAddr(t), testutil.RestartableAddr(t)
	conf := func(version string) string {
		return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  w:
    backends: [%s, %s]
    spawn:
      command: [%q, spawn-test-worker, "{addr}", "version=%s"]
routes:
  - {name: main, match: {path_prefix: /}, pool: w}
`, a, b, os.Args[0], version)
	}
	g := startGateway(t, conf("1"))
	eventually(t, 10*time.Second, "two replicas", func() bool { return len(replicas(t, g)) == 2 })

	traffic := startTraffic(g.url+"/", "GET", "", 3)
	replaceFile(t, g.path, conf("2"))
	eventually(t, 20*time.Second, "both addresses on the new command", func() bool {
		var v poolsView
		adminJSON(t, g.admin+"/admin/pools", &v)
		if len(v.Pools[0].Backends) != 2 {
			return false
		}
		for range 10 {
			if _, body, _ := get(t, g.url+"/"); !strings.HasPrefix(body, "version=2") {
				return false
			}
		}
		return len(replicas(t, g)) == 2
	})
	if total, failed, _, first := traffic.stop(); failed > 0 {
		t.Fatalf("%d of %d requests failed during an in-place rollout (first: %s)", failed, total, first)
	}
	if got := replicas(t, g); got[a] == 0 || got[b] == 0 {
		t.Fatalf("replicas after the rollout: %v, want one on each configured address", got)
	}
}
