package routing

import "sync/atomic"

// SmoothSplit shares requests between a split's variants in exact
// proportions: every window of sum(weights) consecutive requests gives
// each variant exactly its weight, interleaved as nginx's smooth weighted
// round robin interleaves servers. Concurrent requests each take their own
// slot of the schedule, so the proportions hold under load too. Weight 0
// takes a variant out.
type SmoothSplit struct {
	schedule []int
	next     atomic.Uint64
}

// NewSmoothSplit precomputes one cycle of the schedule, with the weights
// divided by their greatest common divisor (90/10 cycles every 10).
func NewSmoothSplit(weights []int) *SmoothSplit {
	g := 0
	for _, w := range weights {
		g = gcd(g, w)
	}
	reduced := make([]int, len(weights))
	for i, w := range weights {
		if g > 0 {
			reduced[i] = w / g
		}
	}
	return &SmoothSplit{schedule: SmoothSchedule(reduced)}
}

// Pick returns the next variant, or -1 when every weight is 0.
func (s *SmoothSplit) Pick() int {
	if len(s.schedule) == 0 {
		return -1
	}
	return s.schedule[(s.next.Add(1)-1)%uint64(len(s.schedule))]
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
