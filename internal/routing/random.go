package routing

// Random picks a backend at random in proportion to its weight; when the
// pick is unavailable it picks again among the available ones, by weight.
type Random struct {
	weights cumulative
}

var _ Policy = (*Random)(nil)

// NewRandom prepares weighted random choice.
func NewRandom(weights []int) *Random {
	return &Random{weights: newCumulative(weights)}
}

// Pick maps rnd onto the weights.
func (p *Random) Pick(b Backends, rnd uint64) int {
	i := p.weights.pick(rnd)
	if i < 0 || i >= b.Len() {
		return -1
	}
	if b.Available(i) {
		return i
	}
	return p.weights.pickAvailable(b, rnd)
}
