package gateway

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// failing is a backend that answers 500 and counts what it got.
func failing(t *testing.T, hits *atomic.Int64) string {
	return testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		hits.Add(1)
		ctx.SetStatusCode(500)
	})
}

// A backend that answers 500 is ejected after consecutive_failures and
// gets nothing more while ejected; the pool's other backend takes the
// traffic. The ejection outlives a reload that keeps the backend.
func TestFailingBackendIsEjectedAndStaysEjectedAcrossReload(t *testing.T) {
	var bad atomic.Int64
	badAddr, good := failing(t, &bad), testutil.Named(t, "good")
	cfg := func(extra string) string {
		return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  p: {backends: [%s, %s], balance: round_robin, outlier: {consecutive_failures: 3, eject_for: 1m}}
routes:
  - {name: main, pool: p%s}
`, badAddr, good, extra)
	}
	g := startGateway(t, cfg(""))
	codes := map[int]int{}
	for range 40 {
		status, _, _ := get(t, g.url+"/")
		codes[status]++
	}
	if bad.Load() != 3 || codes[500] != 3 || codes[200] != 37 {
		t.Fatalf("the failing backend got %d requests, clients saw %v; want 3 and 3 errors before it was ejected", bad.Load(), codes)
	}
	replaceFile(t, g.path, cfg(", timeout: 5s"))
	eventually(t, 5*time.Second, "reload", func() bool { return g.Snapshot().Generation == 2 })
	for range 20 {
		if status, _, _ := get(t, g.url+"/"); status != 200 {
			t.Fatalf("after the reload: status %d; the ejection was lost", status)
		}
	}
	if bad.Load() != 3 {
		t.Fatalf("the ejected backend got %d requests after the reload", bad.Load()-3)
	}
}

// max_ejected_percent keeps part of the pool in rotation even when every
// backend fails (its breaker aside); with the pool's only backend ejected, clients get a fast
// 503 whose Retry-After says when it comes back.
func TestEjectionLimitAndRetryAfter(t *testing.T) {
	var a, b atomic.Int64
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  two:
    backends: [%s, %s]
    balance: round_robin
    outlier: {consecutive_failures: 2, max_ejected_percent: 50}
    breaker: {consecutive_failures: 1000, min_requests: 1000}   # out of the way: this is about ejection
  one: {backends: [%s], outlier: {consecutive_failures: 2, eject_for: 20s}}
routes:
  - {name: two, match: {path_prefix: /two}, pool: two}
  - {name: one, match: {path_prefix: /one}, pool: one}
`, failing(t, &a), failing(t, &b), failing(t, new(atomic.Int64))))
	for range 20 {
		get(t, g.url+"/two")
	}
	if a.Load() == 0 || b.Load() == 0 || a.Load()+b.Load() != 20 || min(a.Load(), b.Load()) != 2 {
		t.Fatalf("backends got %d and %d of 20: want one ejected after 2 failures and the other kept in rotation", a.Load(), b.Load())
	}
	for range 2 {
		get(t, g.url+"/one")
	}
	status, body, h := get(t, g.url+"/one")
	secs, _ := strconv.Atoi(h.Get("Retry-After"))
	if status != 503 || !strings.Contains(body, `"unavailable"`) || secs < 19 || secs > 20 {
		t.Fatalf("only backend ejected: %d %s, Retry-After %q; want 503 unavailable and about 20s", status, body, h.Get("Retry-After"))
	}
}
