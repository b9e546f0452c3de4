package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// countingBackend answers every request with its name and a running
// count, after delay, and counts what reached it.
type countingBackend struct {
	addr string
	hits atomic.Int64
}

func startCounting(t *testing.T, name string, delay time.Duration, status int, headers ...string) *countingBackend {
	b := &countingBackend{}
	b.addr = testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		n := b.hits.Add(1)
		time.Sleep(delay)
		for i := 0; i+1 < len(headers); i += 2 {
			ctx.Response.Header.Set(headers[i], headers[i+1])
		}
		ctx.SetStatusCode(status)
		ctx.SetContentType("application/json")
		fmt.Fprintf(ctx, `{"from":%q,"n":%d}`, name, n)
	})
	return b
}

func cachedRoute(backend, cacheBlock string) string {
	return onePool([]string{backend}, "    cache: "+cacheBlock)
}

func post(t *testing.T, url, body string, headers ...string) (int, string, http.Header) {
	t.Helper()
	return send(t, "POST", url, body, append([]string{"Content-Type", "application/json"}, headers...)...)
}

// Acceptance: JSON bodies that differ only in key order, whitespace and
// number spelling are one entry; bodies that differ in one digit of a
// 17-digit integer are two.
func TestCacheKeysOnTheJSONValue(t *testing.T) {
	b := startCounting(t, "w", 0, 200)
	g := startGateway(t, cachedRoute(b.addr, "{ttl: 1m}"))
	code, first, h := post(t, g.url+"/predict", `{"input":[5.1,3.5,1.4,0.2],"model":"iris","id":12345678901234567}`)
	if code != 200 || h.Get("X-Sluice-Cache") != "miss" {
		t.Fatalf("first request: %d %s, X-Sluice-Cache %q", code, first, h.Get("X-Sluice-Cache"))
	}
	same := `{ "id": 12345678901234567, "model" : "iris",
	  "input": [5.10, 3.5e0, 1.4, 0.2] }`
	code, body, h := post(t, g.url+"/predict", same)
	if code != 200 || h.Get("X-Sluice-Cache") != "hit" || body != first || b.hits.Load() != 1 {
		t.Fatalf("same value, other spelling: %d %q, X-Sluice-Cache %q, worker reached %d times; want a hit with the first answer",
			code, body, h.Get("X-Sluice-Cache"), b.hits.Load())
	}
	if h.Get("Content-Type") != "application/json" || len(h.Values("X-Sluice-Cache")) != 1 {
		t.Errorf("hit headers: Content-Type %q, X-Sluice-Cache %q; want the worker's type and one cache header", h.Get("Content-Type"), h.Values("X-Sluice-Cache"))
	}
	if h.Get("Age") == "" || h.Get("X-Sluice-Variant") != "p" || h.Get("X-Request-Id") == "" {
		t.Errorf("hit headers: Age %q, X-Sluice-Variant %q, X-Request-Id %q", h.Get("Age"), h.Get("X-Sluice-Variant"), h.Get("X-Request-Id"))
	}
	_, _, h = post(t, g.url+"/predict", `{"input":[5.1,3.5,1.4,0.2],"model":"iris","id":12345678901234568}`)
	if h.Get("X-Sluice-Cache") != "miss" || b.hits.Load() != 2 {
		t.Fatalf("a 17-digit integer one digit apart: X-Sluice-Cache %q, worker reached %d times; want a miss", h.Get("X-Sluice-Cache"), b.hits.Load())
	}
	if got := metricValue(t, g, `sluice_cache_requests_total{result="hit",route="main"}`); got != "1" {
		t.Errorf("hit count %s, want 1", got)
	}
}

// Acceptance: 200 concurrent identical requests with coalesce reach the
// worker once, and all get its answer.
func TestCoalescedMissesReachTheWorkerOnce(t *testing.T) {
	b := startCounting(t, "w", 300*time.Millisecond, 200)
	g := startGateway(t, cachedRoute(b.addr, "{ttl: 1m, coalesce: true}"))
	const n = 200
	bodies := make([]string, n)
	codes := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest("POST", g.url+"/predict", strings.NewReader(`{"input":[1,2,3,4]}`))
			req.Header.Set("Content-Type", "application/json")
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			codes[i], bodies[i] = resp.StatusCode, string(body)
		})
	}
	close(start)
	wg.Wait()
	if got := b.hits.Load(); got != 1 {
		t.Fatalf("%d concurrent identical requests reached the worker %d times, want once", n, got)
	}
	for i := range n {
		if codes[i] != 200 || bodies[i] != `{"from":"w","n":1}` {
			t.Fatalf("request %d: %d %q, want the worker's one answer", i, codes[i], bodies[i])
		}
	}
}

// A leader that fails fails its followers the same way, and nothing is
// stored.
func TestCoalescedFollowersShareTheLeadersFailure(t *testing.T) {
	b := startCounting(t, "w", 200*time.Millisecond, 503)
	g := startGateway(t, cachedRoute(b.addr, "{ttl: 1m, coalesce: true}"))
	var wg sync.WaitGroup
	codes := make([]int, 20)
	for i := range codes {
		wg.Go(func() {
			code, _, _ := post(t, g.url+"/predict", `{"x":1}`)
			codes[i] = code
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != 503 {
			t.Fatalf("request %d got %d, want the leader's 503", i, c)
		}
	}
	if b.hits.Load() != 1 {
		t.Fatalf("worker reached %d times by concurrent identical requests, want once", b.hits.Load())
	}
	post(t, g.url+"/predict", `{"x":1}`)
	if b.hits.Load() != 2 {
		t.Fatal("a 503 was served from the cache")
	}
}

// What may be stored, and what the client's Cache-Control does.
func TestCacheControl(t *testing.T) {
	t.Run("client no-store bypasses", func(t *testing.T) {
		b := startCounting(t, "w", 0, 200)
		g := startGateway(t, cachedRoute(b.addr, "{ttl: 1m}"))
		_, _, h := post(t, g.url+"/p", `{}`, "Cache-Control", "no-store")
		_, _, h2 := post(t, g.url+"/p", `{}`)
		if h.Get("X-Sluice-Cache") != "bypass" || h2.Get("X-Sluice-Cache") != "miss" || b.hits.Load() != 2 {
			t.Fatalf("X-Sluice-Cache %q then %q, worker reached %d times: want bypass, then a miss (nothing stored)",
				h.Get("X-Sluice-Cache"), h2.Get("X-Sluice-Cache"), b.hits.Load())
		}
	})
	t.Run("credentialed requests bypass unless the key varies on them", func(t *testing.T) {
		b := startCounting(t, "w", 0, 200)
		g := startGateway(t, cachedRoute(b.addr, "{ttl: 1m}"))
		post(t, g.url+"/p", `{}`, "Authorization", "Bearer alice")
		_, _, h := post(t, g.url+"/p", `{}`, "Authorization", "Bearer bob")
		if h.Get("X-Sluice-Cache") != "bypass" || b.hits.Load() != 2 {
			t.Fatalf("bob after alice: X-Sluice-Cache %q, worker reached %d times; want bypass (RFC 9111 3.5)", h.Get("X-Sluice-Cache"), b.hits.Load())
		}
		varying := startGateway(t, cachedRoute(b.addr, "{ttl: 1m, vary: [header:Authorization]}"))
		post(t, varying.url+"/p", `{}`, "Authorization", "Bearer alice")
		_, _, alice := post(t, varying.url+"/p", `{}`, "Authorization", "Bearer alice")
		_, _, bob := post(t, varying.url+"/p", `{}`, "Authorization", "Bearer bob")
		if alice.Get("X-Sluice-Cache") != "hit" || bob.Get("X-Sluice-Cache") != "miss" {
			t.Fatalf("varying on Authorization: alice again %q, bob %q; want hit and miss", alice.Get("X-Sluice-Cache"), bob.Get("X-Sluice-Cache"))
		}
	})
	t.Run("client no-cache refreshes", func(t *testing.T) {
		b := startCounting(t, "w", 0, 200)
		g := startGateway(t, cachedRoute(b.addr, "{ttl: 1m}"))
		post(t, g.url+"/p", `{}`)
		_, fresh, h := post(t, g.url+"/p", `{}`, "Cache-Control", "no-cache")
		_, again, h2 := post(t, g.url+"/p", `{}`)
		if h.Get("X-Sluice-Cache") != "miss" || h2.Get("X-Sluice-Cache") != "hit" || again != fresh || b.hits.Load() != 2 {
			t.Fatalf("no-cache: %q %q, then %q %q; want a miss with a fresh answer, then a hit on that answer", h.Get("X-Sluice-Cache"), fresh, h2.Get("X-Sluice-Cache"), again)
		}
	})
	for _, tc := range []struct {
		name    string
		status  int
		headers []string
	}{
		{"worker no-store", 200, []string{"Cache-Control", "no-store"}},
		{"worker private", 200, []string{"Cache-Control", "max-age=60, Private"}},
		{"worker sets a cookie", 200, []string{"Set-Cookie", "session=abc"}},
		{"not a 200", 404, nil},
	} {
		t.Run(tc.name+" is not stored", func(t *testing.T) {
			b := startCounting(t, "w", 0, tc.status, tc.headers...)
			g := startGateway(t, cachedRoute(b.addr, "{ttl: 1m}"))
			post(t, g.url+"/p", `{}`)
			post(t, g.url+"/p", `{}`)
			if b.hits.Load() != 2 {
				t.Fatalf("the second identical request was answered from the cache")
			}
		})
	}
}

// A hit never reaches the shadow pool: there is no primary answer to
// compare it with, and the candidate would see skewed traffic.
func TestCacheHitIsNotMirrored(t *testing.T) {
	primary := startCounting(t, "primary", 0, 200)
	shadow := startCounting(t, "shadow", 0, 200)
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  p: {backends: [%s]}
  s: {backends: [%s]}
routes:
  - name: main
    pool: p
    cache: {ttl: 1m}
    shadow: {pool: s, percent: 100}
`, primary.addr, shadow.addr))
	for range 3 {
		post(t, g.url+"/p", `{"a":1}`)
	}
	eventually(t, 5*time.Second, "the miss to be mirrored", func() bool { return shadow.hits.Load() == 1 })
	time.Sleep(100 * time.Millisecond)
	if primary.hits.Load() != 1 || shadow.hits.Load() != 1 {
		t.Fatalf("primary reached %d times, shadow %d: want once each (hits are neither forwarded nor mirrored)", primary.hits.Load(), shadow.hits.Load())
	}
}

// Acceptance: after a blue -> green flip, no request is answered with what
// blue answered before.
func TestBlueGreenFlipNeverServesBlueCachedAnswers(t *testing.T) {
	blue := startCounting(t, "blue", 0, 200)
	green := startCounting(t, "green", 0, 200)
	config := func(active string) string {
		return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  blue: {backends: [%s]}
  green: {backends: [%s]}
routes:
  - name: main
    blue_green: {blue: blue, green: green, active: %s}
    cache: {ttl: 1h}
`, blue.addr, green.addr, active)
	}
	g := startGateway(t, config("blue"))
	for range 2 {
		if _, body, _ := post(t, g.url+"/p", `{"a":1}`); !strings.Contains(body, "blue") {
			t.Fatalf("before the flip: %s", body)
		}
	}
	replaceFile(t, g.path, config("green"))
	if _, err := g.Reload("test"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, body, h := post(t, g.url+"/p", `{"a":1}`)
		if !strings.Contains(body, `"green"`) || h.Get("X-Sluice-Variant") != "green" {
			t.Fatalf("after the flip to green: %s from %q", body, h.Get("X-Sluice-Variant"))
		}
	}
	if green.hits.Load() != 1 {
		t.Fatalf("green reached %d times, want once (then cached under green)", green.hits.Load())
	}
}

func TestCachePurge(t *testing.T) {
	b := startCounting(t, "w", 0, 200)
	g := startGateway(t, cachedRoute(b.addr, "{ttl: 1m}"))
	post(t, g.url+"/p", `{"a":1}`)
	post(t, g.url+"/p", `{"a":2}`)
	code, body, _ := send(t, "POST", g.admin+"/admin/cache/purge", `{"pool":"p"}`)
	var purged struct{ Purged *int }
	if err := json.Unmarshal([]byte(body), &purged); code != 200 || err != nil || purged.Purged == nil || *purged.Purged != 2 {
		t.Fatalf("purge: %d %s, want 2 purged", code, body)
	}
	if _, _, h := post(t, g.url+"/p", `{"a":1}`); h.Get("X-Sluice-Cache") != "miss" {
		t.Fatalf("after the purge: %q, want a miss", h.Get("X-Sluice-Cache"))
	}
	if code, body, _ := send(t, "POST", g.admin+"/admin/cache/purge", `{"route":"nope"}`); code != 404 {
		t.Fatalf("purge of an unknown route: %d %s, want 404", code, body)
	}
	var view struct {
		Routes []struct {
			Route string `json:"route"`
			Stats struct {
				Entries int `json:"entries"`
			} `json:"stats"`
		} `json:"routes"`
	}
	adminJSON(t, g.admin+"/admin/cache", &view)
	if len(view.Routes) != 1 || view.Routes[0].Route != "main" || view.Routes[0].Stats.Entries != 1 {
		t.Fatalf("/admin/cache: %+v, want route main with 1 entry", view)
	}
}

// A reload that points a pool at other workers (another model) forgets
// what the old ones answered.
func TestReloadWithNewBackendsDoesNotServeTheOldAnswers(t *testing.T) {
	old := startCounting(t, "old", 0, 200)
	replacement := startCounting(t, "new", 0, 200)
	g := startGateway(t, cachedRoute(old.addr, "{ttl: 1h}"))
	post(t, g.url+"/p", `{"a":1}`)
	replaceFile(t, g.path, cachedRoute(replacement.addr, "{ttl: 1h}"))
	if _, err := g.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if _, body, _ := post(t, g.url+"/p", `{"a":1}`); !strings.Contains(body, `"new"`) {
		t.Fatalf("after the pool moved to new workers: %s", body)
	}
}

// Acceptance: two gateways sharing a Redis share one cache; with Redis
// stopped every request is still answered, as a miss.
func TestSharedCacheAcrossGatewaysAndRedisDown(t *testing.T) {
	redisAddr := testutil.RestartableAddr(t)
	srv := testutil.StartRedis(t, redisAddr)
	b := startCounting(t, "w", 0, 200)
	cfg := fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
redis: {addr: %q, timeout: 50ms}
pools: {p: {backends: [%s]}}
routes:
  - name: main
    pool: p
    cache: {ttl: 1m, shared: true}
`, redisAddr, b.addr)
	one, two := startGateway(t, cfg), startGateway(t, cfg)
	_, first, _ := post(t, one.url+"/p", `{"a":1}`)
	// The write to Redis is in the background.
	eventually(t, 5*time.Second, "the second gateway to hit", func() bool {
		_, _, h := post(t, two.url+"/p", `{"a":1}`)
		return h.Get("X-Sluice-Cache") == "hit"
	})
	if _, body, _ := post(t, two.url+"/p", `{"a":1}`); body != first || b.hits.Load() != 1 {
		t.Fatalf("second gateway: %q, worker reached %d times; want the first gateway's answer, from Redis", body, b.hits.Load())
	}
	srv.Stop()
	for i := range 20 {
		for _, g := range []*testGateway{one, two} {
			code, body, h := post(t, g.url+"/p", fmt.Sprintf(`{"a":%d}`, 100+i))
			if code != 200 || h.Get("X-Sluice-Cache") == "hit" {
				t.Fatalf("with Redis stopped: %d %s, X-Sluice-Cache %q; want answered, as a miss", code, body, h.Get("X-Sluice-Cache"))
			}
		}
	}
	if code, _, _ := get(t, one.admin+"/readyz"); code != 200 {
		t.Errorf("/readyz %d with Redis stopped, want 200", code)
	}
}
