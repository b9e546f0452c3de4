package backend

import (
	"errors"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

var testBreaker = BreakerSettings{
	FailureRatio: 0.5, MinRequests: 10, ConsecutiveFailures: 3, HalfOpenRequests: 1,
	OpenFor: 50 * time.Millisecond, Window: 10 * time.Second,
}

func run(br *Breaker, err error) (ran bool, got error) {
	got = br.Do(func() error { ran = true; return err })
	return ran, got
}

// Consecutive failures open the breaker; open, it refuses without running
// the attempt and says until when; after open_for one probe goes through
// and its success closes it.
func TestBreakerOpensOnConsecutiveFailuresAndClosesAfterAProbe(t *testing.T) {
	br := newBackend("127.0.0.1:1").BreakerFor(testBreaker)
	boom := errors.New("connection refused")
	for i := range 3 {
		if _, err := run(br, boom); err != boom {
			t.Fatalf("failure %d: got %v, want the attempt's own error", i, err)
		}
	}
	if br.State() != BreakerOpen || br.Allowing() || br.OpenUntil().IsZero() {
		t.Fatalf("after 3 failures: state %d allowing %v open until %v; want open", br.State(), br.Allowing(), br.OpenUntil())
	}
	if ran, err := run(br, nil); ran || err != ErrBreakerOpen {
		t.Fatalf("open breaker: ran %v err %v; want refused without running", ran, err)
	}
	time.Sleep(testBreaker.OpenFor + 10*time.Millisecond)
	if !br.Allowing() {
		t.Fatal("open_for over but not allowing a probe")
	}
	if ran, err := run(br, nil); !ran || err != nil {
		t.Fatalf("half-open probe: ran %v err %v", ran, err)
	}
	if br.State() != BreakerClosed || !br.OpenUntil().IsZero() || br.StateName() != "closed" {
		t.Fatalf("after a good probe: %s, want closed", br.StateName())
	}
}

// The ratio trips only once min_requests attempts are in the window, and
// 5xx answers count as failures.
func TestBreakerTripsOnRatioAfterMinRequests(t *testing.T) {
	br := newBackend("127.0.0.1:1").BreakerFor(testBreaker)
	for i := range 9 { // alternate, never 3 failures in a row
		err := error(nil)
		if i%2 == 0 {
			err = ErrServerError
		}
		run(br, err)
		if br.State() != BreakerClosed {
			t.Fatalf("open after %d attempts; min_requests is 10", i+1)
		}
	}
	run(br, nil) // 10 attempts, 5 failed: ratio 0.5 reached on the next failure
	if br.State() != BreakerClosed {
		t.Fatal("a success opened the breaker")
	}
	run(br, ErrServerError)
	if br.State() != BreakerOpen {
		t.Fatalf("6 of 11 failed at ratio 0.5: state %s, want open", br.StateName())
	}
}

// Every connection busy is the gateway's own limit: it neither fails nor
// trips the breaker.
func TestBreakerIgnoresNoFreeConns(t *testing.T) {
	br := newBackend("127.0.0.1:1").BreakerFor(testBreaker)
	for range 10 {
		run(br, fasthttp.ErrNoFreeConns)
	}
	if br.State() != BreakerClosed || br.cb.Counts().TotalFailures != 0 {
		t.Fatalf("no_free_conn counted: state %s, counts %+v", br.StateName(), br.cb.Counts())
	}
}

// A reload that keeps the settings keeps the breaker and its state; new
// settings start a closed one.
func TestBreakerForKeepsStateForTheSameSettings(t *testing.T) {
	b := newBackend("127.0.0.1:1")
	br := b.BreakerFor(testBreaker)
	for range 3 {
		run(br, ErrServerError)
	}
	if again := b.BreakerFor(testBreaker); again != br || again.State() != BreakerOpen {
		t.Fatal("same settings: a different or closed breaker")
	}
	changed := testBreaker
	changed.OpenFor = time.Minute
	if fresh := b.BreakerFor(changed); fresh == br || fresh.State() != BreakerClosed {
		t.Fatal("changed settings: want a fresh closed breaker")
	}
}
