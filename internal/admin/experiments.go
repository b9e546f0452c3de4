package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"

	"github.com/sluice-gw/sluice/internal/experiments"
)

// Limits on one outcomes upload.
const (
	maxOutcomesBody  = 4 << 20
	maxOutcomesItems = 100000
)

// outcome is one business result for a sticky key.
type outcome struct {
	Key    string   `json:"key"`
	Metric string   `json:"metric"`
	Value  *float64 `json:"value"`
}

// showExperiments serves the experiments report as JSON, or as a page
// with ?format=html.
func showExperiments(w http.ResponseWriter, r *http.Request, exps *experiments.Registry) {
	reports := exps.Report()
	if r.URL.Query().Get("format") == "html" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := experiments.RenderHTML(w, reports); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"experiments": reports})
}

// recordOutcomes takes [{key, metric, value}] for a sticky split route.
// Each key's variant is recomputed from the route's current salt and
// weights, exactly as a request with that key would be routed, so the
// caller needs no record of who saw what. The upload is checked in full
// before anything is recorded.
func recordOutcomes(w http.ResponseWriter, r *http.Request, g Gateway) {
	name := r.PathValue("route")
	snap := g.Snapshot()
	route := snap.Route(name)
	if route == nil {
		writeError(w, http.StatusNotFound, "no_route", fmt.Sprintf("no route %q", name))
		return
	}
	if route.Experiment == nil {
		writeError(w, http.StatusConflict, "not_a_split", fmt.Sprintf("route %q is not a split: outcomes belong to A/B tests", name))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxOutcomesBody+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "reading the body: "+err.Error())
		return
	}
	if len(body) > maxOutcomesBody {
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("at most %d bytes per upload", maxOutcomesBody))
		return
	}
	var items []outcome
	if err := json.Unmarshal(body, &items); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", `the body must be a JSON array of {"key","metric","value"}: `+err.Error())
		return
	}
	if len(items) == 0 || len(items) > maxOutcomesItems {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("send 1 to %d outcomes, got %d", maxOutcomesItems, len(items)))
		return
	}
	variants := make([]int, len(items))
	for i, it := range items {
		switch {
		case it.Key == "":
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("outcome %d has no key", i))
			return
		case it.Metric == "":
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("outcome %d has no metric", i))
			return
		case it.Value == nil || math.IsNaN(*it.Value) || math.IsInf(*it.Value, 0):
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("outcome %d has no finite value", i))
			return
		}
		v, ok := route.AssignKey([]byte(it.Key))
		if !ok {
			writeError(w, http.StatusConflict, "not_sticky", fmt.Sprintf("route %q has no sticky key: a key cannot be mapped to a variant", name))
			return
		}
		variants[i] = v
	}
	counts := map[string]int{}
	for i, it := range items {
		if err := route.Experiment.AddOutcome(variants[i], it.Metric, *it.Value); err != nil {
			writeError(w, http.StatusUnprocessableEntity, "rejected", fmt.Sprintf("outcome %d: %v (%d recorded before it)", i, err, i))
			return
		}
		counts[route.Variants[variants[i]].Name]++
	}
	writeJSON(w, http.StatusOK, map[string]any{"recorded": len(items), "by_variant": counts})
}

// writeError answers with the gateway's JSON error shape.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
