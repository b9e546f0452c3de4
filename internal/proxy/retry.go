package proxy

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/backend"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/metrics"
)

// retryPolicy is a route's compiled retries block: how many more tries a
// failed request gets, on which failures, and the budget that bounds
// them all.
type retryPolicy struct {
	attempts      int
	outcomes      map[string]bool // failure outcomes worth another try
	codes         [100]bool       // 5xx answers worth another try, by code-500
	nonIdempotent bool            // retry requests that reached a backend whatever their method
	budget        *retryBudget
}

func compileRetries(rc *config.Retries) *retryPolicy {
	if rc == nil {
		rc = config.DefaultRetries()
	}
	p := &retryPolicy{
		attempts:      rc.Attempts,
		outcomes:      map[string]bool{},
		nonIdempotent: rc.NonIdempotent,
		budget:        &retryBudget{percent: rc.BudgetPercent},
	}
	for _, on := range rc.On {
		switch code, err := strconv.Atoi(on); {
		case on == "http_5xx":
			for i := range p.codes {
				p.codes[i] = true
			}
		case err == nil && code >= 500 && code < 600:
			p.codes[code-500] = true
		default:
			p.outcomes[on] = true
		}
	}
	return p
}

// worthRetrying reports whether a failed attempt may be tried again on
// another backend: the failure is one the route retries on, and the
// request either never reached the backend or is safe to send twice.
// outcome is the attempt's outcome label; status the backend's answer
// when it answered.
func (p *retryPolicy) worthRetrying(outcome string, status int, method []byte) bool {
	switch {
	case outcome == metrics.OutcomeHTTP5xx:
		if status < 500 || status > 599 || !p.codes[status-500] {
			return false
		}
	case !p.outcomes[outcome]:
		return false
	}
	if outcome == metrics.OutcomeConnectError || outcome == metrics.OutcomeNoConn {
		return true // never sent
	}
	return p.nonIdempotent || backend.Idempotent(method)
}

// budgetSeconds is the budget's window: retries are counted against the
// requests of the last ten seconds. While the window's share comes to
// fewer than budgetFloor retries, budgetFloor retries may be in flight at
// once whatever it says, so that a quiet route still retries its
// occasional failure (Envoy's retry_budget keeps min_retry_concurrency
// for the same reason: the limit is the larger of the two, never their
// sum).
const (
	budgetSeconds = 10
	budgetFloor   = 3
)

// retryBudget caps a route's retries at a share of its recent requests,
// after Envoy's retry_budget: when every backend fails under load,
// retries cannot multiply the load on them. Counts live in one-second
// buckets.
type retryBudget struct {
	percent float64
	active  atomic.Int64 // retries in flight
	buckets [budgetSeconds]budgetBucket
}

type budgetBucket struct {
	second   atomic.Int64
	requests atomic.Int64
	retries  atomic.Int64
}

// bucket returns the bucket of the second now, emptied first if it last
// counted an older second. (Two requests racing at the turn of a second
// may lose a count between them; the budget is a bound, not a ledger.)
func (b *retryBudget) bucket(now int64) *budgetBucket {
	bk := &b.buckets[now%budgetSeconds]
	if s := bk.second.Load(); s != now && bk.second.CompareAndSwap(s, now) {
		bk.requests.Store(0)
		bk.retries.Store(0)
	}
	return bk
}

// request counts one client request.
func (b *retryBudget) request(now time.Time) { b.bucket(now.Unix()).requests.Add(1) }

// allow takes one retry from the budget, or reports that there is none.
// A granted retry is in flight until done. The retry is counted before
// the check, so racing retries can only deny each other, never
// overspend.
func (b *retryBudget) allow(now time.Time) bool {
	sec := now.Unix()
	bk := b.bucket(sec)
	bk.retries.Add(1)
	active := b.active.Add(1)
	var requests, retries int64
	for i := range b.buckets {
		o := &b.buckets[i]
		if s := o.second.Load(); s > sec-budgetSeconds && s <= sec {
			requests += o.requests.Load()
			retries += o.retries.Load()
		}
	}
	// The floor only tops up a share smaller than itself. Granting it on
	// top of a spent share would let retries pass the budget whenever
	// fewer than budgetFloor are in flight, which at moderate
	// concurrency is most of the time: with 8 clients and every backend
	// failing, nearly every request got its retries.
	share := b.percent / 100 * float64(requests)
	if float64(retries) <= share || share < budgetFloor && active <= budgetFloor {
		return true
	}
	b.active.Add(-1)
	bk.retries.Add(-1)
	return false
}

// done ends a retry allow granted.
func (b *retryBudget) done() { b.active.Add(-1) }
