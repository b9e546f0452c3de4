package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

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
	bin := filepath.Join(t.TempDir(), "gateway")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
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
	var logs syncBuffer
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
