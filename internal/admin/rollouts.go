package admin

import (
	"errors"
	"net/http"

	"github.com/sluice-gw/sluice/internal/rollout"
)

// showRollouts lists every canary route's rollout.
func showRollouts(w http.ResponseWriter, reg *rollout.Registry) {
	writeJSON(w, http.StatusOK, map[string]any{"rollouts": reg.Report()})
}

// actOnRollout applies pause, resume, promote or abort to a route's
// rollout and answers with its state: 404 for a route without a canary
// or an unknown action, 409 for an action the state does not allow, 503
// when the state store (Redis) did not answer.
func actOnRollout(w http.ResponseWriter, r *http.Request, reg *rollout.Registry) {
	route, action := r.PathValue("route"), r.PathValue("action")
	st, err := reg.Act(r.Context(), route, action)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]any{"rollout": st})
	case errors.Is(err, rollout.ErrNoRollout):
		writeError(w, http.StatusNotFound, "no_rollout", "route "+route+" has no canary rollout")
	case errors.Is(err, rollout.ErrUnknownAction):
		writeError(w, http.StatusNotFound, "unknown_action", err.Error())
	case errors.Is(err, rollout.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	default:
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	}
}
