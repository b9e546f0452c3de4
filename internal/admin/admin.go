// Package admin serves the operator API on its own listener: health,
// readiness, metrics, the loaded config and reload, and the state of the
// pools. It is net/http, not fasthttp: it is off the hot path, and the
// Prometheus and pprof handlers are net/http handlers.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/experiments"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/redisconn"
	"github.com/sluice-gw/sluice/internal/rollout"
	"github.com/sluice-gw/sluice/internal/shadow"
)

// Gateway is what the admin API reads and drives.
type Gateway interface {
	// Snapshot is the config serving now; nil before the first load.
	Snapshot() *proxy.Snapshot
	// Reload reads the config file again and applies it if valid.
	Reload(trigger string) (generation uint64, err error)
	// LastError is the last rejected config, or nil if the last load
	// succeeded.
	LastError() *LoadError
	// Experiments is the A/B state of the split routes.
	Experiments() *experiments.Registry
	// Shadows is the comparison state of the shadowed routes.
	Shadows() *shadow.Registry
	// Redis is the connection requests use (rate limits, shared cache).
	Redis() *redisconn.Conn
	// Caches are the routes' response caches.
	Caches() *cache.Registry
	// Rollouts is the progressive delivery state of the canary routes.
	Rollouts() *rollout.Registry
	// Auth is the keys and JWT files the routes' auth reads.
	Auth() *auth.Store
}

// LoadError describes a rejected config file.
type LoadError struct {
	At     time.Time `json:"at"`
	SHA256 string    `json:"sha256,omitempty"`
	Errors []string  `json:"errors"`
}

// Options are the admin listener's settings fixed at start.
type Options struct {
	Pprof bool
	// Token returns the bearer token /admin/* requires now ("" for none);
	// it is read per request so that a reload can rotate it.
	Token func() string
}

// Handler builds the admin mux.
func Handler(g Gateway, metrics http.Handler, opts Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		reasons := readiness(g.Snapshot())
		if len(reasons) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "reasons": reasons})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.Handle("GET /metrics", metrics)

	api := http.NewServeMux()
	api.HandleFunc("GET /admin/config", func(w http.ResponseWriter, _ *http.Request) { showConfig(w, g) })
	api.HandleFunc("POST /admin/reload", func(w http.ResponseWriter, _ *http.Request) {
		gen, err := g.Reload("admin")
		if err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"errors": strings.Split(err.Error(), "\n")})
			return
		}
		writeJSON(w, http.StatusOK, map[string]uint64{"generation": gen})
	})
	api.HandleFunc("GET /admin/pools", func(w http.ResponseWriter, _ *http.Request) { showPools(w, g.Snapshot()) })
	api.HandleFunc("GET /admin/cache", func(w http.ResponseWriter, _ *http.Request) { showCache(w, g.Snapshot(), g.Caches()) })
	api.HandleFunc("POST /admin/cache/purge", func(w http.ResponseWriter, r *http.Request) { purgeCache(w, r, g.Snapshot(), g.Caches()) })
	api.HandleFunc("GET /admin/limits", func(w http.ResponseWriter, _ *http.Request) { showLimits(w, g.Snapshot(), g.Redis()) })
	api.HandleFunc("GET /admin/experiments", func(w http.ResponseWriter, r *http.Request) { showExperiments(w, r, g.Experiments()) })
	api.HandleFunc("POST /admin/experiments/{route}/outcomes", func(w http.ResponseWriter, r *http.Request) { recordOutcomes(w, r, g) })
	api.HandleFunc("GET /admin/shadow", func(w http.ResponseWriter, r *http.Request) { showShadow(w, r, g.Shadows()) })
	api.HandleFunc("POST /admin/shadow/reset", func(w http.ResponseWriter, r *http.Request) { resetShadow(w, r, g.Shadows()) })
	api.HandleFunc("GET /admin/auth", func(w http.ResponseWriter, _ *http.Request) { showAuth(w, g.Snapshot(), g.Auth()) })
	api.HandleFunc("GET /admin/rollouts", func(w http.ResponseWriter, _ *http.Request) { showRollouts(w, g.Rollouts()) })
	api.HandleFunc("POST /admin/rollouts/{route}/{action}", func(w http.ResponseWriter, r *http.Request) { actOnRollout(w, r, g.Rollouts()) })
	mux.Handle("/admin/", requireToken(opts.Token, api))

	if opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func readiness(s *proxy.Snapshot) []string {
	if s == nil {
		return []string{"no config loaded"}
	}
	return s.Ready()
}

// requireToken guards /admin/* with a bearer token when one is set.
func requireToken(token func() string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := token()
		if want != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sluice-admin"`)
				writeError(w, http.StatusUnauthorized, "unauthorized", "admin token missing or wrong")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func showConfig(w http.ResponseWriter, g Gateway) {
	out := map[string]any{"last_error": g.LastError()}
	if s := g.Snapshot(); s != nil {
		out["generation"] = s.Generation
		out["loaded_at"] = s.LoadedAt.UTC().Format(time.RFC3339Nano)
		out["sha256"] = s.SHA256
		out["config"] = s.Config
	}
	writeJSON(w, http.StatusOK, out)
}

type backendView struct {
	Addr   string `json:"addr"`
	Weight int    `json:"weight"`
	// Available: the backend may take traffic now (not down, healthy, not
	// ejected, breaker not open). Healthy is the active health checks'
	// verdict (true when the pool has none).
	Available bool `json:"available"`
	Healthy   bool `json:"healthy"`
	// Breaker is closed, half_open or open; BreakerOpenUntil is when an
	// open one lets a probe through.
	Breaker          string     `json:"breaker"`
	BreakerOpenUntil *time.Time `json:"breaker_open_until"`
	InFlight         int64      `json:"in_flight"`
	Requests         uint64     `json:"requests"`
	Failures         uint64     `json:"failures"`
	// EjectedUntil is when the current outlier ejection ends (null when
	// not ejected); ConsecutiveFailures the current run of failed
	// attempts; Ejections the ejections in a row, each longer.
	EjectedUntil        *time.Time `json:"ejected_until"`
	ConsecutiveFailures int64      `json:"consecutive_failures"`
	Ejections           int64      `json:"ejections"`
	// SpawnedPID is the worker process the gateway runs here (0: none);
	// Restarts counts its restarts.
	SpawnedPID int64  `json:"spawned_pid"`
	Restarts   uint64 `json:"restarts"`
}

type poolView struct {
	Name     string        `json:"name"`
	Balance  string        `json:"balance"`
	Spawned  bool          `json:"spawned"`
	Backends []backendView `json:"backends"`
}

func showPools(w http.ResponseWriter, s *proxy.Snapshot) {
	pools := []poolView{}
	if s != nil {
		for name, p := range s.Pools {
			pc := s.Config.Pools[name]
			v := poolView{Name: name, Balance: pc.Balance, Spawned: pc.Spawn != nil, Backends: []backendView{}}
			for i, m := range p.Members {
				b := backendView{
					Addr: m.Addr, Weight: p.Weight(i), Available: p.Available(i), Healthy: m.Healthy(),
					Breaker: m.Breaker().StateName(), BreakerOpenUntil: utcOrNil(m.Breaker().OpenUntil()),
					InFlight: m.Pending(), Requests: m.Requests(), Failures: m.Failures(),
					ConsecutiveFailures: m.ConsecutiveFailures(), Ejections: m.Ejections(),
					SpawnedPID: m.SpawnedPID(), Restarts: m.Restarts(),
				}
				b.EjectedUntil = utcOrNil(m.EjectedUntil())
				v.Backends = append(v.Backends, b)
			}
			pools = append(pools, v)
		}
	}
	sort.Slice(pools, func(i, j int) bool { return pools[i].Name < pools[j].Name })
	writeJSON(w, http.StatusOK, map[string]any{"pools": pools})
}

// utcOrNil is t in UTC, or nil (JSON null) for the zero time.
func utcOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
