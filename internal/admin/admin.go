// Package admin serves the operator API on its own listener: health,
// readiness, metrics, the loaded config and reload, and the state of the
// pools. It is net/http, not fasthttp: it is off the hot path, and the
// Prometheus and pprof handlers are net/http handlers.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"net/http/pprof"
	"net/url"
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
	// Console serves the operator console under /ui/, behind the same
	// token (nil: no console).
	Console http.Handler
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
	mux.Handle("/admin/", requireToken(opts.Token, refuseAPI, api))
	if opts.Console != nil {
		mux.Handle("/ui/", consoleLogin(opts.Token, requireToken(opts.Token, refuseConsole, opts.Console)))
	}

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

// TokenCookie carries the admin token for a browser, which cannot send a
// bearer header when it follows a link. It is HttpOnly (no script reads
// it) and SameSite=Strict (no other site's page sends it); the proxy
// removes it from requests before they reach a worker.
const TokenCookie = proxy.AdminCookie

// requireToken guards next with the admin token when one is set: a request
// presents it as "Authorization: Bearer TOKEN" or in the TokenCookie;
// refuse answers one that does not. A request that came with the cookie
// alone and changes something must also come from a page of this
// listener: SameSite keeps other sites out, but not a page on another
// port of the same host (the gateway's client port serves backends'
// pages), and a form on such a page would carry the cookie.
func requireToken(token func() string, refuse http.HandlerFunc, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := token()
		if want == "" {
			next.ServeHTTP(w, r)
			return
		}
		got, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		switch {
		case bearer && equalToken(got, want):
			// A client that sends the header chose to: nothing to forge.
		case cookieToken(r, want):
			if r.Method != http.MethodGet && r.Method != http.MethodHead && !sameOrigin(r) {
				writeError(w, http.StatusForbidden, "cross_origin",
					"a request authorized by the console cookie must come from the console's own pages")
				return
			}
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice-admin"`)
			refuse(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// equalToken compares a presented token with the admin token in constant
// time, so that the answer's timing does not tell how much of it matched.
func equalToken(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// cookieToken reports whether r carries the admin token in TokenCookie.
func cookieToken(r *http.Request, want string) bool {
	c, err := r.Cookie(TokenCookie)
	return err == nil && equalToken(c.Value, want)
}

// sameOrigin reports whether a browser sent r from a page of this
// listener: Sec-Fetch-Site and Origin, when present, must say so (every
// current browser sends Origin on a POST; a client that sends neither is
// not a browser, and so not a forged form).
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// consoleLogin trades ?token=TOKEN on a console page for the token
// cookie, then sends the browser (303) to the same page without the token
// in its address, where it no longer shows in the history or a referrer.
// A wrong token is refused and sets nothing. Without an admin token the
// console is open and the parameter means nothing.
func consoleLogin(token func() string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := token()
		query := r.URL.Query()
		if want == "" || r.Method != http.MethodGet || !query.Has("token") {
			next.ServeHTTP(w, r)
			return
		}
		if !equalToken(query.Get("token"), want) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice-admin"`)
			refuseConsole(w, r)
			return
		}
		if !cookieSafe(want) {
			writeError(w, http.StatusBadRequest, "token_not_cookie_safe",
				"admin.token has characters a cookie cannot carry; send it as Authorization: Bearer")
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name: TokenCookie, Value: want, Path: "/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
		})
		query.Del("token")
		back := url.URL{Path: r.URL.Path, RawQuery: query.Encode()}
		http.Redirect(w, r, back.String(), http.StatusSeeOther)
	})
}

// cookieSafe reports whether s can be a cookie value as it is (RFC 6265
// section 4.1.1: printable ASCII but for space, '"', ',', ';' and '\\').
func cookieSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return s != ""
}

// refuseAPI answers an /admin/* request without the token.
func refuseAPI(w http.ResponseWriter, _ *http.Request) {
	writeError(w, http.StatusUnauthorized, "unauthorized", "admin token missing or wrong")
}

// refuseConsole answers a console page without the token: a page that
// says how to open the console, never the token.
func refuseConsole(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, consoleUnauthorized)
}

const consoleUnauthorized = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice · admin token required</title>
<link rel="icon" href="data:,">
</head>
<body>
<h1>Admin token required</h1>
<p>This gateway has an <code>admin.token</code>. Open the console as <code>/ui/?token=TOKEN</code> once: the token is kept in a cookie for this browser session.</p>
</body>
</html>
`

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

// BackendView is one backend of a pool as GET /admin/pools shows it; the
// console's pools table reads the same.
type BackendView struct {
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
	// Conns are the connections open to it, idle keep-alive ones included.
	Conns    int    `json:"conns"`
	Requests uint64 `json:"requests"`
	Failures uint64 `json:"failures"`
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

// PoolView is one pool and its backends as GET /admin/pools shows it.
type PoolView struct {
	Name     string        `json:"name"`
	Balance  string        `json:"balance"`
	Spawned  bool          `json:"spawned"`
	Backends []BackendView `json:"backends"`
}

func showPools(w http.ResponseWriter, s *proxy.Snapshot) {
	writeJSON(w, http.StatusOK, map[string]any{"pools": Pools(s)})
}

// Pools describes the snapshot's pools and the state of their backends
// now, by pool name (empty, not nil, for a nil snapshot).
func Pools(s *proxy.Snapshot) []PoolView {
	pools := []PoolView{}
	if s != nil {
		for name, p := range s.Pools {
			pc := s.Config.Pools[name]
			v := PoolView{Name: name, Balance: pc.Balance, Spawned: pc.Spawn != nil, Backends: []BackendView{}}
			for i, m := range p.Members {
				b := BackendView{
					Addr: m.Addr, Weight: p.Weight(i), Available: p.Available(i), Healthy: m.Healthy(),
					Breaker: m.Breaker().StateName(), BreakerOpenUntil: utcOrNil(m.Breaker().OpenUntil()),
					InFlight: m.Pending(), Conns: m.OpenConns(), Requests: m.Requests(), Failures: m.Failures(),
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
	return pools
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
