package routing

import (
	"math"

	"github.com/cespare/xxhash/v2"
)

// Sticky assigns request keys to variants by weighted rendezvous hashing
// (Thaler and Ravishankar's highest random weight, with the logarithmic
// weighting of Schindelhauer and Schomaker): each variant scores a key
// w / -ln(u), where u in (0,1) is the key hashed with a seed of the salt
// and the variant's name, and the highest score wins. Then
//
//   - a variant gets each key with probability weight/sum(weights);
//   - the answer depends only on the salt, the names, the weights and the
//     key: every replica, and every restart, agrees (xxhash is the same on
//     every platform);
//   - it is monotone: raising one variant's weight raises only its own
//     scores, so keys move only to it, never between two other variants.
//     Adding a variant likewise only takes keys, never reshuffles the rest.
type Sticky struct {
	seeds   []uint64
	weights []float64
}

// NewSticky prepares the per-variant hash seeds.
func NewSticky(salt string, names []string, weights []int) *Sticky {
	s := &Sticky{seeds: make([]uint64, len(names)), weights: make([]float64, len(names))}
	for i, name := range names {
		s.seeds[i] = xxhash.Sum64String(salt + "\x00" + name)
		s.weights[i] = float64(weights[i])
	}
	return s
}

// Pick returns the variant for key, or -1 when every weight is 0.
func (s *Sticky) Pick(key []byte) int {
	best, bestScore := -1, 0.0
	var d xxhash.Digest
	for i, w := range s.weights {
		if w == 0 {
			continue
		}
		d.ResetWithSeed(s.seeds[i])
		_, _ = d.Write(key)
		// The top 53 bits as a float in (0,1): never 0, never 1.
		u := (float64(d.Sum64()>>11) + 0.5) / (1 << 53)
		if score := w / -math.Log(u); best < 0 || score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}
