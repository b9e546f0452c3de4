package routing

import (
	"fmt"
	"math"
	"sync"
	"testing"
)

func TestSmoothSplitIsExactInEveryWindow(t *testing.T) {
	s := NewSmoothSplit([]int{70, 20, 10})
	counts := make([]int, 3)
	window := make([]int, 3)
	for n := 1; n <= 10000; n++ {
		i := s.Pick()
		counts[i]++
		window[i]++
		if n%10 == 0 { // weights reduce to 7/2/1: every 10 requests
			if window[0] != 7 || window[1] != 2 || window[2] != 1 {
				t.Fatalf("window ending at request %d split %v, want [7 2 1]", n, window)
			}
			window = make([]int, 3)
		}
	}
	if counts[0] != 7000 || counts[1] != 2000 || counts[2] != 1000 {
		t.Fatalf("10000 requests split %v, want [7000 2000 1000]", counts)
	}
}

func TestSmoothSplitIsExactUnderConcurrency(t *testing.T) {
	s := NewSmoothSplit([]int{70, 20, 10})
	var mu sync.Mutex
	counts := make([]int, 3)
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]int, 3)
			for range 10000 / 64 * 10 / 10 {
				local[s.Pick()]++
			}
			mu.Lock()
			for i := range local {
				counts[i] += local[i]
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	total := counts[0] + counts[1] + counts[2]
	// Each pick takes its own slot, so any number of picks is within one
	// of exact, whatever the interleaving.
	for i, w := range []float64{0.7, 0.2, 0.1} {
		if math.Abs(float64(counts[i])-w*float64(total)) > 1 {
			t.Errorf("variant %d got %d of %d, want %.0f", i, counts[i], total, w*float64(total))
		}
	}
}

func TestSmoothSplitWeightZeroTakesAVariantOut(t *testing.T) {
	s := NewSmoothSplit([]int{0, 3, 0, 1})
	for range 1000 {
		if i := s.Pick(); i == 0 || i == 2 {
			t.Fatalf("picked variant %d with weight 0", i)
		}
	}
	if NewSmoothSplit([]int{0, 0}).Pick() != -1 {
		t.Fatal("all weights 0 must pick nothing")
	}
}

func keys(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf("user-%07d", i))
	}
	return out
}

func assign(s *Sticky, ks [][]byte) []int {
	out := make([]int, len(ks))
	for i, k := range ks {
		out[i] = s.Pick(k)
	}
	return out
}

func TestStickySharesFollowWeights(t *testing.T) {
	ks := keys(100000)
	for _, weights := range [][]int{{90, 10}, {80, 20}, {50, 30, 20}, {1, 1, 1, 1}} {
		names := make([]string, len(weights))
		total := 0
		for i, w := range weights {
			names[i], total = fmt.Sprintf("v%d", i), total+w
		}
		counts := make([]int, len(weights))
		for _, v := range assign(NewSticky("salt", names, weights), ks) {
			counts[v]++
		}
		for i, w := range weights {
			share, want := float64(counts[i])/float64(len(ks)), float64(w)/float64(total)
			if math.Abs(share-want) > 0.005 {
				t.Errorf("weights %v: variant %d has %.4f of keys, want %.4f ± 0.005", weights, i, share, want)
			}
		}
	}
}

// TestStickyMovesKeysOnlyToTheVariantThatGrew is the monotonicity promise:
// raising treatment from 10 to 20 moves keys from control to treatment and
// none the other way; in a three-way test, no key moves between the two
// variants whose weights stayed.
func TestStickyMovesKeysOnlyToTheVariantThatGrew(t *testing.T) {
	ks := keys(100000)
	names := []string{"control", "treatment"}
	before := assign(NewSticky("ab-1", names, []int{90, 10}), ks)
	after := assign(NewSticky("ab-1", names, []int{80, 20}), ks)
	toTreatment, toControl := 0, 0
	for i := range ks {
		switch {
		case before[i] == 0 && after[i] == 1:
			toTreatment++
		case before[i] == 1 && after[i] == 0:
			toControl++
		}
	}
	if toControl != 0 {
		t.Fatalf("%d keys moved from treatment to control when treatment grew", toControl)
	}
	if share := float64(toTreatment) / float64(len(ks)); math.Abs(share-0.10) > 0.005 {
		t.Errorf("%.4f of keys moved to treatment, want about 0.10", share)
	}

	three := []string{"a", "b", "c"}
	before = assign(NewSticky("ab-2", three, []int{50, 30, 20}), ks)
	after = assign(NewSticky("ab-2", three, []int{50, 30, 40}), ks)
	for i := range ks {
		if before[i] != after[i] && after[i] != 2 {
			t.Fatalf("key %s moved from %s to %s though only c grew", ks[i], three[before[i]], three[after[i]])
		}
	}
}

// TestStickyAssignmentsArePinned guards stability across versions and
// machines: these keys must keep these variants for this salt and weights,
// or every running experiment would reshuffle on upgrade.
func TestStickyAssignmentsArePinned(t *testing.T) {
	s := NewSticky("iris-ab-1", []string{"control", "treatment"}, []int{90, 10})
	got := ""
	for _, k := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "user-42", ""} {
		got += fmt.Sprint(s.Pick([]byte(k)))
	}
	if want := pinnedAssignments; got != want {
		t.Fatalf("assignments changed: got %s, pinned %s", got, want)
	}
}

func TestStickySaltReshuffles(t *testing.T) {
	ks := keys(10000)
	names := []string{"a", "b"}
	x := assign(NewSticky("one", names, []int{50, 50}), ks)
	y := assign(NewSticky("two", names, []int{50, 50}), ks)
	same := 0
	for i := range ks {
		if x[i] == y[i] {
			same++
		}
	}
	if share := float64(same) / float64(len(ks)); share < 0.45 || share > 0.55 {
		t.Fatalf("a new salt kept %.3f of keys in place, want about half (independent)", share)
	}
}

func BenchmarkSplit(b *testing.B) {
	key := []byte("user-0012345")
	for _, n := range []int{2, 3, 5} {
		names, weights := make([]string, n), make([]int, n)
		for i := range n {
			names[i], weights[i] = fmt.Sprintf("v%d", i), 10*(i+1)
		}
		b.Run(fmt.Sprintf("sticky-%d", n), func(b *testing.B) {
			s := NewSticky("salt", names, weights)
			b.ReportAllocs()
			for b.Loop() {
				s.Pick(key)
			}
		})
		b.Run(fmt.Sprintf("smooth-%d", n), func(b *testing.B) {
			s := NewSmoothSplit(weights)
			b.ReportAllocs()
			for b.Loop() {
				s.Pick()
			}
		})
	}
}

// pinnedAssignments is what the assignments were when Sticky was written
// (1 = treatment): alice, erin and ivan see the treatment.
const pinnedAssignments = "100010001000"
