package admin

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// cacheView is one cached route: its settings and its in-process cache.
type cacheView struct {
	Route    string      `json:"route"`
	TTL      string      `json:"ttl"`
	MaxBytes int64       `json:"max_bytes"`
	Shared   bool        `json:"shared"`
	Coalesce bool        `json:"coalesce"`
	Vary     []string    `json:"vary"`
	Stats    cache.Stats `json:"stats"`
}

// showCache answers GET /admin/cache: per cached route, its settings and
// entries, bytes, evictions and shared-cache counts.
func showCache(w http.ResponseWriter, s *proxy.Snapshot, reg *cache.Registry) {
	views := []cacheView{}
	stores := reg.Stores()
	if s != nil {
		for _, rc := range s.Config.Routes {
			st, ok := stores[rc.Name]
			if rc.Cache == nil || !ok {
				continue
			}
			c := rc.Cache
			views = append(views, cacheView{Route: rc.Name, TTL: c.TTL.D().String(), MaxBytes: int64(c.MaxBytes),
				Shared: c.Shared, Coalesce: c.Coalesce, Vary: append([]string{}, c.Vary...), Stats: st.Stats()})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"routes": views})
}

// purgeTimeout bounds the Redis part of a purge.
const purgeTimeout = 10 * time.Second

// purgeCache answers POST /admin/cache/purge {route?, pool?}: removes the
// matching answers, in process and in the shared cache, and says how
// many. An empty body purges everything.
func purgeCache(w http.ResponseWriter, r *http.Request, s *proxy.Snapshot, reg *cache.Registry) {
	var req struct {
		Route string `json:"route"`
		Pool  string `json:"pool"`
	}
	if !readOptionalJSON(w, r, &req, `{"route": NAME, "pool": NAME}, either optional`) {
		return
	}
	if req.Route != "" && (s == nil || s.Route(req.Route) == nil) {
		writeError(w, http.StatusNotFound, "no_route", fmt.Sprintf("no route %q", req.Route))
		return
	}
	if req.Pool != "" && (s == nil || s.Pools[req.Pool] == nil) {
		writeError(w, http.StatusNotFound, "no_pool", fmt.Sprintf("no pool %q", req.Pool))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), purgeTimeout)
	defer cancel()
	purged, err := reg.Purge(ctx, req.Route, req.Pool)
	out := map[string]any{"purged": purged.Memory, "purged_shared": purged.Shared}
	if err != nil {
		out["error"] = err.Error()
		writeJSON(w, http.StatusBadGateway, out)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
