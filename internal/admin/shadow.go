package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/sluice-gw/sluice/internal/shadow"
)

// showShadow serves the shadow report as JSON, or as a page with
// ?format=html.
func showShadow(w http.ResponseWriter, r *http.Request, reg *shadow.Registry) {
	reports := reg.Report()
	if r.URL.Query().Get("format") == "html" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := shadow.RenderHTML(w, reports, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"shadow": reports})
}

// resetShadow starts one route's shadow report afresh, or every route's
// when the body names none.
func resetShadow(w http.ResponseWriter, r *http.Request, reg *shadow.Registry) {
	var req struct {
		Route string `json:"route"`
	}
	if !readOptionalJSON(w, r, &req, `{"route": NAME}, or empty for every route`) {
		return
	}
	if req.Route == "" {
		reg.ResetAll()
		writeJSON(w, http.StatusOK, map[string]any{"reset": "all"})
		return
	}
	if !reg.Reset(req.Route) {
		writeError(w, http.StatusNotFound, "no_route", fmt.Sprintf("route %q has no shadow", req.Route))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reset": req.Route})
}

// readOptionalJSON decodes a small JSON request body into v; an empty
// body leaves v as it is. On a bad body it answers 400, saying what the
// body must be, and returns false.
func readOptionalJSON(w http.ResponseWriter, r *http.Request, v any, shape string) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<10))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "reading the body: "+err.Error())
		return false
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, v); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "the body must be "+shape+": "+err.Error())
			return false
		}
	}
	return true
}
