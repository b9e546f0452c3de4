package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// testGateway is a gateway started from a real config file in a temp dir,
// listening on loopback ports the kernel picked.
type testGateway struct {
	*Gateway
	dir, path string
	url       string // client base URL
	admin     string // admin base URL
}

// startGateway writes yaml as the config file and starts a gateway on it.
// The yaml's server and admin listen addresses should be 127.0.0.1:0.
func startGateway(t *testing.T, yaml string) *testGateway {
	t.Helper()
	dir := t.TempDir()
	path := testutil.WriteFile(t, dir, "gateway.yaml", yaml)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	g, err := New(path, log)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	return &testGateway{Gateway: g, dir: dir, path: path,
		url: "http://" + g.ClientAddr(), admin: "http://" + g.AdminAddr()}
}

// onePool is a minimal config: one route "main" on path prefix / to one
// pool "p" of the given backends, plus extra YAML appended to the route.
func onePool(backends []string, routeExtra string) string {
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  p: {backends: [%s], timeout: 2s}
routes:
  - name: main
    match: {path_prefix: /}
    pool: p
%s`, strings.Join(backends, ", "), routeExtra)
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// get sends a GET and returns status, body and headers.
func get(t *testing.T, url string, headers ...string) (int, string, http.Header) {
	t.Helper()
	return send(t, "GET", url, "", headers...)
}

func send(t *testing.T, method, url, body string, headers ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if strings.EqualFold(headers[i], "Host") {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// errorBody is the gateway's JSON error shape.
type errorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	} `json:"error"`
}

func decodeError(t *testing.T, body []byte) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body is not the JSON error shape: %v: %q", err, body)
	}
	return e
}

// adminJSON GETs an admin endpoint and decodes it into v.
func adminJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// eventually polls cond until it holds or timeout passes.
var eventually = testutil.Eventually

// replaceFile writes data to a temp file beside path and renames it over
// path, as editors and config management tools do.
func replaceFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// traffic is steady client load: clients loops of one request, each on
// its own keep-alive connection, counting answers by status (0 for a
// transport error).
type traffic struct {
	stopCh chan struct{}
	wg     sync.WaitGroup
	total  atomic.Int64
	mu     sync.Mutex
	codes  map[int]int64
	first  string // the first failure
}

// startTraffic sends method url with body from clients loops until stop.
func startTraffic(url, method, body string, clients int) *traffic {
	tr := &traffic{stopCh: make(chan struct{}), codes: map[int]int64{}}
	for range clients {
		tr.wg.Go(func() {
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			for {
				select {
				case <-tr.stopCh:
					return
				default:
				}
				req, _ := http.NewRequest(method, url, strings.NewReader(body))
				resp, err := client.Do(req)
				status, answer := 0, []byte(nil)
				if err == nil {
					answer, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				tr.total.Add(1)
				tr.mu.Lock()
				tr.codes[status]++
				if status != 200 && tr.first == "" {
					tr.first = fmt.Sprintf("%d %s %v", status, answer, err)
				}
				tr.mu.Unlock()
			}
		})
	}
	return tr
}

// stop ends the load: requests sent, those not answered 200, answers by
// status, the first failure.
func (tr *traffic) stop() (total, failed int64, codes map[int]int64, first string) {
	close(tr.stopCh)
	tr.wg.Wait()
	total = tr.total.Load()
	return total, total - tr.codes[200], tr.codes, tr.first
}
