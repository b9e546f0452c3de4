package proxy

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/backend"
	"github.com/sluice-gw/sluice/internal/testutil"
)

// TestAttemptOnADrainingBackendIsNotSent: an attempt whose backend was
// marked down after it was chosen (a worker being stopped) sends nothing:
// do reports backend.ErrDraining and counts nothing against the backend,
// so neither passive ejection nor the breaker holds the drain against it
// once it is back.
func TestAttemptOnADrainingBackendIsNotSent(t *testing.T) {
	var hits atomic.Int64
	addr := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		hits.Add(1)
		ctx.SetBodyString(predictionJSON)
	})
	m := newBenchProxy(t, addr, "").snap.Load().Pools["iris"].Members[0]
	req, _ := predictRequest()
	resp := new(fasthttp.Response)

	m.SetDown(true)
	for range 20 {
		if ejected, err := m.do(req, resp, time.Now().Add(5*time.Second)); err != backend.ErrDraining || ejected {
			t.Fatalf("attempt on a draining backend: ejected %v, err %v; want ErrDraining", ejected, err)
		}
	}
	if hits.Load() != 0 || m.Requests() != 0 || m.Pending() != 0 || m.Failures() != 0 || m.ConsecutiveFailures() != 0 {
		t.Fatalf("after refused attempts: %d reached the worker, requests %d, pending %d, failures %d, consecutive %d; want all 0",
			hits.Load(), m.Requests(), m.Pending(), m.Failures(), m.ConsecutiveFailures())
	}
	if !m.Breaker().OpenUntil().IsZero() {
		t.Fatal("the breaker opened on attempts that were never sent")
	}

	m.SetDown(false)
	if _, err := m.do(req, resp, time.Now().Add(5*time.Second)); err != nil || resp.StatusCode() != 200 || hits.Load() != 1 {
		t.Fatalf("back in rotation: err %v, status %d, %d reached the worker", err, resp.StatusCode(), hits.Load())
	}
}
