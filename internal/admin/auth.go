package admin

import (
	"net/http"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// routeAuthView is who may call one route.
type routeAuthView struct {
	Route string `json:"route"`
	// Auth is the block in force (the route's, else the server's); absent
	// for a public route. A jwt secret is never shown.
	Auth *config.Auth `json:"auth,omitempty"`
	Tags []string     `json:"tags,omitempty"`
	CORS *config.CORS `json:"cors,omitempty"`
}

// showAuth answers GET /admin/auth: each route's auth and CORS, the keys
// and JWT files with when they loaded and their last error, and each API
// key's name, scope and rate limit. Never a key, a key's hash or a secret.
func showAuth(w http.ResponseWriter, s *proxy.Snapshot, store *auth.Store) {
	routes := []routeAuthView{}
	var server *config.Server
	if s != nil {
		server = &s.Config.Server
		for _, rc := range s.Config.Routes {
			routes = append(routes, routeAuthView{Route: rc.Name, Auth: s.Config.AuthFor(rc), Tags: rc.Tags, CORS: rc.CORS})
		}
	}
	out := map[string]any{"routes": routes, "files": store.Status()}
	if server != nil {
		out["audit"] = server.Audit
		out["security_headers"] = server.SecurityHeaders
	}
	writeJSON(w, http.StatusOK, out)
}
