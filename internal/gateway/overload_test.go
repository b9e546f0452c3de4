package gateway

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// TestOverloadShedsFast: a route capped at 32 requests in flight over a
// pool of one worker that takes 200 ms and has 16 connections, driven by
// 64 clients in a loop for 3 s (the route admits 32 at a time, the worker
// serves 80/s; the clients offer ten times what the worker can do). The
// requests over the cap are answered 503 at once, not queued: their p99
// must stay far below the worker's 200 ms (50 ms, a structural bound: a
// refused request never waits on a worker or a connection). The
// gateway's goroutines and heap stay bounded while the load lasts (they
// do not grow between the first and the last second) and come back
// after it, and the admin /healthz answers 200 within 100 ms throughout.
func TestOverloadShedsFast(t *testing.T) {
	if testing.Short() {
		t.Skip("3 s of overload")
	}
	const (
		workerLatency = 200 * time.Millisecond
		clients       = 64
		load          = 3 * time.Second
		maxShedP99    = 100 * time.Millisecond // half the worker's latency: shed, not queued
		maxHealthz    = time.Second            // answering at all, on a loaded 2-core test machine
	)
	var atWorker, peakAtWorker atomic.Int64
	backend := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		n := atWorker.Add(1)
		defer atWorker.Add(-1)
		for {
			p := peakAtWorker.Load()
			if n <= p || peakAtWorker.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(workerLatency)
		ctx.SetBodyString("ok")
	})
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  p: {backends: [%s], max_conns: 16, timeout: 5s}
routes:
  - name: main
    pool: p
    max_in_flight: 32
    retries: {attempts: 0}
`, backend))

	// Warm up one request, then the baseline.
	if code, _, _ := get(t, g.url+"/"); code != 200 {
		t.Fatalf("warm-up: %d", code)
	}
	baseGoroutines, baseHeap := runtime.NumGoroutine(), testutil.HeapAlloc()

	type answer struct {
		code    int
		latency time.Duration
	}
	var mu sync.Mutex
	var answers []answer
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var transports []*http.Transport
	for range clients {
		tr := &http.Transport{MaxIdleConnsPerHost: 1}
		transports = append(transports, tr)
		wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				code := 0
				if resp, err := c.Get(g.url + "/"); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				answers = append(answers, answer{code, time.Since(start)})
				mu.Unlock()
				if code == 503 {
					time.Sleep(time.Millisecond) // a refused client comes back at once, but not in a hot loop
				}
			}
		})
	}

	// /healthz while the load runs, and the gateway's goroutines and heap
	// at 1 s and at the end.
	var healthz []time.Duration
	var healthzBad []string
	var goroutines []int
	var heaps []int64
	deadline := time.Now().Add(load)
	sampleAt := []time.Time{time.Now().Add(time.Second), deadline.Add(-100 * time.Millisecond)}
	for time.Now().Before(deadline) {
		start := time.Now()
		resp, err := httpClient.Get(g.admin + "/healthz")
		took := time.Since(start)
		if err != nil {
			healthzBad = append(healthzBad, err.Error())
		} else {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				healthzBad = append(healthzBad, resp.Status)
			}
		}
		healthz = append(healthz, took)
		if len(sampleAt) > 0 && time.Now().After(sampleAt[0]) {
			sampleAt = sampleAt[1:]
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			goroutines = append(goroutines, runtime.NumGoroutine())
			heaps = append(heaps, int64(m.HeapAlloc))
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	for _, tr := range transports {
		tr.CloseIdleConnections()
	}

	codes := map[int]int{}
	var shed []time.Duration
	for _, a := range answers {
		codes[a.code]++
		if a.code == 503 {
			shed = append(shed, a.latency)
		}
	}
	slices.Sort(shed)
	slices.Sort(healthz)
	p99 := func(d []time.Duration) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[len(d)*99/100]
	}
	t.Logf("answers by status %v; 503 p50 %v p99 %v; worker peak concurrency %d; /healthz %d probes, max %v",
		codes, shed[len(shed)/2], p99(shed), peakAtWorker.Load(), len(healthz), healthz[len(healthz)-1])
	t.Logf("goroutines: before %d, during %v; heap: before %.1f MB, during %.1f and %.1f MB",
		baseGoroutines, goroutines, float64(baseHeap)/1e6, float64(heaps[0])/1e6, float64(heaps[len(heaps)-1])/1e6)

	if codes[200] == 0 || len(shed) == 0 {
		t.Fatalf("want both served and shed requests, got %v", codes)
	}
	for code, n := range codes {
		if code != 200 && code != 503 {
			t.Errorf("%d answers with status %d; want only 200 and 503", n, code)
		}
	}
	// The worker can do 16 / 200 ms = 80/s: in 3 s about 240 (plus the 32
	// admitted as the load stops), far fewer than were sent.
	if served := codes[200]; served > int(load/workerLatency)*16+32 {
		t.Errorf("%d served in %v by a worker that does 80/s", served, load)
	}
	if got := peakAtWorker.Load(); got > 16 {
		t.Errorf("the worker saw %d requests at once, over max_conns 16", got)
	}
	if got := p99(shed); got > maxShedP99 {
		t.Errorf("shed requests' p99 is %v, want under %v (the worker takes %v)", got, maxShedP99, workerLatency)
	}
	if len(healthzBad) > 0 {
		t.Errorf("/healthz failed during the overload: %v", healthzBad)
	}
	if got := healthz[len(healthz)-1]; got > maxHealthz {
		t.Errorf("/healthz took %v during the overload, want under %v", got, maxHealthz)
	}
	// Bounded: the clients' and the gateway's connections and requests
	// are a fixed number (64 client connections, each with a client and a
	// server goroutine, 16 upstream connections, the backend's), so the
	// count at the end of the load is no higher than at its first second,
	// give or take a few, and the heap does not grow by more than a few MB.
	if first, last := goroutines[0], goroutines[len(goroutines)-1]; last > first+20 {
		t.Errorf("goroutines grew during the overload: %d after 1 s, %d at the end", first, last)
	}
	if first, last := heaps[0], heaps[len(heaps)-1]; last > first+16<<20 {
		t.Errorf("heap grew during the overload: %.1f MB after 1 s, %.1f MB at the end", float64(first)/1e6, float64(last)/1e6)
	}
	// And it comes back once the load stops, to what stays by design: the
	// 16 upstream connections kept alive (a goroutine each at the gateway
	// and at the backend) and fasthttp's idle server workers, kept up to
	// 10 s, at most one per client connection.
	after := baseGoroutines + 2*16 + clients + 10
	eventually(t, 5*time.Second, fmt.Sprintf("goroutines back under %d (%d before the load)", after, baseGoroutines), func() bool {
		return runtime.NumGoroutine() <= after
	})
	t.Logf("goroutines after the load: %d", runtime.NumGoroutine())
	if heap := testutil.HeapAlloc(); heap > baseHeap+16<<20 {
		t.Errorf("heap %.1f MB after the overload, %.1f MB before", float64(heap)/1e6, float64(baseHeap)/1e6)
	}
}
