package admin

import (
	"net/http"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/limits"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/redisconn"
)

// rateLimitView is one rate_limit entry: its settings and what it has
// seen on this gateway.
type rateLimitView struct {
	*config.RateLimit
	limits.Stats
	// Fallback: a global limit deciding by on_redis_error now, because
	// Redis is down or slow.
	Fallback bool `json:"fallback"`
}

type routeLimitsView struct {
	Route string `json:"route"`
	// MaxInFlight is the route's cap (0: none); InFlight its requests in
	// progress, counted while it has one.
	MaxInFlight int             `json:"max_in_flight"`
	InFlight    int64           `json:"in_flight"`
	RateLimits  []rateLimitView `json:"rate_limits"`
}

// showLimits answers GET /admin/limits: per route, the cap on requests in
// progress and each rate limit with its keys, refusals and Redis
// fallback; and the state of the Redis global limits use.
func showLimits(w http.ResponseWriter, s *proxy.Snapshot, conn *redisconn.Conn) {
	routes := []routeLimitsView{}
	redisDown := conn.Down()
	if s != nil {
		for i, r := range s.Routes {
			rc := s.Config.Routes[i]
			if rc.MaxInFlight == 0 && len(rc.RateLimit) == 0 {
				continue
			}
			inFlight, stats := r.LimitStats()
			v := routeLimitsView{Route: r.Name, MaxInFlight: rc.MaxInFlight, InFlight: inFlight, RateLimits: []rateLimitView{}}
			for j, e := range rc.RateLimit {
				v.RateLimits = append(v.RateLimits, rateLimitView{RateLimit: e, Stats: stats[j], Fallback: e.Scope == config.ScopeGlobal && redisDown})
			}
			routes = append(routes, v)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"routes": routes, "redis": conn.State()})
}
