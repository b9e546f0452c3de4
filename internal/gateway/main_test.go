package gateway

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary double as a worker process for the spawn
// tests: `gateway.test spawn-test-worker ADDR [mode...]`.
func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && os.Args[1] == "spawn-test-worker" {
		testWorker(os.Args[2], os.Args[3:])
		return
	}
	os.Exit(m.Run())
}

// testWorker serves "version=V pid=P" on every path and 200 on /health.
// Modes: version=V, slowstart=DURATION (no listening until then),
// unhealthy (/health answers 503), ignore-term (SIGTERM is ignored).
func testWorker(addr string, modes []string) {
	version := "1"
	health := http.StatusOK
	for _, m := range modes {
		k, v, _ := strings.Cut(m, "=")
		switch k {
		case "version":
			version = v
		case "slowstart":
			d, _ := time.ParseDuration(v)
			time.Sleep(d)
		case "unhealthy":
			health = http.StatusServiceUnavailable
		case "ignore-term":
			signal.Ignore(syscall.SIGTERM)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(health) })
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "version=%s pid=%d", version, os.Getpid())
	})
	fmt.Printf("test worker listening on %s\n", addr)
	if err := http.ListenAndServe(addr, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
