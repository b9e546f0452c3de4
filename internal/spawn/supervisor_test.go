package spawn

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/backend"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/testutil"
)

// The test binary doubles as the worker the supervisor spawns:
// `spawn.test spawn-test-worker ADDR VERSION`.
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == "spawn-test-worker" {
		testWorker(os.Args[2], os.Args[3])
		return
	}
	os.Exit(m.Run())
}

// testWorker answers "version=V" on every path (200 on /health too), with
// keep-alive, and dies at once on SIGTERM.
func testWorker(addr, version string) {
	err := http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "version=%s", version)
	}))
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func poolConfig(t *testing.T, addr, version string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(fmt.Appendf(nil, `
pools:
  w:
    backends: [%s]
    spawn: {command: [%q, spawn-test-worker, "{addr}", %q]}
routes:
  - {name: main, match: {path_prefix: /}, pool: w}
`, addr, os.Args[0], version))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestInPlaceReplacementGetsNoStaleConnection: a worker replaced at its
// own address (no spare one) leaves keep-alive connections to the old
// process in the pool of whoever kept the address leased throughout, as a
// config snapshot does when the membership change and the new replica
// arrive in one reload. They must be closed before the new process takes
// traffic, or its first request goes out on a dead connection and fails.
func TestInPlaceReplacementGetsNoStaleConnection(t *testing.T) {
	addr := testutil.RestartableAddr(t)
	reg := backend.NewRegistry()
	sup := New(slog.New(slog.DiscardHandler), io.Discard, reg, func(string) {}, nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sup.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	lease := reg.Lease()
	t.Cleanup(lease.Release)
	b, tr := lease.Acquire(addr, backend.Settings{MaxConns: 4, Timeout: 5 * time.Second})

	get := func() (string, error) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + addr + "/predict")
		if err := tr.Do(req, resp, time.Now().Add(5*time.Second)); err != nil {
			return "", err
		}
		return string(resp.Body()), nil
	}

	sup.Reconcile(poolConfig(t, addr, "1"))
	testutil.Eventually(t, 10*time.Second, "the first worker in rotation", b.Available)
	if body, err := get(); err != nil || body != "version=1" {
		t.Fatalf("first worker: %q, %v", body, err)
	}
	first := b.SpawnedPID()

	sup.Reconcile(poolConfig(t, addr, "2"))
	testutil.Eventually(t, 10*time.Second, "the replacement in rotation", func() bool {
		pid := b.SpawnedPID()
		return pid != 0 && pid != first && b.Available()
	})
	if n := tr.OpenConns(); n != 0 {
		t.Fatalf("%d connections to the replaced process still pooled once its successor is in rotation", n)
	}
	if body, err := get(); err != nil || body != "version=2" {
		t.Fatalf("the first request to the replacement: %q, %v; want version=2", body, err)
	}
}
