package gateway

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/testutil"
)

// twoPools is a config with pools a and b where route main points at pool;
// note makes each version's bytes distinct.
func twoPools(a, b, pool, note string) string {
	return fmt.Sprintf(`# %s
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  a: {backends: [%s]}
  b: {backends: [%s]}
routes:
  - {name: main, match: {path_prefix: /}, pool: %s}
`, note, a, b, pool)
}

type configView struct {
	Generation uint64 `json:"generation"`
	SHA256     string `json:"sha256"`
	LastError  *struct {
		SHA256 string   `json:"sha256"`
		Errors []string `json:"errors"`
	} `json:"last_error"`
}

func TestInvalidReloadKeepsServingAndIsReported(t *testing.T) {
	a, b := testutil.Named(t, "a"), testutil.Named(t, "b")
	g := startGateway(t, twoPools(a, b, "a", "v1"))

	bad := strings.Replace(twoPools(a, b, "b", "v2"), "pool: b", "pool: nope", 1) + "bogus_key: 1\n"
	replaceFile(t, g.path, bad)
	var cv configView
	eventually(t, 2*time.Second, "rejection shows at /admin/config", func() bool {
		adminJSON(t, g.admin+"/admin/config", &cv)
		return cv.LastError != nil
	})
	if cv.Generation != 1 || cv.LastError.SHA256 != config.Sum([]byte(bad)) || len(cv.LastError.Errors) != 2 {
		t.Fatalf("after a bad file: %+v, want generation 1 and two errors for the bad file's hash", cv)
	}
	for _, want := range []string{`line 8: routes[0].pool: unknown pool "nope"`, `line 9: unknown key "bogus_key"`} {
		if !strings.Contains(strings.Join(cv.LastError.Errors, "\n"), want) {
			t.Errorf("errors %q lack %q", cv.LastError.Errors, want)
		}
	}
	if _, body, _ := get(t, g.url+"/"); body != "a" {
		t.Fatalf("after a bad file the route answers %q, want the old pool a", body)
	}
	if !strings.Contains(metricsText(t, g), `sluice_config_reloads_total{result="failure"} 1`) {
		t.Errorf("failure not counted")
	}

	resp, err := httpClient.Post(g.admin+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("POST /admin/reload on a bad file: %d, want 422", resp.StatusCode)
	}

	replaceFile(t, g.path, twoPools(a, b, "b", "v3"))
	eventually(t, 2*time.Second, "fixed file applies", func() bool {
		_, body, _ := get(t, g.url+"/")
		return body == "b"
	})
	adminJSON(t, g.admin+"/admin/config", &cv)
	if cv.Generation != 2 || cv.LastError != nil {
		t.Fatalf("after the fix: %+v, want generation 2 and no error", cv)
	}
}

func TestReloadOfUnchangedFileKeepsGeneration(t *testing.T) {
	a, b := testutil.Named(t, "a"), testutil.Named(t, "b")
	yaml := twoPools(a, b, "a", "same")
	g := startGateway(t, yaml)
	replaceFile(t, g.path, yaml)
	gen, err := g.Reload("test")
	if err != nil || gen != 1 {
		t.Fatalf("reload of the same bytes: generation %d, err %v; want 1, nil", gen, err)
	}
}

func TestListenerChangeIsRejected(t *testing.T) {
	a, b := testutil.Named(t, "a"), testutil.Named(t, "b")
	g := startGateway(t, twoPools(a, b, "a", "v1"))
	changed := strings.Replace(twoPools(a, b, "b", "v2"), `server: {listen: "127.0.0.1:0"}`, `server: {listen: "127.0.0.1:0", idle_timeout: 5s}`, 1)
	testutil.WriteFile(t, g.dir, "gateway.yaml", changed)
	if _, err := g.Reload("test"); err == nil || !strings.Contains(err.Error(), "server.idle_timeout") {
		t.Fatalf("reload changing idle_timeout: %v, want it rejected naming the field", err)
	}
	if _, body, _ := get(t, g.url+"/"); body != "a" {
		t.Fatalf("a rejected reload changed routing: %q", body)
	}
}

func TestBackendStateSurvivesReload(t *testing.T) {
	a, b := testutil.Named(t, "a"), testutil.Named(t, "b")
	g := startGateway(t, twoPools(a, b, "a", "v1"))
	for range 3 {
		get(t, g.url+"/")
	}
	if _, err := os.Stat(g.path); err != nil {
		t.Fatal(err)
	}
	// v2 keeps a, drops b from every pool.
	v2 := strings.Replace(twoPools(a, b, "a", "v2"), "b: {backends: ["+b+"]}", "b: {backends: ["+a+"]}", 1)
	replaceFile(t, g.path, v2)
	if _, err := g.Reload("test"); err != nil {
		t.Fatal(err)
	}
	get(t, g.url+"/")
	var pools struct {
		Pools []struct {
			Name     string
			Backends []struct {
				Addr     string
				Requests uint64
			}
		}
	}
	adminJSON(t, g.admin+"/admin/pools", &pools)
	if got := pools.Pools[0].Backends[0].Requests; got != 4 {
		t.Fatalf("backend a has %d requests after the reload, want 4 (3 before, 1 after)", got)
	}
	eventually(t, 2*time.Second, "the dropped backend is released", func() bool { return g.registry.Len() == 1 })
}

// TestReloadUnderLoad is acceptance point 3 of the gateway core: the
// config is rewritten 50 times during 20 s of continuous load, alternating
// the route's pool, by rename, in place and by symlink swap, with invalid
// files in between. No request may fail; every valid version must take
// effect within 1 s; every invalid one must be rejected and reported while
// the previous version keeps serving. `make reload-check` runs it alone.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("20 s load test")
	}
	duration := 20 * time.Second
	if s := os.Getenv("SLUICE_RELOAD_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		duration = time.Duration(n) * time.Second
	}
	const rewrites = 50
	a, b := testutil.Named(t, "a"), testutil.Named(t, "b")
	g := startGateway(t, twoPools(a, b, "a", "v0"))
	versions := filepath.Join(g.dir, "versions")
	if err := os.Mkdir(versions, 0o755); err != nil {
		t.Fatal(err)
	}

	// Load: keep-alive clients hitting the route until told to stop.
	traffic := startTraffic(g.url+"/", "GET", "", 6)

	invalid := []func(string) string{
		func(s string) string { return s + "unknown_top_level: true\n" },
		func(s string) string { return strings.Replace(s, "pool: ", "pool: missing-", 1) },
		func(s string) string { return s + "routes: [this is: not: yaml\n" },
		func(s string) string { return strings.Replace(s, "backends: [", "backends: [not-an-address, ", 1) },
		func(string) string { return "" },
	}
	modes := []string{"rename", "in-place", "symlink"}
	pool, gen := "a", uint64(1)
	var applyTimes []time.Duration
	var rejected int
	step := duration / rewrites
	start := time.Now()
	for i := 0; i < rewrites; i++ {
		stepStart := time.Now()
		mode := modes[i%len(modes)]
		if i%5 == 4 { // every fifth write is broken
			bad := invalid[(i/5)%len(invalid)](twoPools(a, b, other(pool), fmt.Sprintf("bad %d", i)))
			writeConfig(t, g.path, versions, i, mode, bad)
			sum := config.Sum([]byte(bad))
			eventually(t, time.Second, fmt.Sprintf("write %d (%s, invalid) reported", i, mode), func() bool {
				var cv configView
				adminJSON(t, g.admin+"/admin/config", &cv)
				return cv.LastError != nil && cv.LastError.SHA256 == sum && len(cv.LastError.Errors) > 0 && cv.Generation == gen
			})
			if _, body, _ := get(t, g.url+"/"); body != pool {
				t.Fatalf("write %d (invalid): serving %q, want previous pool %q", i, body, pool)
			}
			rejected++
		} else {
			pool = other(pool)
			gen++
			writeConfig(t, g.path, versions, i, mode, twoPools(a, b, pool, fmt.Sprintf("version %d", i)))
			written := time.Now()
			eventually(t, time.Second, fmt.Sprintf("write %d (%s) to pool %s applied", i, mode, pool), func() bool {
				_, body, _ := get(t, g.url+"/")
				return body == pool
			})
			applyTimes = append(applyTimes, time.Since(written))
			if got := g.Snapshot().Generation; got != gen {
				t.Fatalf("write %d: generation %d, want %d", i, got, gen)
			}
		}
		time.Sleep(time.Until(stepStart.Add(step)))
	}
	total, failed, _, first := traffic.stop()

	sort.Slice(applyTimes, func(i, j int) bool { return applyTimes[i] < applyTimes[j] })
	t.Logf("%d rewrites in %v: %d applied (p50 %v, max %v after the write), %d rejected; %d requests, %d failed",
		rewrites, time.Since(start).Round(time.Millisecond), len(applyTimes), applyTimes[len(applyTimes)/2].Round(time.Millisecond),
		applyTimes[len(applyTimes)-1].Round(time.Millisecond), rejected, total, failed)
	if failed != 0 {
		t.Fatalf("%d of %d requests failed during reloads; first: %s", failed, total, first)
	}
	if total < 1000 {
		t.Fatalf("only %d requests were sent: the load was not continuous", total)
	}
}

func other(pool string) string {
	if pool == "a" {
		return "b"
	}
	return "a"
}

// writeConfig writes data as the config at path the way mode says:
// "rename" (temp file renamed over it), "in-place" (truncate and write,
// through the symlink if path is one) or "symlink" (a new file under
// versions/, and a new symlink to it renamed over path, as Kubernetes
// swaps ConfigMap contents).
func writeConfig(t *testing.T, path, versions string, i int, mode, data string) {
	t.Helper()
	switch mode {
	case "rename":
		replaceFile(t, path, data)
	case "in-place":
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	case "symlink":
		target := filepath.Join(versions, fmt.Sprintf("v%d.yaml", i))
		if err := os.WriteFile(target, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		link := path + ".link"
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(link, path); err != nil {
			t.Fatal(err)
		}
	}
}

func metricsText(t *testing.T, g *testGateway) string {
	t.Helper()
	_, body, _ := get(t, g.admin+"/metrics")
	return body
}
