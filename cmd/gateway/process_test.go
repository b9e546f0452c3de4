package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestBinaryReloadsOnSIGHUPAndDrainsOnSIGTERM runs the real binary: SIGHUP
// reloads the config (the log must show a reload the signal triggered,
// whether it applied the edit or found the watcher had already), and
// SIGTERM lets an in-flight request finish and exits 0.
func TestBinaryReloadsOnSIGHUPAndDrainsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(testutil.Build(t, "gateway"), "gateway")
	entered := make(chan struct{}, 1)
	a := testutil.Named(t, "a")
	b := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/slow" {
			entered <- struct{}{}
			time.Sleep(500 * time.Millisecond)
		}
		ctx.SetBodyString("b")
	})
	listen, admin := freeAddr(t), freeAddr(t)
	conf := func(pool string) string {
		return fmt.Sprintf(`server: {listen: %q}
admin: {listen: %q}
pools: {a: {backends: [%s]}, b: {backends: [%s]}}
routes: [{name: main, pool: %s}]
`, listen, admin, a, b, pool)
	}
	dir := t.TempDir()
	path := testutil.WriteFile(t, dir, "gateway.yaml", conf("a"))

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

	client := &http.Client{Timeout: 5 * time.Second}
	body := func(p string) string {
		resp, err := client.Get("http://" + listen + p)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for body("/") != "a" {
		if time.Now().After(deadline) {
			t.Fatal("gateway did not start serving")
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := os.WriteFile(path, []byte(conf("b")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(2 * time.Second)
	for body("/") != "b" {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not apply the new config")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if !strings.Contains(logs.String(), "trigger=signal") {
		t.Fatalf("no reload triggered by SIGHUP in the log:\n%s", logs.String())
	}

	slow := make(chan string, 1)
	go func() { slow <- body("/slow") }()
	<-entered
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := <-slow; got != "b" {
		t.Fatalf("in-flight request during drain got %q", got)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("gateway exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not exit after SIGTERM")
	}
	if !strings.Contains(logs.String(), "stopped") {
		t.Errorf("no stop line in the log:\n%s", logs.String())
	}
}

// TestTwoProcessesAssignKeysIdentically is acceptance point 3 of the
// traffic strategies: two gateway processes running the same config file
// give each of 10,000 keys the same variant, with no shared state.
func TestTwoProcessesAssignKeysIdentically(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(testutil.Build(t, "gateway"), "gateway")
	a, b := testutil.Named(t, "a"), testutil.Named(t, "b")
	path := testutil.WriteFile(t, t.TempDir(), "gateway.yaml", fmt.Sprintf(`
server: {listen: "127.0.0.1:${PORT}"}
admin: {listen: "127.0.0.1:${ADMIN_PORT}"}
pools: {pa: {backends: [%s]}, pb: {backends: [%s]}}
routes:
  - name: ab
    split:
      sticky: header:X-User-Id
      salt: ab-test-1
      variants: [{name: control, pool: pa, weight: 90}, {name: treatment, pool: pb, weight: 10}]
`, a, b))

	var urls []string
	for range 2 {
		listen, admin := freeAddr(t), freeAddr(t)
		_, port, _ := net.SplitHostPort(listen)
		_, adminPort, _ := net.SplitHostPort(admin)
		cmd := exec.Command(bin, "-config", path)
		cmd.Env = append(os.Environ(), "PORT="+port, "ADMIN_PORT="+adminPort)
		var logs testutil.SyncBuffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("gateway log:\n%s", logs.String())
			}
		})
		urls = append(urls, "http://"+listen+"/")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	variant := func(url, key string) string {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("X-User-Id", key)
		resp, err := client.Do(req)
		if err != nil {
			return "error: " + err.Error()
		}
		resp.Body.Close()
		return resp.Header.Get("X-Sluice-Variant")
	}
	for _, u := range urls {
		deadline := time.Now().Add(10 * time.Second)
		for variant(u, "warm-up") == "" || strings.HasPrefix(variant(u, "warm-up"), "error") {
			if time.Now().After(deadline) {
				t.Fatalf("gateway at %s did not start", u)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	treatment := 0
	for i := range 10000 {
		key := fmt.Sprintf("user-%05d", i)
		x, y := variant(urls[0], key), variant(urls[1], key)
		if x != y || (x != "control" && x != "treatment") {
			t.Fatalf("key %s: first gateway says %q, second %q", key, x, y)
		}
		if x == "treatment" {
			treatment++
		}
	}
	t.Logf("10,000 keys assigned identically by both processes; %d (%.1f%%) to treatment", treatment, float64(treatment)/100)
}
