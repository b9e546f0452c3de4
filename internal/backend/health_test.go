package backend

import (
	"testing"
	"time"
)

// Failing probes take a backend out only after unhealthy_after in a row;
// passing ones bring it back only after healthy_after in a row, and that
// return also ends an outlier ejection.
func TestProbedThresholds(t *testing.T) {
	b := newBackend("127.0.0.1:1")
	steps := []struct {
		ok          bool
		wantChanged bool
		wantHealthy bool
	}{
		{false, false, true}, {true, false, true}, // a pass breaks the failing run
		{false, false, true}, {false, false, true}, {false, true, false}, // third failure in a row
		{false, false, false},                                             // already out
		{true, false, false}, {false, false, false}, {true, false, false}, // a failure breaks the passing run
		{true, true, true}, // second pass in a row
		{true, false, true},
	}
	for i, s := range steps {
		if i == 9 {
			// Eject it while unhealthy: coming back must end that too.
			for range testOutlier.ConsecutiveFailures {
				b.Observe(true, testOutlier, time.Now(), always)
			}
			if b.EjectedUntil().IsZero() {
				t.Fatal("setup: not ejected")
			}
		}
		if changed := b.Probed(s.ok, 2, 3); changed != s.wantChanged || b.Healthy() != s.wantHealthy {
			t.Fatalf("probe %d (ok %v): changed %v healthy %v, want %v %v", i, s.ok, changed, b.Healthy(), s.wantChanged, s.wantHealthy)
		}
		if b.Available() != s.wantHealthy {
			t.Fatalf("probe %d: available %v, want %v", i, b.Available(), s.wantHealthy)
		}
	}
}

// A backend no pool checks any more is not held out by an old verdict.
func TestUnprobedForgetsTheVerdict(t *testing.T) {
	b := newBackend("127.0.0.1:1")
	for range 3 {
		b.Probed(false, 2, 3)
	}
	if b.Available() {
		t.Fatal("available after three failed probes")
	}
	b.Unprobed()
	if !b.Healthy() || !b.Available() {
		t.Fatal("still out after Unprobed")
	}
	// The count starts afresh: one failure is not three.
	b.Probed(false, 2, 3)
	if !b.Healthy() {
		t.Fatal("out after one failure following Unprobed")
	}
}
