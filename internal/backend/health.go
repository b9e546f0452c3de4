package backend

import "sync/atomic"

// healthState is what active health checks have concluded about a backend:
// the current run of passing or failing probes, and whether the failing
// run has taken it out of rotation. It lives with the backend, so a
// reload that keeps the address keeps it.
type healthState struct {
	unhealthy atomic.Bool
	passes    atomic.Int64 // in a row
	fails     atomic.Int64 // in a row
}

// Healthy reports whether active health checks let the backend take
// traffic. A backend nobody probes is healthy.
func (b *Backend) Healthy() bool { return !b.health.unhealthy.Load() }

// Probed records one health probe's outcome. unhealthyAfter failures in a
// row take a healthy backend out; healthyAfter passes in a row bring an
// unhealthy one back, which also ends any outlier ejection (the worker
// has visibly come back, as Envoy unejects a host on a passing check) and
// closes an open breaker.
// It reports whether the backend changed state. Probes of one backend
// come from one goroutine at a time.
func (b *Backend) Probed(ok bool, healthyAfter, unhealthyAfter int) (changed bool) {
	h := &b.health
	if ok {
		h.fails.Store(0)
		if h.passes.Add(1) < int64(healthyAfter) || !h.unhealthy.Load() {
			return false
		}
		b.forgetFailures()
		h.unhealthy.Store(false)
		return true
	}
	h.passes.Store(0)
	if h.fails.Add(1) < int64(unhealthyAfter) || h.unhealthy.Load() {
		return false
	}
	h.unhealthy.Store(true)
	return true
}

// Unprobed forgets active health state, for a backend no pool checks any
// more: it is healthy again until a check says otherwise.
func (b *Backend) Unprobed() {
	b.health.passes.Store(0)
	b.health.fails.Store(0)
	b.health.unhealthy.Store(false)
}
