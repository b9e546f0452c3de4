package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// TestBinaryDrains500InFlightOnSIGTERM runs the real binary: 500 requests
// held ~1 s each by the backend are in flight when the process gets
// SIGTERM; all of them complete with 200 and Connection: close, a new
// connection after the signal is refused, and the process exits 0.
func TestBinaryDrains500InFlightOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const n = 500
	bin := filepath.Join(testutil.Build(t, "gateway"), "gateway")
	var entered atomic.Int64
	allIn := make(chan struct{})
	slow := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		if entered.Add(1) == n {
			close(allIn)
		}
		time.Sleep(time.Second)
		ctx.SetBodyString("finished")
	})
	listen, admin := freeAddr(t), freeAddr(t)
	path := testutil.WriteFile(t, t.TempDir(), "gateway.yaml", fmt.Sprintf(`
server: {listen: %q, drain_timeout: 20s}
admin: {listen: %q}
pools: {p: {backends: [%s], max_conns: 1000, timeout: 10s}}
routes: [{name: main, pool: p}]
`, listen, admin, slow))
	cmd := exec.Command(bin, "-config", path)
	var logs testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("gateway did not become ready")
		}
		time.Sleep(20 * time.Millisecond)
	}

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}}
	defer client.CloseIdleConnections()
	type result struct {
		status int
		close  bool
		err    error
	}
	results := make(chan result, n)
	for range n {
		go func() {
			resp, err := client.Get("http://" + listen + "/")
			if err != nil {
				results <- result{err: err}
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- result{status: resp.StatusCode, close: resp.Close}
		}()
	}
	select {
	case <-allIn:
	case <-time.After(20 * time.Second):
		t.Fatalf("only %d of %d requests reached the backend", entered.Load(), n)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	refused := false
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", listen, 100*time.Millisecond)
		if err != nil {
			refused = true
			break
		}
		c.Close()
	}
	if !refused {
		t.Errorf("the client port still accepted new connections 500ms after SIGTERM")
	}
	ok, noClose, failed := 0, 0, 0
	var first string
	for range n {
		r := <-results
		if r.err != nil || r.status != 200 {
			failed++
			if first == "" {
				first = fmt.Sprintf("status %d, %v", r.status, r.err)
			}
			continue
		}
		ok++
		if !r.close {
			noClose++
		}
	}
	if ok != n {
		t.Errorf("%d of %d in-flight requests completed with 200; %d failed, first: %s", ok, n, failed, first)
	}
	if noClose > 0 {
		t.Errorf("%d responses during the drain lack Connection: close", noClose)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("gateway exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("gateway did not exit after SIGTERM")
	}
}
