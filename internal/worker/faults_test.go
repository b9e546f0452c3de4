package worker

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

func TestConfigValidateNamesEveryProblem(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // substrings; none means valid
	}{
		{"zero", Config{}, nil},
		{"all set", Config{Latency: time.Millisecond, Jitter: time.Second, FailRate: 0.5, FailStatus: 503, HangRate: 0.5,
			Timestamp: true, Perturb: Perturbations{{"confidence", 1}, {"probabilities.setosa", 0}}}, nil},
		{"perturb amounts", Config{Perturb: Perturbations{{"confidence", -1}, {"probabilities.setosa", math.NaN()},
			{"probabilities.versicolor", math.Inf(1)}, {"probabilities.virginica", 1.5}}},
			[]string{`-perturb "confidence": the amount must be a finite number from 0 to 1, got -1`,
				`-perturb "probabilities.setosa": the amount must be a finite number from 0 to 1, got NaN`, "got +Inf", "got 1.5"}},
		{"perturb a field twice", Config{Perturb: Perturbations{{"confidence", 0.1}, {"confidence", 0.2}, {"confidence", 0.3}}},
			[]string{`-perturb names "confidence" more than once: give each field once`}},
		{"rate above 1", Config{FailRate: 1.5}, []string{"-fail-rate must be a fraction from 0 to 1, got 1.5"}},
		{"negative rate", Config{HangRate: -0.1}, []string{"-hang-rate must be a fraction from 0 to 1, got -0.1"}},
		{"NaN rate", Config{FailRate: math.NaN()}, []string{"-fail-rate must be a fraction from 0 to 1, got NaN"}},
		{"rates past 1 together", Config{FailRate: 0.6, HangRate: 0.6}, []string{"-fail-rate + -hang-rate must not pass 1"}},
		{"status too low", Config{FailStatus: 99}, []string{"-fail-status must be an HTTP status from 100 to 599, got 99"}},
		{"status too high", Config{FailStatus: 600}, []string{"got 600"}},
		{"negative latency", Config{Latency: -time.Second}, []string{"-latency must not be negative"}},
		{"everything at once", Config{FailRate: 2, HangRate: -1, FailStatus: 1000, Jitter: -1},
			[]string{"-fail-rate", "-hang-rate", "-fail-status", "-jitter"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if !wantErrors(t, err, tc.want) {
				return
			}
			if _, err := New(loadModel(t, "iris-v1.json"), tc.cfg); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}

// TestFailRateFailsPredictionsOnly: with -fail-rate 1 every prediction
// gets -fail-status and a JSON error, and nothing else does.
func TestFailRateFailsPredictionsOnly(t *testing.T) {
	w := startWorker(t, loadModel(t, "iris-v1.json"), Config{FailRate: 1, FailStatus: 503})
	for _, p := range []string{"/predict", "/v2/models/iris/infer"} {
		r := w.post(t, p, good)
		if r.status != 503 || !strings.Contains(errorMessage(t, r.body), "injected failure") {
			t.Errorf("%s: %d %s", p, r.status, r.body)
		}
	}
	for _, p := range []string{"/health", "/v2/health/ready", "/v2/health/live", "/v2/models/iris", "/model/info", "/metrics", "/v2"} {
		if r := w.get(t, p); r.status != 200 {
			t.Errorf("%s: %d %s", p, r.status, r.body)
		}
	}
	if text := string(w.get(t, "/metrics").body); !strings.Contains(text, `model_requests_total{model="iris",status="503",version="1"} 2`) {
		t.Errorf("metrics:\n%s", grepLines(text, "model_requests_total"))
	}
}

// TestFailAndHangRatesAreFractions draws the outcome of many requests
// with a fixed sequence of random numbers.
func TestFailAndHangRatesAreFractions(t *testing.T) {
	f := newFaults(Config{FailRate: 0.25, HangRate: 0.1}, nil)
	var next float64
	f.random = func() float64 { return next }
	counts := map[fault]int{}
	for i := range 1000 {
		next = float64(i) / 1000
		counts[f.decide()]++
	}
	if counts[faultHang] != 100 || counts[faultFail] != 250 || counts[faultNone] != 650 {
		t.Errorf("outcomes %v", counts)
	}
}

func TestLatencyAndJitter(t *testing.T) {
	f := newFaults(Config{Latency: 10 * time.Millisecond, Jitter: 4 * time.Millisecond}, nil)
	for _, tc := range []struct {
		r    float64
		want time.Duration
	}{{0, 6 * time.Millisecond}, {0.5, 10 * time.Millisecond}, {0.75, 12 * time.Millisecond}} {
		f.random = func() float64 { return tc.r }
		if got := f.delay(); got != tc.want {
			t.Errorf("draw %v: delay %v, want %v", tc.r, got, tc.want)
		}
	}
	// Jitter past the latency floors at zero.
	f = newFaults(Config{Latency: time.Millisecond, Jitter: 10 * time.Millisecond}, nil)
	f.random = func() float64 { return 0 }
	if got := f.delay(); got != 0 {
		t.Errorf("delay %v, want 0", got)
	}

	// Through the server: a prediction waits, a health check does not.
	w := startWorker(t, loadModel(t, "iris-v1.json"), Config{Latency: 80 * time.Millisecond})
	start := time.Now()
	if r := w.post(t, "/predict", good); r.status != 200 {
		t.Fatal(r.status)
	}
	if took := time.Since(start); took < 80*time.Millisecond {
		t.Errorf("prediction took %v with -latency 80ms", took)
	}
	start = time.Now()
	w.get(t, "/health")
	if took := time.Since(start); took > 60*time.Millisecond {
		t.Errorf("health check took %v: faults must not apply to it", took)
	}
}

// rawRequest opens a connection and sends one prediction request on it.
func rawRequest(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := "POST /predict HTTP/1.1\r\nHost: w\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(good)) + "\r\n\r\n" + good
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	return conn
}

// waitFor polls cond until it holds or two seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 2*time.Second, what, cond)
}

// TestHungRequestIsHeldUntilTheClientLeaves: with -hang-rate 1 a
// prediction gets no answer; the worker lets go of it when the client
// closes the connection, and health checks still answer meanwhile.
func TestHungRequestIsHeldUntilTheClientLeaves(t *testing.T) {
	w := startWorker(t, loadModel(t, "iris-v1.json"), Config{HangRate: 1})
	conn := rawRequest(t, w.addr)
	_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := conn.Read(make([]byte, 1)); n != 0 || !isTimeout(err) {
		t.Fatalf("a hung request was answered: %d bytes, %v", n, err)
	}
	waitFor(t, "the hang to be held", func() bool { return w.hangs.count() == 1 })
	if r := w.get(t, "/health"); r.status != 200 {
		t.Errorf("health during a hang: %d", r.status)
	}
	if text := string(w.get(t, "/metrics").body); !strings.Contains(text, `model_requests_total{model="iris",status="hung",version="1"} 1`) {
		t.Errorf("metrics:\n%s", grepLines(text, "model_requests_total"))
	}
	conn.Close()
	waitFor(t, "the hang to be let go", func() bool { return w.hangs.count() == 0 })
}

// TestShutdownEndsHungRequests: Shutdown closes hung connections, waits
// for the goroutines that held them, and returns; none is left.
func TestShutdownEndsHungRequests(t *testing.T) {
	before := runtime.NumGoroutine()
	w := startWorker(t, loadModel(t, "iris-v1.json"), Config{HangRate: 1})
	var conns []net.Conn
	for range 5 {
		conns = append(conns, rawRequest(t, w.addr))
	}
	waitFor(t, "five hangs", func() bool { return w.hangs.count() == 5 })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if n := w.hangs.count(); n != 0 {
		t.Errorf("%d hangs held after shutdown", n)
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := bufio.NewReader(c).ReadByte(); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Errorf("connection %d after shutdown: %v, want EOF", i, err)
		}
	}
	w.client.CloseIdleConnections()
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before+2 })
}

// TestDrainFinishesRequestsInFlight: Shutdown waits for a slow request,
// which gets its answer.
func TestDrainFinishesRequestsInFlight(t *testing.T) {
	w := startWorker(t, loadModel(t, "iris-v1.json"), Config{Latency: 300 * time.Millisecond})
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		var req fasthttp.Request
		var resp fasthttp.Response
		req.Header.SetMethod("POST")
		req.SetRequestURI("http://" + w.addr + "/predict")
		req.SetBodyString(good)
		err := w.client.Do(&req, &resp)
		done <- result{resp.StatusCode(), err}
	}()
	time.Sleep(100 * time.Millisecond) // the request is in its injected latency
	start := time.Now()
	if err := w.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || r.status != 200 {
		t.Fatalf("in-flight request: %d %v", r.status, r.err)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("shutdown took %v: it did not wait for the request", took)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}
