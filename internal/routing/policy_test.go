package routing

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// pool is a Backends view under the test's control.
type pool struct {
	weights []int
	pending []int64
	down    []bool
}

func newPool(weights ...int) *pool {
	return &pool{weights: weights, pending: make([]int64, len(weights)), down: make([]bool, len(weights))}
}

func (p *pool) Len() int             { return len(p.weights) }
func (p *pool) Weight(i int) int     { return p.weights[i] }
func (p *pool) Pending(i int) int64  { return p.pending[i] }
func (p *pool) Available(i int) bool { return !p.down[i] }
func (p *pool) markDown(is ...int) *pool {
	for _, i := range is {
		p.down[i] = true
	}
	return p
}

// seeded is the random source every statistical test uses: fixed seeds
// make each run draw the same numbers, so a tolerance can be checked once
// and never flake.
func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// shares picks draws times and returns the fraction each backend got.
func shares(pol Policy, b Backends, draws int, rnd *rand.Rand) []float64 {
	counts := make([]int, b.Len())
	for range draws {
		if i := pol.Pick(b, rnd.Uint64()); i >= 0 {
			counts[i]++
		}
	}
	out := make([]float64, len(counts))
	for i, c := range counts {
		out[i] = float64(c) / float64(draws)
	}
	return out
}

// wantShares is each backend's weight over the weight of all available
// backends: what an operator expects a weighted policy to send.
func wantShares(p *pool) []float64 {
	total := 0
	for i, w := range p.weights {
		if !p.down[i] {
			total += w
		}
	}
	out := make([]float64, len(p.weights))
	for i, w := range p.weights {
		if !p.down[i] {
			out[i] = float64(w) / float64(total)
		}
	}
	return out
}

func checkShares(t *testing.T, got, want []float64, tolerance float64) {
	t.Helper()
	for i := range want {
		if math.Abs(got[i]-want[i]) > tolerance {
			t.Errorf("backend %d got %.3f of the traffic, want %.3f±%.3f (all: %.3f)", i, got[i], want[i], tolerance, got)
		}
	}
}

func TestSmoothSchedule(t *testing.T) {
	cases := []struct {
		weights []int
		want    []int
	}{
		// The sequence nginx documents for weights 5, 1, 1 (the commit
		// that introduced smooth weighted round robin, nginx 1.3.1):
		// a a b a c a a, not a a a a a b c.
		{[]int{5, 1, 1}, []int{0, 0, 1, 0, 2, 0, 0}},
		{[]int{1, 1, 1}, []int{0, 1, 2}},
		{[]int{2, 1}, []int{0, 1, 0}},
		{[]int{1}, []int{0}},
		{[]int{3, 0, 1}, []int{0, 0, 2, 0}}, // weight 0 is never scheduled
		{nil, []int{}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.weights), func(t *testing.T) {
			if got := SmoothSchedule(tc.weights); !slices.Equal(got, tc.want) {
				t.Errorf("SmoothSchedule(%v) = %v, want %v", tc.weights, got, tc.want)
			}
		})
	}
}

// Over one cycle every backend gets exactly its weight, and it is never
// bunched: no backend goes twice in a row while one with at least half
// its weight waits.
func TestSmoothScheduleGivesEachBackendItsWeight(t *testing.T) {
	rnd := seeded(1)
	for trial := range 500 {
		weights := make([]int, 1+rnd.IntN(8))
		total := 0
		for i := range weights {
			weights[i] = 1 + rnd.IntN(20)
			total += weights[i]
		}
		schedule := SmoothSchedule(weights)
		if len(schedule) != total {
			t.Fatalf("trial %d: weights %v: schedule has %d slots, want %d", trial, weights, len(schedule), total)
		}
		counts := make([]int, len(weights))
		for _, i := range schedule {
			counts[i]++
		}
		if !slices.Equal(counts, weights) {
			t.Fatalf("trial %d: weights %v: backends appear %v times", trial, weights, counts)
		}
		// Smoothness: after k slots, backend i has had k*w_i/total slots,
		// give or take one.
		seen := make([]int, len(weights))
		for k, i := range schedule {
			seen[i]++
			for j, w := range weights {
				ideal := float64((k+1)*w) / float64(total)
				if math.Abs(float64(seen[j])-ideal) >= 1.0+1e-9 {
					t.Fatalf("weights %v: after %d slots backend %d had %d, ideal %.2f", weights, k+1, j, seen[j], ideal)
				}
			}
		}
	}
}

func TestRoundRobin(t *testing.T) {
	t.Run("follows the smooth schedule, cycle after cycle", func(t *testing.T) {
		rr, b := NewRoundRobin([]int{5, 1, 1}), newPool(5, 1, 1)
		var got []int
		for range 14 {
			got = append(got, rr.Pick(b, 0))
		}
		if want := []int{0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0}; !slices.Equal(got, want) {
			t.Errorf("picks = %v, want %v", got, want)
		}
	})
	t.Run("never picks an unavailable backend", func(t *testing.T) {
		rr, b := NewRoundRobin([]int{1, 1, 1}), newPool(1, 1, 1).markDown(1)
		for k := range 30 {
			if i := rr.Pick(b, 0); i != 0 && i != 2 {
				t.Fatalf("pick %d = %d, want 0 or 2 while 1 is down", k, i)
			}
		}
	})
	t.Run("uses a backend again once it is back", func(t *testing.T) {
		rr, b := NewRoundRobin([]int{1, 1}), newPool(1, 1).markDown(0)
		for range 3 {
			if i := rr.Pick(b, 0); i != 1 {
				t.Fatalf("pick = %d, want 1 while 0 is down", i)
			}
		}
		b.down[0] = false
		got := []int{rr.Pick(b, 0), rr.Pick(b, 0)}
		if slices.Sort(got); !slices.Equal(got, []int{0, 1}) {
			t.Errorf("two picks after recovery = %v, want one each", got)
		}
	})
}

// Regression: a pick that landed on an unavailable backend took the next
// available one in index order, so that neighbour received the whole share
// of the backend that was out (with 5,1,1 and the first one down, the
// second got 5/7 of the traffic). One failure doubling its neighbour's
// load is how failures cascade; the share must spread over the survivors
// by weight.
func TestPoliciesSpreadAnUnavailableBackendsShareByWeight(t *testing.T) {
	layouts := []*pool{
		newPool(1, 1, 1).markDown(1),
		newPool(5, 1, 1).markDown(0),
		newPool(1, 2, 3, 4).markDown(1, 2),
		newPool(3, 1, 1, 1, 1, 1, 1).markDown(2, 3, 4),
	}
	for name, newPolicy := range map[string]func([]int) Policy{
		"round_robin": func(w []int) Policy { return NewRoundRobin(w) },
		"random":      func(w []int) Policy { return NewRandom(w) },
		"p2c":         func(w []int) Policy { return NewP2C(w) },
	} {
		for _, b := range layouts {
			t.Run(fmt.Sprintf("%s/weights %v down %v", name, b.weights, b.down), func(t *testing.T) {
				got := shares(newPolicy(b.weights), b, 140_000, seeded(7))
				checkShares(t, got, wantShares(b), 0.01)
			})
		}
	}
}

// With nothing in flight, Random and P2C send each backend its weight's
// share of the traffic.
func TestRandomAndP2CFollowWeights(t *testing.T) {
	for _, weights := range [][]int{{1, 1}, {5, 1, 1}, {1, 2, 3, 4}, {10, 1}, {1, 1, 1, 1, 1, 1, 1, 1}} {
		b := newPool(weights...)
		t.Run(fmt.Sprintf("random %v", weights), func(t *testing.T) {
			checkShares(t, shares(NewRandom(weights), b, 100_000, seeded(3)), wantShares(b), 0.01)
		})
		t.Run(fmt.Sprintf("p2c %v", weights), func(t *testing.T) {
			checkShares(t, shares(NewP2C(weights), b, 100_000, seeded(4)), wantShares(b), 0.01)
		})
	}
}

// P2C draws two candidates and takes the less loaded one, so a backend
// that is busy loses traffic to its idle peers.
func TestP2CPrefersTheLessLoadedCandidate(t *testing.T) {
	b := newPool(1, 1)
	b.pending = []int64{10, 0}
	got := shares(NewP2C(b.weights), b, 100_000, seeded(5))
	// Backend 0 wins only when both draws pick it: 1/4 of the time.
	checkShares(t, got, []float64{0.25, 0.75}, 0.01)

	// Load is compared per unit of weight: 6 in flight on weight 3 is
	// less loaded than 3 on weight 1, so backend 1 wins only when both
	// draws pick it: (1/4)^2 of the time.
	b = newPool(3, 1)
	b.pending = []int64{6, 3}
	checkShares(t, shares(NewP2C(b.weights), b, 100_000, seeded(5)), []float64{15. / 16, 1. / 16}, 0.01)
}

func TestLeastPending(t *testing.T) {
	cases := []struct {
		name    string
		weights []int
		pending []int64
		down    []int
		want    int
	}{
		{"fewest in flight", []int{1, 1, 1}, []int64{3, 1, 2}, nil, 1},
		{"fewest per unit of weight", []int{4, 1}, []int64{4, 3}, nil, 0},
		{"weight does not save a busy backend", []int{2, 1}, []int64{5, 2}, nil, 1},
		{"skips an unavailable idle backend", []int{1, 1, 1}, []int64{0, 5, 9}, []int{0}, 1},
		{"only one available", []int{1, 1, 1}, []int64{0, 0, 9}, []int{0, 1}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newPool(tc.weights...).markDown(tc.down...)
			b.pending = tc.pending
			for r := range uint64(50) {
				if got := (LeastPending{}).Pick(b, r); got != tc.want {
					t.Fatalf("Pick(rnd=%d) = %d, want %d", r, got, tc.want)
				}
			}
		})
	}
}

// Regression: ties went to the first tied backend found scanning from a
// random offset, so a tied backend that followed a busy or unavailable
// one was found first twice as often (with 0,5,0 in flight, backend 2 got
// 2/3 of the traffic). Equal backends must share evenly.
func TestLeastPendingSpreadsTiesEvenly(t *testing.T) {
	cases := []struct {
		name    string
		weights []int
		pending []int64
		down    []int
		want    []float64
	}{
		{"all idle", []int{1, 1, 1}, []int64{0, 0, 0}, nil, []float64{1. / 3, 1. / 3, 1. / 3}},
		{"idle around a busy one", []int{1, 1, 1}, []int64{0, 5, 0}, nil, []float64{0.5, 0, 0.5}},
		{"idle around an unavailable one", []int{1, 1, 1, 1}, []int64{0, 0, 0, 0}, []int{1}, []float64{1. / 3, 0, 1. / 3, 1. / 3}},
		{"tied per unit of weight", []int{2, 1, 1}, []int64{2, 1, 3}, nil, []float64{0.5, 0.5, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newPool(tc.weights...).markDown(tc.down...)
			b.pending = tc.pending
			checkShares(t, shares(LeastPending{}, b, 90_000, seeded(6)), tc.want, 0.01)
		})
	}
}

func TestNewPolicy(t *testing.T) {
	for _, name := range []string{"round_robin", "least_pending", "random", "p2c"} {
		p, err := NewPolicy(name, []int{1, 2})
		if err != nil || p == nil {
			t.Errorf("NewPolicy(%q) = %v, %v; want a policy", name, p, err)
		}
	}
	if _, err := NewPolicy("fastest", []int{1}); err == nil {
		t.Error(`NewPolicy("fastest") returned no error`)
	}
}

// Whatever the weights, load and health, a policy answers -1 exactly when
// no backend is available, and otherwise an available backend: never one
// that health checks, ejection or a breaker have taken out.
func TestPoliciesPickOnlyAvailableBackends(t *testing.T) {
	rnd := seeded(2)
	for trial := range 3000 {
		n := 1 + rnd.IntN(8)
		b := &pool{weights: make([]int, n), pending: make([]int64, n), down: make([]bool, n)}
		anyUp := false
		for i := range n {
			b.weights[i] = 1 + rnd.IntN(10)
			b.pending[i] = int64(rnd.IntN(4))
			b.down[i] = rnd.IntN(2) == 0
			anyUp = anyUp || !b.down[i]
		}
		for _, name := range []string{"round_robin", "least_pending", "random", "p2c"} {
			pol, err := NewPolicy(name, b.weights)
			if err != nil {
				t.Fatal(err)
			}
			for range 20 {
				i := pol.Pick(b, rnd.Uint64())
				switch {
				case !anyUp && i != -1:
					t.Fatalf("trial %d %s: nothing available (%v), picked %d", trial, name, b.down, i)
				case anyUp && (i < 0 || i >= n):
					t.Fatalf("trial %d %s: down %v, picked %d", trial, name, b.down, i)
				case anyUp && b.down[i]:
					t.Fatalf("trial %d %s: picked unavailable backend %d (down %v)", trial, name, i, b.down)
				}
			}
		}
	}
}

func TestPoliciesWithNoBackends(t *testing.T) {
	for _, name := range []string{"round_robin", "least_pending", "random", "p2c"} {
		pol, _ := NewPolicy(name, nil)
		if i := pol.Pick(newPool(), 12345); i != -1 {
			t.Errorf("%s on an empty pool picked %d, want -1", name, i)
		}
	}
}

// Picking is on every request's path: it must not allocate.
func BenchmarkPolicies(b *testing.B) {
	weights := []int{3, 1, 1, 2, 1, 1, 2, 1}
	for _, name := range []string{"round_robin", "least_pending", "random", "p2c"} {
		for _, down := range []bool{false, true} {
			label := name
			if down {
				label += "/two_down"
			}
			b.Run(label, func(b *testing.B) {
				pol, _ := NewPolicy(name, weights)
				p := newPool(weights...)
				for i := range p.pending {
					p.pending[i] = int64(i % 3)
				}
				if down {
					p.markDown(0, 3)
				}
				rnd := seeded(1)
				b.ReportAllocs()
				for b.Loop() {
					if pol.Pick(p, rnd.Uint64()) < 0 {
						b.Fatal("no pick")
					}
				}
			})
		}
	}
}
