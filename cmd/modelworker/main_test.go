package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const servedModel = "../../models/iris-v1.json"

// TestServeFlagErrors: bad flags exit 2 naming every problem at once,
// before anything listens.
func TestServeFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"no model", []string{"-listen", "127.0.0.1:0"}, []string{"-model is required"}},
		{"rates and status", []string{"-model", servedModel, "-fail-rate", "1.5", "-hang-rate", "-1", "-fail-status", "42"},
			[]string{"-fail-rate must be a fraction from 0 to 1, got 1.5", "-hang-rate must be a fraction from 0 to 1, got -1", "-fail-status must be an HTTP status from 100 to 599, got 42"}},
		{"rates past 1 together", []string{"-model", servedModel, "-fail-rate", "0.7", "-hang-rate", "0.7"}, []string{"must not pass 1"}},
		{"negative latency", []string{"-model", servedModel, "-latency", "-5ms"}, []string{"-latency must not be negative"}},
		{"log format", []string{"-model", servedModel, "-log-format", "xml"}, []string{"-log-format must be text or json"}},
		{"not a duration", []string{"-model", servedModel, "-jitter", "2"}, []string{"invalid value \"2\" for flag -jitter"}},
		{"stray argument", []string{"-model", servedModel, "extra"}, []string{`unexpected argument "extra"`}},
		{"perturb malformed", []string{"-model", servedModel, "-perturb", "confidence"},
			[]string{`invalid value "confidence" for flag -perturb: "confidence" is not FIELD=AMOUNT`}},
		{"perturb amount not a number", []string{"-model", servedModel, "-perturb", "confidence=1e-7,probabilities.setosa=tiny"},
			[]string{`the amount "tiny" is not a number`}},
		{"perturb amounts out of range", []string{"-model", servedModel, "-perturb", "confidence=-0.1", "-perturb", "probabilities.setosa=NaN,probabilities.virginica=Inf"},
			[]string{`-perturb "confidence": the amount must be a finite number from 0 to 1, got -0.1`, "got NaN", "got +Inf"}},
		{"perturb unknown class", []string{"-model", servedModel, "-perturb", "confidence=1e-7,probabilities.rose=1e-7"},
			[]string{`-perturb: unknown field "probabilities.rose" (model "iris" has no class "rose"): ` +
				"the fields are confidence, probabilities.setosa, probabilities.versicolor, probabilities.virginica"}},
		{"perturb unknown field", []string{"-model", servedModel, "-perturb", "latency=0.5"},
			[]string{`unknown field "latency"`, "the fields are confidence, probabilities.setosa"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(append([]string{"serve"}, tc.args...), &stdout, &stderr); code != 2 {
				t.Errorf("exit %d, want 2; stderr:\n%s", code, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

func TestModelThatCannotLoadExits1(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"-model", filepath.Join(t.TempDir(), "none.json"), "-listen", "127.0.0.1:0"}, io.Discard, &stderr); code != 1 {
		t.Errorf("exit %d; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "none.json") {
		t.Errorf("stderr does not name the file:\n%s", stderr.String())
	}
}

func TestCommands(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"version"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "sluice modelworker") {
		t.Errorf("version: %d %q", code, stdout.String())
	}
	stdout.Reset()
	if code := run([]string{"help"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "modelworker train") {
		t.Errorf("help: %d %q", code, stdout.String())
	}
	stderr.Reset()
	if code := run([]string{"frobnicate"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %d %q", code, stderr.String())
	}
	// train is dispatched to trainMain: without flags it is a usage error.
	stderr.Reset()
	if code := run([]string{"train"}, &stdout, &stderr); code != 2 {
		t.Errorf("train without flags: exit %d; stderr:\n%s", code, stderr.String())
	}
}

// outputBuffer collects a process's output while it runs.
type outputBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *outputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var listenLine = regexp.MustCompile(`msg="model worker serving".* listen=(\S+)`)

// startWorkerBinary builds the worker, starts it on a free port with args, and
// returns the process, its address and its stderr.
func startWorkerBinary(t *testing.T, args ...string) (*exec.Cmd, string, *outputBuffer) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "modelworker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	stderr := &outputBuffer{}
	cmd := exec.Command(bin, append([]string{"-model", servedModel, "-listen", "127.0.0.1:0"}, args...)...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := listenLine.FindStringSubmatch(stderr.String()); m != nil {
			return cmd, m[1], stderr
		}
		if time.Now().After(deadline) {
			t.Fatalf("no start line:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitExit waits for the process and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("still running after %v", within)
		return -1
	}
}

// TestBinaryLogsOneLineAndDrainsOnSIGTERM runs the real binary: its start
// line names the model, version, kind and address; a request in flight
// (held by -latency) when SIGTERM arrives gets its answer; a hung request
// is dropped; the process exits 0; and no request was logged.
func TestBinaryLogsOneLineAndDrainsOnSIGTERM(t *testing.T) {
	cmd, addr, stderr := startWorkerBinary(t, "-latency", "400ms")
	for _, want := range []string{"model=iris", "version=1", "kind=softmax", "listen=" + addr} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("start line lacks %s:\n%s", want, stderr.String())
		}
	}
	type result struct {
		status int
		body   string
		err    error
	}
	answered := make(chan result, 1)
	go func() {
		resp, err := http.Post("http://"+addr+"/predict", "application/json", strings.NewReader(`{"input":[5.1,3.5,1.4,0.2]}`))
		if err != nil {
			answered <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		answered <- result{resp.StatusCode, string(b), err}
	}()
	time.Sleep(150 * time.Millisecond) // the request is waiting out its latency
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, 10*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM:\n%s", code, stderr.String())
	}
	r := <-answered
	if r.err != nil || r.status != 200 || !strings.Contains(r.body, `"prediction":"setosa"`) {
		t.Errorf("request in flight at SIGTERM: %d %q %v", r.status, r.body, r.err)
	}
	if n := strings.Count(stderr.String(), "\n"); n != 3 { // start, signal, stopped
		t.Errorf("%d log lines, want 3 (no per-request logs):\n%s", n, stderr.String())
	}
}

// TestBinaryStampsAndPerturbs runs the binary with -timestamp and
// -perturb in both its repeated and comma-separated forms: the start line
// shows them, and two answers to the same request differ within the
// amounts but agree on the prediction.
func TestBinaryStampsAndPerturbs(t *testing.T) {
	cmd, addr, stderr := startWorkerBinary(t, "-timestamp", "-perturb", "confidence=1e-3",
		"-perturb", "probabilities.setosa=1e-3,probabilities.virginica=0.5")
	for _, want := range []string{"timestamp=true", `perturb="confidence=0.001,probabilities.setosa=0.001,probabilities.virginica=0.5"`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("start line lacks %s:\n%s", want, stderr.String())
		}
	}
	type answer struct {
		Prediction    string             `json:"prediction"`
		Probabilities map[string]float64 `json:"probabilities"`
		Confidence    float64            `json:"confidence"`
		Timestamp     string             `json:"timestamp"`
		Model         string             `json:"model"`
		ModelVersion  string             `json:"model_version"`
	}
	var answers [2]answer
	for i := range answers {
		before := time.Now()
		resp, err := http.Post("http://"+addr+"/predict", "application/json", strings.NewReader(`{"input":[5.1,3.5,1.4,0.2]}`))
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(resp.Body)
		dec.DisallowUnknownFields()
		err = dec.Decode(&answers[i])
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("answer %d: %d %v", i, resp.StatusCode, err)
		}
		a := answers[i]
		ts, err := time.Parse(time.RFC3339Nano, a.Timestamp)
		if err != nil || ts.Location() != time.UTC || ts.Before(before) || ts.After(time.Now()) {
			t.Errorf("answer %d: timestamp %q (%v)", i, a.Timestamp, err)
		}
		// The plain answer of iris-v1 to this row: confidence 0.997.
		if a.Prediction != "setosa" || math.Abs(a.Confidence-0.997) > 0.002 || math.Abs(a.Probabilities["virginica"]) > 0.5 {
			t.Errorf("answer %d: %+v", i, a)
		}
	}
	a, b := answers[0], answers[1]
	if a.Confidence == b.Confidence || a.Probabilities["setosa"] == b.Probabilities["setosa"] || a.Probabilities["virginica"] == b.Probabilities["virginica"] {
		t.Errorf("two answers agree on a perturbed number: %+v %+v", a, b)
	}
	if a.Probabilities["versicolor"] != b.Probabilities["versicolor"] {
		t.Errorf("versicolor was perturbed: %v %v", a.Probabilities["versicolor"], b.Probabilities["versicolor"])
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, 10*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM:\n%s", code, stderr.String())
	}
}

// TestBinaryExitsWithAHungRequest: SIGINT ends a hung request instead of
// waiting for its client, and the client sees the connection close.
func TestBinaryExitsWithAHungRequest(t *testing.T) {
	cmd, addr, stderr := startWorkerBinary(t, "-hang-rate", "1")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"input":[5.1,3.5,1.4,0.2]}`
	if _, err := io.WriteString(conn, "POST /predict HTTP/1.1\r\nHost: w\r\nContent-Length: 27\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	// The worker's health check answers while the prediction hangs.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/health", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health during a hang: %v %v", resp, err)
	}
	resp.Body.Close()

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, 10*time.Second); code != 0 {
		t.Errorf("exit %d after SIGINT:\n%s", code, stderr.String())
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("exit took %v", took)
	}
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if line, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
		t.Errorf("the hung request was answered: %q", line)
	}
}
