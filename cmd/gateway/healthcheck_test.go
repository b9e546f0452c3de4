package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// `gateway healthcheck` is the image's HEALTHCHECK: it finds the admin
// listener in the config file and exits 0 only while /readyz says ready.
func TestHealthcheckAsksReadyz(t *testing.T) {
	var ready atomic.Bool
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if !ready.Load() {
			http.Error(w, `{"ready":false,"reasons":["route iris: no available backend"]}`, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"ready":true}`))
	}))
	defer admin.Close()
	port := admin.URL[strings.LastIndex(admin.URL, ":")+1:]
	dir := t.TempDir()
	// A wildcard admin host is asked on loopback; the rest of the file
	// need not pass validation (no routes here).
	file := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(file, []byte("admin: {listen: \"0.0.0.0:"+port+"\"}\npools: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	_, stderr, code := runGateway("healthcheck", "-config", file)
	if code != 1 || !strings.Contains(stderr, "no available backend") {
		t.Fatalf("not ready: exit %d, stderr %q; want 1 with the reasons", code, stderr)
	}
	ready.Store(true)
	if stdout, stderr, code := runGateway("healthcheck", "-config", file); code != 0 || stdout != "ready\n" {
		t.Fatalf("ready: exit %d, stdout %q, stderr %q; want 0", code, stdout, stderr)
	}
	if _, _, code := runGateway("healthcheck", "-admin", admin.URL); code != 0 {
		t.Fatalf("-admin URL: exit %d, want 0", code)
	}
	if _, stderr, code := runGateway("healthcheck", "-admin", "http://"+testutil.ClosedAddr(t)); code != 1 || !strings.Contains(stderr, "not ready") {
		t.Fatalf("nothing listening: exit %d, stderr %q; want 1", code, stderr)
	}
}
