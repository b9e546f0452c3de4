package gateway

import (
	"context"
	"reflect"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/metrics"
)

// cacheStates are the routes' in-process caches for the gauges.
func (g *Gateway) cacheStates() []metrics.CacheState {
	var out []metrics.CacheState
	for route, st := range g.caches.Stores() {
		s := st.Stats()
		out = append(out, metrics.CacheState{Route: route, Entries: s.Entries, Bytes: s.Bytes, Evictions: s.Evicted})
	}
	return out
}

// purgeTimeout bounds a purge of the shared cache in Redis.
const purgeTimeout = 10 * time.Second

// purgeChangedPools forgets the cached answers of every pool whose
// backends a reload changed (or removed): they may run another model
// now. Shared entries are purged in the background; a Redis that fails
// leaves them to expire with their TTL.
func (g *Gateway) purgeChangedPools(prev, next *config.Config) {
	if prev == nil {
		return
	}
	for name, was := range prev.Pools {
		now, kept := next.Pools[name]
		if kept && reflect.DeepEqual(was.Backends, now.Backends) && reflect.DeepEqual(was.Spawn, now.Spawn) {
			continue
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), purgeTimeout)
			defer cancel()
			purged, err := g.caches.Purge(ctx, "", name)
			if err != nil {
				g.log.Warn("purge of a changed pool's shared cache failed; its entries expire with their ttl", "pool", name, "err", err)
			}
			if purged.Memory+purged.Shared > 0 || err != nil {
				g.log.Info("cache purged: the pool's backends changed", "pool", name, "purged", purged.Memory, "purged_shared", purged.Shared)
			}
		}()
	}
}
