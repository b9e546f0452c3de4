package admin

import (
	"errors"
	"mime"
	"net/http"
	"net/url"

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
//
// A plain HTML form post (the console's buttons without JavaScript) is
// sent back to the console's rollouts page (303), which shows the outcome
// in its flash line, instead of to a JSON answer.
func actOnRollout(w http.ResponseWriter, r *http.Request, reg *rollout.Registry) {
	route, action := r.PathValue("route"), r.PathValue("action")
	st, err := reg.Act(r.Context(), route, action)
	if isFormPost(r) {
		flash := route + ": " + action + " → " + string(st.Phase)
		if err != nil {
			flash = route + ": " + action + ": " + err.Error()
		}
		http.Redirect(w, r, "/ui/rollouts?"+url.Values{"flash": {flash}}.Encode(), http.StatusSeeOther)
		return
	}
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

// isFormPost reports whether r is a browser's plain form submission.
func isFormPost(r *http.Request) bool {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return ct == "application/x-www-form-urlencoded" || ct == "multipart/form-data"
}
