package console

import (
	"slices"
	"strconv"
	"time"

	"github.com/sluice-gw/sluice/internal/admin"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// Strategies of a route, as the overview names them.
const (
	strategyPool      = "pool"
	strategySplit     = "split"
	strategyBlueGreen = "blue_green"
	strategyCanary    = "canary"
)

type overviewView struct {
	// Window says how long the live numbers cover ("60 s"), or that there
	// is no window yet.
	Window   string
	Variants []variantRow
	Backends []backendRow
}

// variantRow is one route variant: what the config says it should get
// (Target) and what it got over the window.
type variantRow struct {
	Route, Strategy, Variant, Pool string
	// First marks the route's first row, which names the route.
	First                                  bool
	Target                                 string
	Requests, Share, RPS, Errors, P50, P99 string
}

type backendRow struct {
	Pool, Addr             string
	Available, Healthy     string
	AvailableOK, HealthyOK bool
	EjectedUntil           string
	// Breaker is its state (and until when it is open); BreakerClass
	// colours it: "bad" open, "warn" half open.
	Breaker, BreakerClass   string
	InFlight, Requests      string
	Failures, PID, Restarts string
}

func (c *Console) overview() any {
	v := overviewView{Window: "no window yet"}
	win := c.traffic.Window()
	if win.Span > 0 {
		v.Window = strconv.FormatFloat(win.Span.Round(time.Second).Seconds(), 'f', 0, 64) + " s"
	}
	snap := c.gw.Snapshot()
	if snap == nil {
		return v
	}
	canaryPercent := map[string]float64{}
	for _, st := range c.gw.Rollouts().Statuses() {
		canaryPercent[st.Route] = st.Percent
	}
	routes := map[string]*config.Route{}
	for _, rc := range snap.Config.Routes {
		routes[rc.Name] = rc
	}
	for _, r := range snap.Routes {
		rc := routes[r.Name]
		if rc == nil {
			continue
		}
		strategy, targets := routeTargets(rc, r, canaryPercent)
		var names []string
		pools := map[string]string{}
		for _, variant := range r.Variants {
			names = append(names, variant.Name)
			pools[variant.Name] = variant.Pool.Name
		}
		// A variant that answered but is not one of the route's own is its
		// fallback pool (named after the pool), or one a reload removed.
		for _, extra := range win.Variants(r.Name) {
			if !slices.Contains(names, extra) {
				names = append(names, extra)
				if extra == rc.Fallback {
					pools[extra], targets[extra] = extra, "fallback"
				}
			}
		}
		for i, name := range names {
			st := win.Stat(r.Name, name)
			row := variantRow{
				Route: r.Name, Strategy: strategy, Variant: name, Pool: pools[name], First: i == 0,
				Target: targets[name], Requests: dash,
				Share: percent(st.Share, 1), RPS: decimal(st.PerSecond, 1), Errors: percent(st.ErrorRate, 1),
				P50: millis(st.P50), P99: millis(st.P99),
			}
			if row.Target == "" {
				row.Target = dash
			}
			if win.Span > 0 {
				row.Requests = strconv.FormatFloat(st.Requests, 'f', 0, 64)
			}
			v.Variants = append(v.Variants, row)
		}
	}
	v.Backends = backendRows(admin.Pools(snap))
	return v
}

// routeTargets names a route's strategy and the share of its requests
// each variant should get now: the split's weights, the active colour,
// the canary's current step, all of a plain pool.
func routeTargets(rc *config.Route, r *proxy.Route, canaryPercent map[string]float64) (string, map[string]string) {
	targets := map[string]string{}
	share := func(name string, p float64) { targets[name] = percent(&p, 1) }
	switch {
	case rc.Split != nil:
		total := 0
		for _, v := range rc.Split.Variants {
			total += v.Weight
		}
		for _, v := range rc.Split.Variants {
			if total > 0 {
				share(v.Name, float64(v.Weight)/float64(total))
			}
		}
		return strategySplit, targets
	case rc.BlueGreen != nil:
		share("blue", 0)
		share("green", 0)
		share(rc.BlueGreen.Active, 1)
		return strategyBlueGreen, targets
	case rc.Canary != nil:
		if p, ok := canaryPercent[rc.Name]; ok {
			share("stable", 1-p/100)
			share("candidate", p/100)
		}
		return strategyCanary, targets
	}
	for _, v := range r.Variants {
		share(v.Name, 1)
	}
	return strategyPool, targets
}

func backendRows(pools []admin.PoolView) []backendRow {
	var out []backendRow
	for _, p := range pools {
		for _, b := range p.Backends {
			row := backendRow{
				Pool: p.Name, Addr: b.Addr,
				Available: yesNo(b.Available), AvailableOK: b.Available,
				Healthy: yesNo(b.Healthy), HealthyOK: b.Healthy,
				EjectedUntil: clock(b.EjectedUntil), Breaker: b.Breaker,
				InFlight: count(b.InFlight), Requests: strconv.FormatUint(b.Requests, 10),
				Failures: strconv.FormatUint(b.Failures, 10), PID: dash,
				Restarts: strconv.FormatUint(b.Restarts, 10),
			}
			switch b.Breaker {
			case "open":
				row.BreakerClass = "bad"
			case "half_open":
				row.BreakerClass = "warn"
			}
			if b.BreakerOpenUntil != nil {
				row.Breaker += " until " + clock(b.BreakerOpenUntil)
			}
			if b.SpawnedPID != 0 {
				row.PID = count(b.SpawnedPID)
			}
			out = append(out, row)
		}
	}
	return out
}
