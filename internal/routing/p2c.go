package routing

// P2C is the power of two random choices (Mitzenmacher, 2001; Envoy's
// LEAST_REQUEST default): pick two backends at random by weight and send
// to the less loaded. It spreads load nearly as well as LeastPending
// without looking at every backend.
type P2C struct {
	weights cumulative
}

var _ Policy = (*P2C)(nil)

// NewP2C prepares the two weighted random draws.
func NewP2C(weights []int) *P2C {
	return &P2C{weights: newCumulative(weights)}
}

// Pick draws twice from one random number: the low and high 32 bits.
// A draw that lands on an unavailable backend is drawn again among the
// available ones.
func (p *P2C) Pick(b Backends, rnd uint64) int {
	lo, hi := rnd&0xffffffff, rnd>>32
	a, c := p.weights.pick(lo), p.weights.pick(hi)
	if a < 0 || a >= b.Len() || c >= b.Len() {
		return -1
	}
	if !b.Available(a) {
		if a = p.weights.pickAvailable(b, lo); a < 0 {
			return -1
		}
	}
	if !b.Available(c) {
		c = p.weights.pickAvailable(b, hi)
	}
	if c >= 0 && lessLoaded(b, c, a) {
		return c
	}
	return a
}
