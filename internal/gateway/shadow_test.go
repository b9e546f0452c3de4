package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/shadow"
	"github.com/sluice-gw/sluice/internal/testutil"
)

// shadowed is a config with a primary pool "p" and a candidate pool "cand"
// at the given addresses, and routes (YAML list items) using them.
func shadowed(routes, primary, candidate string) string {
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools: {p: {backends: [%s]}, cand: {backends: [%s]}}
routes:
%s`, primary, candidate, routes)
}

// shadowReport reads GET /admin/shadow and returns the named route's report.
func shadowReport(t *testing.T, g *testGateway, route string) shadow.RouteReport {
	t.Helper()
	var out struct {
		Shadow []shadow.RouteReport `json:"shadow"`
	}
	adminJSON(t, g.admin+"/admin/shadow", &out)
	for _, r := range out.Shadow {
		if r.Route == route {
			return r
		}
	}
	t.Fatalf("no shadow report for route %q in %+v", route, out.Shadow)
	return shadow.RouteReport{}
}

// settled waits until every mirror of the route has ended, counted one way
// or another, and want of them are accounted for.
func settled(t *testing.T, g *testGateway, route string, want int64) shadow.RouteReport {
	t.Helper()
	var rep shadow.RouteReport
	eventually(t, 10*time.Second, fmt.Sprintf("%d mirrors of route %s accounted for", want, route), func() bool {
		rep = shadowReport(t, g, route)
		c := rep.Totals
		return rep.InFlight == 0 && c.Mirrored+c.Dropped+c.SkippedBody+c.SkippedPrimary >= want
	})
	return rep
}

// jsonEcho answers {"path":..., "body":..., "label":"a"}: what it received,
// so a pair matches only if both sides got the same request.
func jsonEcho(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	out, _ := json.Marshal(map[string]string{"path": string(ctx.Path()), "body": string(ctx.Request.Body()), "label": "a"})
	ctx.SetBody(out)
}

// A quarter of the requests, exactly, is copied to the shadow after the
// primary answered: same rewritten path, same request id, marked
// X-Sluice-Shadow: 1, which the primary never sees.
func TestShadowMirrorsAMarkedCopyOfTheRequest(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	var paths []string
	shadowAddr := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		h := http.Header{}
		for k, v := range ctx.Request.Header.All() {
			h.Add(string(k), string(v))
		}
		mu.Lock()
		seen, paths = append(seen, h), append(paths, string(ctx.Path()))
		mu.Unlock()
		jsonEcho(ctx)
	})
	var primaryMarked atomic.Int64
	primary := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		if len(ctx.Request.Header.Peek("X-Sluice-Shadow")) > 0 {
			primaryMarked.Add(1)
		}
		jsonEcho(ctx)
	})
	g := startGateway(t, shadowed(`  - name: main
    match: {path_prefix: /api}
    strip_prefix: /api
    pool: p
    shadow: {pool: cand, percent: 25}
`, primary, shadowAddr))
	for i := range 100 {
		status, _, _ := send(t, "POST", g.url+"/api/predict", fmt.Sprintf(`{"n":%d}`, i), "X-Request-Id", fmt.Sprintf("req-%d", i))
		if status != 200 {
			t.Fatalf("request %d: status %d", i, status)
		}
	}
	rep := settled(t, g, "main", 25)
	if c := rep.Totals; c.Mirrored != 25 || c.Matched != 25 {
		t.Fatalf("100 requests at 25%%: mirrored %d, matched %d; want exactly 25 and 25 (%+v)", c.Mirrored, c.Matched, c)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 25 {
		t.Fatalf("the shadow received %d copies, want 25", len(seen))
	}
	for i, h := range seen {
		if h.Get("X-Sluice-Shadow") != "1" || !strings.HasPrefix(h.Get("X-Request-Id"), "req-") || paths[i] != "/predict" {
			t.Fatalf("copy %d: X-Sluice-Shadow %q, X-Request-Id %q, path %q; want 1, the client's id, the stripped path",
				i, h.Get("X-Sluice-Shadow"), h.Get("X-Request-Id"), paths[i])
		}
	}
	if n := primaryMarked.Load(); n != 0 {
		t.Fatalf("the primary saw X-Sluice-Shadow on %d requests", n)
	}
}

// With a sticky key the same users are mirrored every time, and about the
// configured share of them.
func TestShadowSamplesStickyKeysDeterministically(t *testing.T) {
	var mu sync.Mutex
	mirroredUsers := map[string]int{}
	shadowAddr := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		mirroredUsers[string(ctx.Request.Header.Peek("X-User-Id"))]++
		mu.Unlock()
		jsonEcho(ctx)
	})
	g := startGateway(t, shadowed(`  - name: main
    split:
      sticky: header:X-User-Id
      variants: [{name: only, pool: p, weight: 1}]
    shadow: {pool: cand, percent: 30}
`, testutil.Backend(t, jsonEcho), shadowAddr))
	const users, rounds = 400, 3
	for range rounds {
		for u := range users {
			if status, _, _ := send(t, "POST", g.url+"/", "{}", "X-User-Id", fmt.Sprintf("user-%d", u)); status != 200 {
				t.Fatalf("status %d", status)
			}
		}
	}
	settled(t, g, "main", users*rounds*30/100/2)
	eventually(t, 5*time.Second, "every mirror of a mirrored user arrived", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range mirroredUsers {
			if n != rounds {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	share := float64(len(mirroredUsers)) / users
	if math.Abs(share-0.30) > 3*math.Sqrt(0.3*0.7/users) {
		t.Fatalf("%d of %d users mirrored (%.1f%%), want about 30%%", len(mirroredUsers), users, 100*share)
	}
}

// Acceptance point 4: an oversized body, a non-JSON answer, a shadow 5xx,
// a shadow timeout and a shadow that is down each land in their own
// counter, in the report and in the metrics; the client sees none of it.
func TestShadowOutcomesEachHaveTheirOwnCounter(t *testing.T) {
	text := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("plain text") })
	fail := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(500)
		ctx.SetBodyString(`{"error":"boom"}`)
	})
	release := make(chan struct{})
	hang := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		jsonEcho(ctx)
	})
	defer close(release)
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  p: {backends: [%s]}
  echo: {backends: [%s]}
  text: {backends: [%s]}
  fail: {backends: [%s]}
  hang: {backends: [%s]}
  down: {backends: [%s]}
routes:
  - {name: body, match: {path_prefix: /body}, pool: p, shadow: {pool: echo, percent: 100, max_body: 16B}}
  - {name: text, match: {path_prefix: /text}, pool: p, shadow: {pool: text, percent: 100}}
  - {name: fail, match: {path_prefix: /fail}, pool: p, shadow: {pool: fail, percent: 100}}
  - {name: hang, match: {path_prefix: /hang}, pool: p, shadow: {pool: hang, percent: 100, timeout: 100ms}}
  - {name: down, match: {path_prefix: /down}, pool: p, shadow: {pool: down, percent: 100}}
`, testutil.Backend(t, jsonEcho), testutil.Backend(t, jsonEcho), text, fail, hang, testutil.ClosedAddr(t)))

	const n = 5
	for _, route := range []string{"body", "text", "fail", "hang", "down"} {
		for range n {
			if status, body, _ := send(t, "POST", g.url+"/"+route, `{"features":[1,2,3,4,5,6]}`); status != 200 {
				t.Fatalf("%s: the client got %d %s", route, status, body)
			}
		}
	}
	cases := []struct {
		route, outcome string
		count          func(shadow.Counters) int64
	}{
		{"body", "skipped_body", func(c shadow.Counters) int64 { return c.SkippedBody }},
		{"text", "not_json", func(c shadow.Counters) int64 { return c.NotJSON }},
		{"fail", "shadow_5xx", func(c shadow.Counters) int64 { return c.Shadow5xx }},
		{"hang", "timeout", func(c shadow.Counters) int64 { return c.Timeout }},
		{"down", "error", func(c shadow.Counters) int64 { return c.Error }},
	}
	metrics := func() string { _, m, _ := get(t, g.admin+"/metrics"); return m }
	for _, tc := range cases {
		rep := settled(t, g, tc.route, n)
		if got := tc.count(rep.Totals); got != n || rep.Totals.Matched != 0 {
			t.Errorf("route %s: %s = %d, matched %d; want %d and 0 (%+v)", tc.route, tc.outcome, got, rep.Totals.Matched, n, rep.Totals)
		}
		series := fmt.Sprintf(`sluice_shadow_requests_total{outcome=%q,route=%q} %d`, tc.outcome, tc.route, n)
		if m := metrics(); !strings.Contains(m, series) {
			t.Errorf("metrics lack %s", series)
		}
	}
}

// When the in-flight cap is reached, further mirrors are dropped and
// counted, and the primary answers without waiting for any of them.
func TestShadowDropsBeyondItsInFlightCap(t *testing.T) {
	release := make(chan struct{})
	var arrived atomic.Int64
	blocked := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		arrived.Add(1)
		<-release
		jsonEcho(ctx)
	})
	g := startGateway(t, shadowed(`  - {name: main, pool: p, shadow: {pool: cand, percent: 100, max_in_flight: 2, timeout: 10s}}
`, testutil.Backend(t, jsonEcho), blocked))
	// Every request is answered while both mirror slots are stuck.
	for i := range 20 {
		if status, _, _ := send(t, "POST", g.url+"/", fmt.Sprint(i)); status != 200 {
			t.Fatalf("request %d: status %d", i, status)
		}
	}
	rep := shadowReport(t, g, "main")
	if rep.Totals.Dropped != 18 || rep.InFlight != 2 {
		t.Fatalf("20 requests with 2 mirror slots held: dropped %d, in flight %d; want 18 and 2", rep.Totals.Dropped, rep.InFlight)
	}
	close(release)
	rep = settled(t, g, "main", 20)
	if rep.Totals.Matched != 2 || arrived.Load() != 2 {
		t.Fatalf("after release: matched %d, arrived %d; want 2 and 2", rep.Totals.Matched, arrived.Load())
	}
}

// Acceptance point 5: under concurrent load every copy is the request the
// primary got. Both sides echo the request, so a copy read after fasthttp
// recycled the client's request would mismatch (and -race would see it).
func TestShadowCopiesStayIntactUnderConcurrentLoad(t *testing.T) {
	g := startGateway(t, shadowed(`  - {name: main, pool: p, shadow: {pool: cand, percent: 100, max_in_flight: 10000}}
`, testutil.Backend(t, jsonEcho), testutil.Backend(t, jsonEcho)))
	const clients, each = 16, 100
	var wg sync.WaitGroup
	var failed atomic.Int64
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for i := range each {
				body := fmt.Sprintf(`{"client":%d,"i":%d,"pad":"%s"}`, c, i, strings.Repeat("x", (c*each+i)%300))
				resp, err := client.Post(fmt.Sprintf("%s/c%d/%d", g.url, c, i), "application/json", strings.NewReader(body))
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d client requests failed", failed.Load())
	}
	rep := settled(t, g, "main", clients*each)
	if c := rep.Totals; c.Compared != clients*each || c.Matched != c.Compared {
		var first any
		if samples := rep.Variants[0].Samples; len(samples) > 0 {
			first = samples[0].Diffs
		}
		t.Fatalf("compared %d, matched %d, want %d each: a copy differed from what the primary got (first diff %+v)",
			c.Compared, c.Matched, clients*each, first)
	}
}

// The report can be read as a page and started afresh.
func TestShadowReportPageAndReset(t *testing.T) {
	g := startGateway(t, shadowed(`  - {name: main, pool: p, shadow: {pool: cand, percent: 100}}
`, testutil.Backend(t, jsonEcho), testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString(`{"path":"/","body":"<script>alert(1)</script>","label":"b"}`)
	})))
	for range 3 {
		send(t, "POST", g.url+"/", "x")
	}
	rep := settled(t, g, "main", 3)
	if rep.Totals.Mismatched != 3 {
		t.Fatalf("mismatched %d, want 3", rep.Totals.Mismatched)
	}
	status, page, h := get(t, g.admin+"/admin/shadow?format=html")
	if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(page, "main") {
		t.Fatalf("html report: %d %s", status, h.Get("Content-Type"))
	}
	if strings.Contains(page, "<script>alert(1)") {
		t.Fatal("the page carries a backend's answer unescaped")
	}
	if status, _, _ := send(t, "POST", g.admin+"/admin/shadow/reset", `{"route":"nope"}`); status != 404 {
		t.Fatalf("reset of an unknown route: %d, want 404", status)
	}
	if status, body, _ := send(t, "POST", g.admin+"/admin/shadow/reset", `{"route":"main"}`); status != 200 {
		t.Fatalf("reset: %d %s", status, body)
	}
	if c := shadowReport(t, g, "main").Totals; c.Mirrored != 0 || c.Mismatched != 0 {
		t.Fatalf("after reset: %+v", c)
	}
}

// Mismatching pairs are appended to the record file as JSON lines holding
// the request and both answers.
func TestShadowRecordsMismatchingPairs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "diffs.jsonl")
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools: {p: {backends: [%s]}, cand: {backends: [%s]}}
routes:
  - name: main
    pool: p
    shadow:
      pool: cand
      percent: 100
      record: {file: %s, per_second: 1000}
`, testutil.Backend(t, jsonEcho), testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString(`{"path":"/","body":"other","label":"a"}`)
	}), file))
	for i := range 4 {
		send(t, "POST", g.url+"/", fmt.Sprintf(`{"i":%d}`, i))
	}
	settled(t, g, "main", 4)
	var lines []map[string]any
	eventually(t, 5*time.Second, "4 records", func() bool {
		f, err := os.Open(file)
		if err != nil {
			return false
		}
		defer f.Close()
		lines = lines[:0]
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var rec map[string]any
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("record is not JSON: %v: %s", err, sc.Text())
			}
			lines = append(lines, rec)
		}
		return len(lines) == 4
	})
	rec, _ := json.Marshal(lines[0])
	for _, want := range []string{`"route":"main"`, `"shadow_pool":"cand"`, `other`, `\"i\":`} {
		if !strings.Contains(string(rec), want) {
			t.Errorf("record lacks %s: %s", want, rec)
		}
	}
}

// A reload that keeps the shadow keeps its numbers; one that points it at
// another pool starts them afresh.
func TestShadowReportSurvivesReloadUntilItsIdentityChanges(t *testing.T) {
	p, c1, c2 := testutil.Backend(t, jsonEcho), testutil.Backend(t, jsonEcho), testutil.Backend(t, jsonEcho)
	cfg := func(pool string, percent int) string {
		return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools: {p: {backends: [%s]}, c1: {backends: [%s]}, c2: {backends: [%s]}}
routes:
  - {name: main, pool: p, shadow: {pool: %s, percent: %d}}
`, p, c1, c2, pool, percent)
	}
	g := startGateway(t, cfg("c1", 100))
	for range 5 {
		send(t, "POST", g.url+"/", "x")
	}
	settled(t, g, "main", 5)
	replaceFile(t, g.path, cfg("c1", 50))
	eventually(t, 5*time.Second, "reload", func() bool { return g.Snapshot().Generation == 2 })
	if c := shadowReport(t, g, "main").Totals; c.Matched != 5 {
		t.Fatalf("after a percent change: matched %d, want the 5 kept", c.Matched)
	}
	replaceFile(t, g.path, cfg("c2", 50))
	eventually(t, 5*time.Second, "reload", func() bool { return g.Snapshot().Generation == 3 })
	if rep := shadowReport(t, g, "main"); rep.ShadowPool != "c2" || rep.Totals.Matched != 0 {
		t.Fatalf("after the shadow pool changed: pool %s, matched %d; want c2 and a fresh report", rep.ShadowPool, rep.Totals.Matched)
	}
}

// A record file that cannot be opened refuses the config whole.
func TestShadowRecordFileMustOpen(t *testing.T) {
	p := testutil.Backend(t, jsonEcho)
	g := startGateway(t, onePool([]string{p}, ""))
	// A directory where the file should be: no one can append to it.
	notAFile := t.TempDir()
	replaceFile(t, g.path, onePool([]string{p}, fmt.Sprintf("    shadow: {pool: p, record: {file: %s}}\n", notAFile)))
	eventually(t, 5*time.Second, "the config is rejected", func() bool { return g.LastError() != nil })
	if !strings.Contains(strings.Join(g.LastError().Errors, " "), "shadow.record.file") || g.Snapshot().Generation != 1 {
		t.Fatalf("last error %v, generation %d", g.LastError(), g.Snapshot().Generation)
	}
}
