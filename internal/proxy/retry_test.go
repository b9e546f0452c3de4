package proxy

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/metrics"
)

// A failure is retried only when the route lists it, and a request that
// reached a backend only when its method is idempotent or the route says
// the upstream is safe to retry.
func TestWorthRetrying(t *testing.T) {
	listed := compileRetries(&config.Retries{Attempts: 2, On: []string{"connect_error", "timeout", "503"}, BudgetPercent: 20})
	anyMethod := compileRetries(&config.Retries{Attempts: 2, On: []string{"bad_response", "http_5xx"}, BudgetPercent: 20, NonIdempotent: true})
	defaults := compileRetries(nil)
	cases := []struct {
		name    string
		p       *retryPolicy
		outcome string
		status  int
		method  string
		want    bool
	}{
		{"refused POST: never sent", listed, metrics.OutcomeConnectError, 0, "POST", true},
		{"timeout GET", listed, metrics.OutcomeTimeout, 0, "GET", true},
		{"timeout POST reached the backend", listed, metrics.OutcomeTimeout, 0, "POST", false},
		{"listed 503 on PUT", listed, metrics.OutcomeHTTP5xx, 503, "PUT", true},
		{"unlisted 500", listed, metrics.OutcomeHTTP5xx, 500, "GET", false},
		{"unlisted bad_response", listed, metrics.OutcomeBadResponse, 0, "GET", false},
		{"non_idempotent: POST 5xx", anyMethod, metrics.OutcomeHTTP5xx, 502, "POST", true},
		{"non_idempotent: POST reset", anyMethod, metrics.OutcomeBadResponse, 0, "POST", true},
		{"non_idempotent: unlisted timeout", anyMethod, metrics.OutcomeTimeout, 0, "POST", false},
		{"default: refused", defaults, metrics.OutcomeConnectError, 0, "POST", true},
		{"default: 503", defaults, metrics.OutcomeHTTP5xx, 503, "GET", false},
	}
	for _, c := range cases {
		if got := c.p.worthRetrying(c.outcome, c.status, []byte(c.method)); got != c.want {
			t.Errorf("%s: worthRetrying = %v, want %v", c.name, got, c.want)
		}
	}
	if defaults.attempts != 1 {
		t.Errorf("default attempts %d, want 1", defaults.attempts)
	}
}

// Under load (retries still in flight beyond the floor), the budget
// grants budget_percent of the window's requests, the floor's retries
// included; requests older than the window stop counting.
func TestRetryBudgetCapsRetriesAtAShareOfRecentRequests(t *testing.T) {
	b := &retryBudget{percent: 20}
	now := time.Unix(1_000_000, 0)
	for range 100 {
		b.request(now)
	}
	granted := 0
	for range 100 {
		if b.allow(now) {
			granted++ // and still in flight
		}
	}
	if granted != 20 {
		t.Fatalf("granted %d retries for 100 requests at 20%%, want 20", granted)
	}
	for range granted {
		b.done()
	}
	// Ten seconds on, the window is empty: only the floor is left.
	later := now.Add(budgetSeconds * time.Second)
	for range budgetFloor {
		if !b.allow(later) {
			t.Fatal("floor retry refused")
		}
	}
	if b.allow(later) {
		t.Fatalf("a retry beyond the %d in flight with no recent requests", budgetFloor)
	}
}

// At least budgetFloor retries may be in flight at once whatever the
// window says.
func TestRetryBudgetFloor(t *testing.T) {
	b := &retryBudget{percent: 1}
	now := time.Unix(1_000_000, 0)
	for range budgetFloor {
		if !b.allow(now) {
			t.Fatal("floor retry refused")
		}
	}
	if b.allow(now) {
		t.Fatal("retry granted beyond the floor and the budget")
	}
	b.done()
	if !b.allow(now) {
		t.Fatal("a finished floor retry did not free its place")
	}
}
