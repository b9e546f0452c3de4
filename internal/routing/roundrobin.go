package routing

import "sync/atomic"

// RoundRobin cycles through the backends in proportion to their weights,
// interleaved the way nginx's smooth weighted round robin interleaves them
// (weights 5,1,1 give a a b a c a a, not a a a a a b c). The schedule is
// computed once per config; picking is a counter and a table lookup.
type RoundRobin struct {
	schedule []int
	next     atomic.Uint64
}

var _ Policy = (*RoundRobin)(nil)

// NewRoundRobin precomputes the smooth weighted schedule.
func NewRoundRobin(weights []int) *RoundRobin {
	return &RoundRobin{schedule: SmoothSchedule(weights)}
}

// SmoothSchedule is one full cycle of nginx's smooth weighted round robin:
// each step every entry gains its weight, the largest wins and pays back
// the total. Each index appears exactly weight times.
func SmoothSchedule(weights []int) []int {
	total := 0
	for _, w := range weights {
		total += w
	}
	current := make([]int, len(weights))
	schedule := make([]int, 0, total)
	for range total {
		best := -1
		for i, w := range weights {
			current[i] += w
			if best < 0 || current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		schedule = append(schedule, best)
	}
	return schedule
}

// Pick takes the next slot of the schedule. A slot whose backend is
// unavailable is used up and the next one taken, so the available backends
// keep the schedule's order and their weights' proportions. (Looking ahead
// without using the slot up would hand an unavailable backend's whole
// share to whichever backend follows it in the schedule.)
func (p *RoundRobin) Pick(b Backends, _ uint64) int {
	size := uint64(len(p.schedule))
	for range size {
		if i := p.schedule[(p.next.Add(1)-1)%size]; i < b.Len() && b.Available(i) {
			return i
		}
	}
	return -1
}
