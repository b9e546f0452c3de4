package cache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/sluice-gw/sluice/internal/redisconn"
)

// Key identifies a cached answer: a SHA-256 over the request's key fields.
type Key [32]byte

// AppendKeyField appends one field of a cache key (route, pool, method,
// path, a vary value), length-prefixed so that no two different lists of
// fields make the same bytes.
func AppendKeyField(dst, field []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(field)))
	return append(dst, field...)
}

// MakeKey hashes the fields AppendKeyField built and the body's digest.
func MakeKey(fields []byte, body [32]byte) Key {
	fields = append(fields, body[:]...)
	return sha256.Sum256(fields)
}

// sharedPrefix starts every key the shared cache keeps in Redis; route
// and pool follow, so a purge can find them (names are letters, digits,
// '.', '_' and '-', nothing a SCAN pattern would read as a wildcard).
const sharedPrefix = "sluice:cache:"

// sharedWrites bounds the writes to Redis in flight per route: a store
// never waits on Redis, and past this a write is dropped (the answer is
// in this process's cache all the same).
const sharedWrites = 32

// Store is one route's cache: in process (L1, an otter cache bounded by
// weight with per-entry expiry), and in Redis when shared (L2). It lives
// across reloads; a reload changes its settings in place.
type Store struct {
	route  string
	l1     *otter.Cache[Key, *Entry]
	conn   *redisconn.Conn
	ttl    atomic.Int64 // time.Duration
	shared atomic.Bool
	flight singleflight.Group
	writes chan struct{}

	evicted       atomic.Int64
	sharedHits    atomic.Int64
	sharedErrors  atomic.Int64
	sharedDropped atomic.Int64
}

// Settings are a store's reloadable settings.
type Settings struct {
	TTL      time.Duration
	MaxBytes int64
	Shared   bool
}

// expiry makes each entry expire at its own Expires: an answer promoted
// from Redis keeps the time it has left there.
type expiry struct{}

func (expiry) ExpireAfterCreate(e otter.Entry[Key, *Entry]) time.Duration {
	return time.Until(e.Value.Expires)
}

func (expiry) ExpireAfterUpdate(e otter.Entry[Key, *Entry], _ *Entry) time.Duration {
	return time.Until(e.Value.Expires)
}

func (expiry) ExpireAfterRead(e otter.Entry[Key, *Entry]) time.Duration { return e.ExpiresAfter() }

func newStore(route string, s Settings, conn *redisconn.Conn) *Store {
	st := &Store{route: route, conn: conn, writes: make(chan struct{}, sharedWrites)}
	st.l1 = otter.Must(&otter.Options[Key, *Entry]{
		MaximumWeight:    uint64(s.MaxBytes),
		Weigher:          func(_ Key, e *Entry) uint32 { return uint32(min(e.Size(), 1<<32-1)) },
		ExpiryCalculator: expiry{},
		OnDeletion: func(e otter.DeletionEvent[Key, *Entry]) {
			if e.Cause == otter.CauseOverflow {
				st.evicted.Add(1)
			}
		},
		// Upkeep (buffer drains, evictions, the handler above) runs on
		// the request that triggers it rather than on a new goroutine,
		// whose start and wake-up cost more than the upkeep.
		Executor: func(fn func()) { fn() },
	})
	st.apply(s)
	return st
}

func (st *Store) apply(s Settings) {
	st.ttl.Store(int64(s.TTL))
	st.shared.Store(s.Shared)
	if st.l1.GetMaximum() != uint64(s.MaxBytes) {
		st.l1.SetMaximum(uint64(s.MaxBytes))
	}
}

// TTL is how long a new entry is served.
func (st *Store) TTL() time.Duration { return time.Duration(st.ttl.Load()) }

// Where an answer was found.
const (
	FromMemory = "memory"
	FromShared = "shared"
)

// Get finds an unexpired answer for key: in process first, then, for a
// shared cache, in Redis (promoting it into the process). A Redis that
// fails or is slow is a miss.
func (st *Store) Get(key Key, pool string, now time.Time) (*Entry, string) {
	if e, ok := st.l1.GetIfPresent(key); ok && now.Before(e.Expires) {
		return e, FromMemory
	}
	if !st.shared.Load() {
		return nil, ""
	}
	e := st.getShared(key, pool, now)
	if e == nil {
		return nil, ""
	}
	st.l1.Set(key, e)
	st.sharedHits.Add(1)
	return e, FromShared
}

func (st *Store) getShared(key Key, pool string, now time.Time) *Entry {
	client, timeout, probe, ok := st.conn.Ask(now)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	b, err := client.Get(ctx, st.sharedKey(key, pool)).Bytes()
	if errors.Is(err, redis.Nil) {
		st.conn.Answered(nil, time.Now(), probe)
		return nil
	}
	st.conn.Answered(err, time.Now(), probe)
	if err != nil {
		st.sharedErrors.Add(1)
		return nil
	}
	e, err := decodeEntry(st.route, pool, b)
	if err != nil || !now.Before(e.Expires) {
		return nil
	}
	return e
}

func (st *Store) sharedKey(key Key, pool string) string {
	b := make([]byte, 0, len(sharedPrefix)+len(st.route)+len(pool)+2+2*len(key))
	b = append(b, sharedPrefix...)
	b = append(b, st.route...)
	b = append(b, ':')
	b = append(b, pool...)
	b = append(b, ':')
	b = hex.AppendEncode(b, key[:])
	return string(b)
}

// Put stores an answer, in process at once and, for a shared cache, in
// Redis in the background.
func (st *Store) Put(key Key, e *Entry) {
	st.l1.Set(key, e)
	if !st.shared.Load() {
		return
	}
	select {
	case st.writes <- struct{}{}:
	default:
		st.sharedDropped.Add(1)
		return
	}
	go func() {
		defer func() { <-st.writes }()
		client, timeout, probe, ok := st.conn.Ask(time.Now())
		if !ok {
			return
		}
		ttl := time.Until(e.Expires)
		if ttl < time.Millisecond {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		err := client.Set(ctx, st.sharedKey(key, e.Pool), e.encode(), ttl).Err()
		st.conn.Answered(err, time.Now(), probe)
		if err != nil {
			st.sharedErrors.Add(1)
		}
	}()
}

// Coalesce runs fill once for concurrent callers of the same key: the
// first caller runs it, the others wait for its result and get it too
// (shared is true for them).
func (st *Store) Coalesce(key Key, fill func() (any, error)) (v any, err error, shared bool) {
	return st.flight.Do(string(key[:]), fill)
}

// Purge removes the entries of pool ("" for every pool) in process, and in
// Redis when the cache is shared, and reports how many of each.
func (st *Store) Purge(ctx context.Context, pool string) (memory, shared int, err error) {
	for k, e := range st.l1.All() {
		if pool == "" || e.Pool == pool {
			if _, ok := st.l1.Invalidate(k); ok {
				memory++
			}
		}
	}
	if !st.shared.Load() {
		return memory, 0, nil
	}
	client, _, probe, ok := st.conn.Ask(time.Now())
	if !ok {
		return memory, 0, errors.New("redis is unavailable: the shared entries were not purged")
	}
	if pool == "" {
		pool = "*"
	}
	shared, err = purgeShared(ctx, client, sharedPrefix+st.route+":"+pool+":*")
	st.conn.Answered(err, time.Now(), probe)
	return memory, shared, err
}

// purgeShared deletes the keys matching pattern, a SCAN page at a time.
func purgeShared(ctx context.Context, client *redis.Client, pattern string) (int, error) {
	deleted := 0
	var cursor uint64
	for {
		keys, next, err := client.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return deleted, err
		}
		if len(keys) > 0 {
			n, err := client.Del(ctx, keys...).Result()
			deleted += int(n)
			if err != nil {
				return deleted, err
			}
		}
		if cursor = next; cursor == 0 {
			return deleted, nil
		}
	}
}

// Stats describe a store for the admin API and metrics.
type Stats struct {
	Entries int   `json:"entries"`
	Bytes   int64 `json:"bytes"`
	// Evicted counts entries removed to stay within max_bytes.
	Evicted int64 `json:"evicted"`
	// SharedHits are answers found in Redis, not in this process;
	// SharedErrors Redis round trips that failed; SharedDropped writes to
	// Redis skipped because too many were in flight.
	SharedHits    int64 `json:"shared_hits"`
	SharedErrors  int64 `json:"shared_errors"`
	SharedDropped int64 `json:"shared_writes_dropped"`
}

// Stats reports the store now.
func (st *Store) Stats() Stats {
	return Stats{
		Entries: st.l1.EstimatedSize(), Bytes: int64(st.l1.WeightedSize()), Evicted: st.evicted.Load(),
		SharedHits: st.sharedHits.Load(), SharedErrors: st.sharedErrors.Load(), SharedDropped: st.sharedDropped.Load(),
	}
}

// Registry keeps each route's store across reloads.
type Registry struct {
	mu     sync.Mutex
	stores map[string]*Store
	conn   *redisconn.Conn
}

// NewRegistry returns an empty registry whose shared caches use conn.
func NewRegistry(conn *redisconn.Conn) *Registry {
	return &Registry{stores: map[string]*Store{}, conn: conn}
}

// Store returns the route's store with these settings: its store under
// the previous config, changed in place, or a new one.
func (r *Registry) Store(route string, s Settings) *Store {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.stores[route]; ok {
		st.apply(s)
		return st
	}
	st := newStore(route, s, r.conn)
	r.stores[route] = st
	return st
}

// Retain drops the stores of routes that no longer cache.
func (r *Registry) Retain(routes map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for route, st := range r.stores {
		if !routes[route] {
			st.l1.InvalidateAll()
			st.l1.StopAllGoroutines()
			delete(r.stores, route)
		}
	}
}

// Stores are the stores by route.
func (r *Registry) Stores() map[string]*Store {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]*Store, len(r.stores))
	for route, st := range r.stores {
		out[route] = st
	}
	return out
}

// Purged is what a purge removed.
type Purged struct {
	Memory int `json:"purged"`
	Shared int `json:"purged_shared"`
}

// Purge removes the entries of a route ("" for every route) and pool (""
// for every pool).
func (r *Registry) Purge(ctx context.Context, route, pool string) (Purged, error) {
	var total Purged
	var errs []error
	for name, st := range r.Stores() {
		if route != "" && name != route {
			continue
		}
		m, s, err := st.Purge(ctx, pool)
		total.Memory += m
		total.Shared += s
		if err != nil {
			errs = append(errs, errors.New("route "+strconv.Quote(name)+": "+err.Error()))
		}
	}
	return total, errors.Join(errs...)
}
