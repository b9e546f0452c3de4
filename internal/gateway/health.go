package gateway

import (
	"github.com/sluice-gw/sluice/internal/backend"
	"github.com/sluice-gw/sluice/internal/health"
	"github.com/sluice-gw/sluice/internal/metrics"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// probed is where one health target's probes land: the backend whose
// state they move, and the thresholds of the pool that asked.
type probed struct {
	backend                      *backend.Backend
	pool                         string
	healthyAfter, unhealthyAfter int
}

// healthChecks points the active health checks at what a snapshot serves.
// The checker keeps probers of unchanged targets running, so a reload
// neither restarts their schedule nor forgets their state (that lives in
// the backend). Called with reloadMu held, after the swap.
func (g *Gateway) healthChecks(s *proxy.Snapshot) {
	sinks := map[health.Target]probed{}
	for name, p := range s.Pools {
		hc := s.Config.Pools[name].Health
		if hc == nil {
			continue
		}
		settings := health.Settings{Path: hc.Path, Interval: hc.Interval.D(), Jitter: hc.Jitter.D(), Timeout: hc.Timeout.D()}
		for _, m := range p.Members {
			sinks[health.Target{Addr: m.Addr, Settings: settings}] = probed{m.Backend, name, hc.HealthyAfter, hc.UnhealthyAfter}
		}
	}
	g.probed.Store(&sinks)
	targets := make([]health.Target, 0, len(sinks))
	for t := range sinks {
		targets = append(targets, t)
	}
	g.health.Set(targets)
	// Again after the swap: a probe of the old config may have landed
	// since apply cleared the verdicts.
	forgetUnchecked(s)
}

// forgetUnchecked clears the health verdicts of the snapshot's backends
// that no pool of it checks: a backend whose checks were removed is not
// held out by what they said. apply calls it before the swap too, so the
// new config never serves a request with the old verdict.
func forgetUnchecked(s *proxy.Snapshot) {
	checked := map[string]bool{}
	for name, p := range s.Pools {
		if s.Config.Pools[name].Health != nil {
			for _, m := range p.Members {
				checked[m.Addr] = true
			}
		}
	}
	for _, p := range s.Pools {
		for _, m := range p.Members {
			if !checked[m.Addr] {
				m.Unprobed()
			}
		}
	}
}

// probeReport moves a backend's health state by one probe, and says when
// that took it out of rotation or brought it back.
func (g *Gateway) probeReport(t health.Target, ok bool, detail string) {
	sinks := g.probed.Load()
	if sinks == nil {
		return
	}
	sink, found := (*sinks)[t]
	if !found {
		return // a target of an older config, stopping
	}
	if !sink.backend.Probed(ok, sink.healthyAfter, sink.unhealthyAfter) {
		return
	}
	// Either way the idle keep-alive connections to it belong to a worker
	// that was failing: one that died leaves them dead, and fasthttp
	// would hand them out unchecked once the backend is back, failing
	// requests (a POST cannot be retried) and ejecting it again. No
	// traffic went to it between the two transitions, so closing them at
	// both leaves none behind.
	g.registry.CloseIdle(t.Addr)
	if ok {
		g.log.Info("backend healthy again", "pool", sink.pool, "backend", t.Addr, "passes", sink.healthyAfter)
	} else {
		g.log.Warn("backend unhealthy; out of rotation", "pool", sink.pool, "backend", t.Addr,
			"failures", sink.unhealthyAfter, "last", detail)
	}
}

// backendStates are the members' states for the backend gauges.
func (g *Gateway) backendStates() []metrics.BackendState {
	s := g.proxy.Snapshot()
	if s == nil {
		return nil
	}
	var out []metrics.BackendState
	for name, p := range s.Pools {
		for i, m := range p.Members {
			out = append(out, metrics.BackendState{Pool: name, Backend: m.Addr, Up: p.Available(i), Breaker: m.Breaker().State()})
		}
	}
	return out
}
