package routing

import (
	"fmt"
)

// Backends is the view of a pool that a balance policy sees: weights,
// requests in flight and whether each backend may take traffic. Health
// checks, outlier ejection and breakers decide Available; the policy only
// reads it.
type Backends interface {
	Len() int
	Weight(i int) int
	Pending(i int) int64
	Available(i int) bool
}

// Policy picks the backend for one attempt. rnd is a fresh random number
// from the caller, so policies stay deterministic under test. Pick returns
// -1 when no backend is available.
type Policy interface {
	Pick(b Backends, rnd uint64) int
}

// NewPolicy builds the named policy for backends with these weights.
func NewPolicy(name string, weights []int) (Policy, error) {
	switch name {
	case "round_robin":
		return NewRoundRobin(weights), nil
	case "least_pending":
		return LeastPending{}, nil
	case "random":
		return NewRandom(weights), nil
	case "p2c":
		return NewP2C(weights), nil
	}
	return nil, fmt.Errorf("unknown balance policy %q", name)
}

// cumulative holds running weight totals for weighted random choice.
type cumulative []int

func newCumulative(weights []int) cumulative {
	c := make(cumulative, len(weights))
	sum := 0
	for i, w := range weights {
		sum += w
		c[i] = sum
	}
	return c
}

// pick maps a random number to an index in proportion to the weights.
func (c cumulative) pick(rnd uint64) int {
	if len(c) == 0 {
		return -1
	}
	r := int(rnd % uint64(c[len(c)-1]))
	lo, hi := 0, len(c)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if c[mid] > r {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// pickAvailable is pick among the available backends only, for when pick
// landed on an unavailable one: the share of a backend that is out spreads
// over the others by weight. (Taking the next available index instead
// would double that neighbour's traffic while the backend is out, the way
// one failure cascades into the next.) rnd is the number pick was given;
// pick used its remainder by the total weight, so the quotient is the
// fresh randomness drawn from here.
func (c cumulative) pickAvailable(b Backends, rnd uint64) int {
	if len(c) == 0 {
		return -1
	}
	rnd /= uint64(c[len(c)-1])
	n := min(len(c), b.Len())
	total := 0
	for i := range n {
		if b.Available(i) {
			total += c.weight(i)
		}
	}
	if total == 0 {
		return -1
	}
	r := int(rnd % uint64(total))
	for i := range n {
		if !b.Available(i) {
			continue
		}
		if r < c.weight(i) {
			return i
		}
		r -= c.weight(i)
	}
	return -1 // availability changed under us; the caller treats it as none
}

// weight is backend i's own weight.
func (c cumulative) weight(i int) int {
	if i == 0 {
		return c[0]
	}
	return c[i] - c[i-1]
}

// lessLoaded reports whether backend i is less loaded than j, comparing
// in-flight requests per unit of weight without dividing.
func lessLoaded(b Backends, i, j int) bool {
	return b.Pending(i)*int64(b.Weight(j)) < b.Pending(j)*int64(b.Weight(i))
}
