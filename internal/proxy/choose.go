package proxy

import (
	"net/netip"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/experiments"
	"github.com/sluice-gw/sluice/internal/routing"
)

// variantFor picks which of the route's variants answers a request: the
// fixed one (a pool route, a blue-green route's active colour), or the
// split's choice. A concrete method rather than an interface, so that the
// caller's scratch buffer stays on its stack.
func (r *Route) variantFor(ctx *fasthttp.RequestCtx, trusted []netip.Prefix, scratch []byte) *Variant {
	if r.split == nil {
		return r.Variants[r.active]
	}
	return r.Variants[r.split.choose(ctx, trusted, scratch)]
}

// reachable reports whether v can be chosen at all as configured now: the
// active variant of a fixed route, a split variant with a weight above 0.
func (r *Route) reachable(v *Variant) bool {
	for i, rv := range r.Variants {
		if rv == v {
			if r.split == nil {
				return i == r.active
			}
			return r.split.weights[i] > 0
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
