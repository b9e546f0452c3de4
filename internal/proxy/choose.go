package proxy

import (
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/experiments"
	"github.com/sluice-gw/sluice/internal/rollout"
	"github.com/sluice-gw/sluice/internal/routing"
)

// variantFor picks which of the route's variants answers a request: the
// fixed one (a pool route, a blue-green route's active colour), or the
// split's choice. A concrete method rather than an interface, so that the
// caller's scratch buffer stays on its stack.
func (r *Route) variantFor(ctx *fasthttp.RequestCtx, trusted []netip.Prefix, scratch []byte) *Variant {
	switch {
	case r.split != nil:
		return r.Variants[r.split.choose(ctx, trusted, scratch)]
	case r.canary != nil:
		return r.Variants[r.canary.choose(ctx, trusted, scratch)]
	}
	return r.Variants[r.active]
}

// reachable reports whether v can be chosen at all as configured now: the
// active variant of a fixed route, a split variant with a weight above 0.
func (r *Route) reachable(v *Variant) bool {
	for i, rv := range r.Variants {
		if rv == v {
			switch {
			case r.split != nil:
				return r.split.weights[i] > 0
			case r.canary != nil:
				basis := r.canary.rollout.Basis()
				return (i == canaryCandidate && basis > 0) || (i == canaryStable && basis < 10000)
			}
			return i == r.active
		}
	}
	return false
}

// split chooses by override, then by sticky key, then in exact proportions.
type split struct {
	override *keyReader
	sticky   *keyReader
	byName   map[string]int
	hashed   *routing.Sticky
	smooth   *routing.SmoothSplit
	weights  []int
}

func (s *split) choose(ctx *fasthttp.RequestCtx, trusted []netip.Prefix, scratch []byte) int {
	if s.override != nil {
		if name := s.override.read(ctx, trusted, scratch); len(name) > 0 {
			if i, ok := s.byName[string(name)]; ok {
				return i
			}
		}
	}
	if s.sticky != nil {
		if key := s.sticky.read(ctx, trusted, scratch); len(key) > 0 {
			return s.hashed.Pick(key)
		}
	}
	return s.smooth.Pick()
}

// compileSplit builds a split route's variants and chooser, and ties them
// to the route's experiment: same salt and variants, same experiment
// across reloads; a new salt or variant set starts a new one.
func compileSplit(rc *config.Route, variant func(name, pool string) *Variant, exps *experiments.Registry) ([]*Variant, *split, *experiments.Experiment) {
	sp := rc.Split
	names := make([]string, len(sp.Variants))
	weights := make([]int, len(sp.Variants))
	s := &split{byName: map[string]int{}, weights: weights}
	variants := make([]*Variant, len(sp.Variants))
	for i, v := range sp.Variants {
		names[i], weights[i] = v.Name, v.Weight
		s.byName[v.Name] = i
		variants[i] = variant(v.Name, v.Pool)
	}
	s.smooth = routing.NewSmoothSplit(weights)
	s.hashed = routing.NewSticky(sp.Salt, names, weights)
	// Validation has parsed both key sources already.
	if sp.Sticky != "" {
		src, _ := config.ParseKeySource(sp.Sticky)
		s.sticky = &keyReader{src: src}
	}
	if sp.Override != "" {
		src, _ := config.ParseKeySource(sp.Override)
		s.override = &keyReader{src: src}
	}
	exp := exps.Experiment(rc.Name, experimentIdentity(sp.Salt, names), names)
	for i, v := range variants {
		v.exp = exp.Variant(i)
	}
	return variants, s, exp
}

// experimentIdentity is what makes two configs the same experiment: the
// salt and the variants in order, written "salt|control,treatment"
// (variant names cannot hold "|" or ",").
func experimentIdentity(salt string, names []string) string {
	return salt + "|" + strings.Join(names, ",")
}

// The variants of a canary route, by index.
const (
	canaryStable    = 0
	canaryCandidate = 1
)

// canary sends the rollout's current share of requests to the candidate:
// by the sticky key's hash when there is one, so that a key that reached
// the candidate keeps it as the share grows, else exactly by count.
type canary struct {
	rollout  *rollout.Rollout
	sticky   *keyReader // nil without sticky
	saltHash uint64
	n        atomic.Uint64
}

func (c *canary) choose(ctx *fasthttp.RequestCtx, trusted []netip.Prefix, scratch []byte) int {
	basis := c.rollout.Basis()
	var key []byte
	if c.sticky != nil {
		key = c.sticky.read(ctx, trusted, scratch)
	}
	if len(key) > 0 && takeByKey(key, c.saltHash, basis) || len(key) == 0 && takeByCount(&c.n, basis) {
		return canaryCandidate
	}
	return canaryStable
}

// compileCanary ties a canary route to its rollout, which outlives the
// snapshot. The route's mirror, compiled before, feeds the shadow gate when
// it copies to the candidate.
func compileCanary(rc *config.Route, r *Route, pools map[string]*Pool, rollouts *rollout.Registry) *canary {
	cn := rc.Canary
	c := &canary{saltHash: xxhash.Sum64String("canary\x00" + cn.Salt)}
	if cn.Sticky != "" {
		// Validation has parsed the key source.
		src, _ := config.ParseKeySource(cn.Sticky)
		c.sticky = &keyReader{src: src}
	}
	// Only the copies of requests the stable pool answered compare the
	// candidate with something else.
	var shadowTotals func() (int64, int64)
	if m := r.mirror; m != nil && m.pool == pools[cn.Candidate] {
		shadowTotals = func() (int64, int64) { return m.state.Compared(canaryStable) }
	}
	c.rollout = rollouts.Rollout(rollout.SpecOf(rc.Name, cn), shadowTotals)
	return c
}
