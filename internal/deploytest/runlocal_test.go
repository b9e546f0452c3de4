package deploytest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// TestRunLocalCheck runs deploy/nginx-compat/run-local.sh --check: the
// docker-compose stack as local processes (a real redis-server, three
// workers, the gateway on TLS with the sample certificate), from the same
// gateway.yaml, and its smoke check. It must exit 0, having seen an https
// prediction and a 301 from plain http, and leave no process behind.
func TestRunLocalCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole stack; skipped with -short")
	}
	root := deployRepoRoot(t)
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	runLocalDeps(t, root)

	// The script's own binaries would go to bin/ through make build; the
	// test builds them into a temporary directory instead, so that a test
	// run never replaces what a developer has in bin/.
	bin := testutil.Build(t, "gateway", "modelworker")

	// The script picks free ports from the base up. The base is below the
	// kernel's ephemeral range, where testutil.ClosedAddr finds ports that
	// other tests expect nothing to listen on, and random, so that two runs
	// at once rarely probe the same ports.
	base := 21000 + rand.IntN(10000)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "deploy", "nginx-compat", "run-local.sh"), "--check")
	cmd.Dir = root
	cmd.Env = runLocalEnv("RUN_LOCAL_PORT_BASE="+strconv.Itoa(base), "RUN_LOCAL_BIN="+bin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group: on a timeout the script gets SIGTERM (its trap
	// stops what it started), and whatever is left gets SIGKILL below.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	err := cmd.Wait()
	left := runLocalLeftovers(pgid, 5*time.Second)
	if len(left) > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		t.Errorf("run-local.sh left processes behind: %s", strings.Join(left, "; "))
	}

	switch {
	case ctx.Err() != nil:
		t.Fatalf("run-local.sh --check did not finish within 3 minutes:\n%s", out.String())
	case err != nil:
		t.Fatalf("run-local.sh --check: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"ok   https prediction: POST https://localhost:",
		`"prediction":`,
		"ok   redirect: GET http://localhost:",
		"-> 301 https://localhost:",
		"smoke check passed",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("run-local.sh --check output lacks %q:\n%s", want, out.String())
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("run-local.sh --check:\n%s", out.String())
	}
}

// runLocalDeps makes sure redis-server and curl are installed, installing
// them from Debian packages as the script would, or skips the test saying
// why they cannot be.
func runLocalDeps(t *testing.T, root string) {
	t.Helper()
	missing := false
	for _, c := range []string{"redis-server", "curl"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = true
		}
	}
	if !missing {
		return
	}
	out, err := exec.Command(filepath.Join(root, "scripts", "deps.sh"), "redis-server=redis-server", "curl=curl").CombinedOutput()
	if err != nil {
		t.Skipf("redis-server or curl is not installed and cannot be (scripts/deps.sh: %v):\n%s", err, out)
	}
}

// runLocalEnv is the test's environment without the variables that would
// steer the script (ports, binaries, gateway.yaml's addresses), plus extra.
func runLocalEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "RUN_LOCAL_") || strings.HasPrefix(name, "SLUICE_") || strings.HasPrefix(name, "WORKER_V") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// runLocalLeftovers waits up to wait for the processes of process group
// pgid to exit, and describes those still running then. Zombies do not
// count: they hold no port and no memory.
func runLocalLeftovers(pgid int, wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		var left []string
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				continue // gone meanwhile
			}
			// pid (comm) state ppid pgrp ...; comm may hold spaces.
			i := bytes.LastIndexByte(stat, ')')
			if i < 0 {
				continue
			}
			f := strings.Fields(string(stat[i+1:]))
			if len(f) < 3 || f[0] == "Z" || f[2] != strconv.Itoa(pgid) {
				continue
			}
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			left = append(left, fmt.Sprintf("pid %d: %s", pid, strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))))
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}
