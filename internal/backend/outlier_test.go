package backend

import (
	"testing"
	"time"
)

var testOutlier = Outlier{ConsecutiveFailures: 3, EjectFor: 10 * time.Second, MaxEjectFor: 25 * time.Second}

func always() bool { return true }

// A run of failures ejects at the threshold; each ejection in a row lasts
// longer, up to the cap; a success ends a run before it gets there.
func TestObserveEjectsOnConsecutiveFailuresForGrowingTimes(t *testing.T) {
	b := newBackend("127.0.0.1:1")
	now := time.Unix(1000, 0)
	fail := func(n int) (ejected bool) {
		for range n {
			ejected = b.Observe(true, testOutlier, now, always)
		}
		return ejected
	}
	if fail(2) || b.Observe(false, testOutlier, now, always) || fail(2) {
		t.Fatal("ejected before three failures in a row")
	}
	if !fail(1) {
		t.Fatal("three failures in a row did not eject")
	}
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 25 * time.Second, 25 * time.Second} {
		if i > 0 {
			now = time.Unix(0, b.out.ejectedUntil.Load()) // the ejection ends
			if fail(3) != true {
				t.Fatalf("ejection %d did not happen", i+1)
			}
		}
		if got := time.Unix(0, b.out.ejectedUntil.Load()).Sub(now); got != want {
			t.Fatalf("ejection %d lasts %v, want %v", i+1, got, want)
		}
		if !b.Ejected(now) || !b.Ejected(now.Add(want-time.Nanosecond)) || b.Ejected(now.Add(want)) {
			t.Fatalf("ejection %d: not ejected exactly for %v", i+1, want)
		}
	}
	// Serving well for eject_for after the last ejection forgets them.
	now = time.Unix(0, b.out.ejectedUntil.Load()).Add(testOutlier.EjectFor)
	b.Observe(false, testOutlier, now, always)
	if b.Ejections() != 0 {
		t.Fatalf("ejections %d after serving well for eject_for, want 0", b.Ejections())
	}
}

// The pool's max_ejected_percent has the last word.
func TestObserveRespectsThePoolLimit(t *testing.T) {
	b := newBackend("127.0.0.1:1")
	now := time.Unix(1000, 0)
	for range 10 {
		if b.Observe(true, testOutlier, now, func() bool { return false }) {
			t.Fatal("ejected although the pool has no room")
		}
	}
	if b.Ejected(now) {
		t.Fatal("ejected")
	}
}

// A backend declared up after a health probe is back at once.
func TestSetDownFalseEndsAnEjection(t *testing.T) {
	b := newBackend("127.0.0.1:1")
	now := time.Now()
	for range 3 {
		b.Observe(true, testOutlier, now, always)
	}
	if b.Available() {
		t.Fatal("available while ejected")
	}
	b.SetDown(false)
	if !b.Available() || !b.EjectedUntil().IsZero() {
		t.Fatal("still ejected after a passed health probe")
	}
}
