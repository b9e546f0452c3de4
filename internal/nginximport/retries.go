package nginximport

import (
	"slices"
	"strconv"
)

// retries is a route's retries as translated.
type retries struct {
	attempts      int
	on            []string
	nonIdempotent bool
}

// maxRetryAttempts is the most retries.attempts the gateway takes.
const maxRetryAttempts = 10

// nextUpstream maps proxy_next_upstream's conditions (ngx_http_proxy_module)
// to the gateway's retries.on. "error" is "an error occurred while
// establishing a connection with the server, passing a request to it, or
// reading the response header": a refused connection, or a broken one.
var nextUpstream = map[string][]string{
	"error":          {"connect_error", "bad_response"},
	"timeout":        {"timeout"},
	"invalid_header": {"bad_response"},
	"http_500":       {"500"},
	"http_502":       {"502"},
	"http_503":       {"503"},
	"http_504":       {"504"},
}

// retries turns proxy_next_upstream and proxy_next_upstream_tries into the
// route's retries. Only an explicit setting is translated: without one
// nginx tries every server on error and timeout, the gateway once more on
// a refused connection (see the README for why that default is kept).
// proxy_next_upstream_tries counts the first try, retries.attempts does
// not; 0 (nginx's default) means every server, which is the pool's
// backends and its fallback's, less the first.
func (t *translator) retries(sc *scope, r *route) *retries {
	nu, tries := sc.get("proxy_next_upstream"), sc.get("proxy_next_upstream_tries")
	if nu == nil && tries == nil {
		return nil
	}
	conds := []string{"error", "timeout"} // nginx's default
	if nu != nil {
		conds = nu.Args
		t.use(nu)
	}
	out := &retries{}
	for _, c := range conds {
		switch {
		case c == "off":
			t.use(tries)
			return &retries{attempts: 0}
		case c == "non_idempotent":
			out.nonIdempotent = true
		case nextUpstream[c] != nil:
			for _, on := range nextUpstream[c] {
				if !slices.Contains(out.on, on) {
					out.on = append(out.on, on)
				}
			}
		case c == "http_403" || c == "http_404" || c == "http_429":
			t.note(nu, "the gateway retries failures and 5xx answers only: %s is not translated", c)
		default:
			t.note(nu, "%s is not a proxy_next_upstream condition", c)
		}
	}
	every := 0
	for _, name := range r.poolNames() {
		p := t.poolByName(name)
		n := len(p.backends)
		if p.backup != nil && r.split == nil {
			n += len(p.backup.backends)
		}
		every = max(every, n-1)
	}
	out.attempts = min(max(every, 1), maxRetryAttempts)
	if tries != nil {
		n, err := strconv.Atoi(arg(tries, 0))
		switch {
		case err != nil || n < 0:
			t.note(tries, "not a number nginx would take; every server is tried")
		case n > maxRetryAttempts+1:
			t.note(tries, "the gateway retries at most %d times: attempts is %d", maxRetryAttempts, maxRetryAttempts)
			out.attempts = maxRetryAttempts
			t.use(tries)
		case n > 0:
			out.attempts = n - 1
			t.use(tries)
		default:
			t.use(tries)
		}
	}
	return out
}
