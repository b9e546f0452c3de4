package routing

// LeastPending sends each attempt to the backend with the fewest requests
// in flight per unit of weight (nginx's least_conn, Envoy's LEAST_REQUEST
// with all hosts compared). Ties go to a random one among the tied, each
// equally likely, so equal backends share load evenly at low concurrency.
type LeastPending struct{}

var _ Policy = LeastPending{}

// Pick scans every backend once. Ties are broken by reservoir sampling:
// the k-th backend found tied with the best so far replaces it with
// probability 1/k, which leaves each tied backend equally likely. (Taking
// the first tie found from a random offset is not even: a tied backend
// that follows a busy or unavailable one would be found first twice as
// often.)
func (LeastPending) Pick(b Backends, rnd uint64) int {
	best, ties := -1, uint64(0)
	var bestPending, bestWeight int64
	for i := range b.Len() {
		if !b.Available(i) {
			continue
		}
		// Compare pending/weight without dividing.
		p, w := b.Pending(i), int64(b.Weight(i))
		switch mine, theirs := p*bestWeight, bestPending*w; {
		case best < 0 || mine < theirs:
			best, ties, bestPending, bestWeight = i, 1, p, w
		case mine == theirs:
			ties++
			// A step of Knuth's MMIX linear congruential generator gives
			// each tie fresh bits from the one number the caller drew;
			// its high bits are the good ones.
			rnd = rnd*6364136223846793005 + 1442695040888963407
			if (rnd>>33)%ties == 0 {
				best, bestPending, bestWeight = i, p, w
			}
		}
	}
	return best
}
