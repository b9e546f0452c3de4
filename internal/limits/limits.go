// Package limits keeps the rate and concurrency limits of the routes:
// token buckets per key value, in this process (Local) or in a Redis that
// every gateway replica shares (Global), and a cap on requests in
// progress per route (Concurrency).
//
// A rate limit is a token bucket per key value (SPEC section 2): burst
// tokens at the start and at most, refilled at rate; a request takes a
// token or is refused, and is told how long until a token is back.
//
// Global limits keep their buckets in Redis, executed atomically by a Lua
// script (GCRA, the generic cell rate algorithm, which is a token bucket
// stored as one timestamp). Redis is a dependency that fails, so every
// global limit carries its answer for when it does (on_redis_error): while
// the shared connection (package redisconn) has Redis marked down, the
// limit's fallback decides (local buckets at rate/replicas, allow all, or
// deny all) and no request waits on Redis.
//
// State outlives reloads here: the Registry hands the same limiter to a
// reloaded route whose entry did not change, so a reload neither refills
// every bucket nor forgets who is over its limit.
package limits

import (
	"fmt"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/sluice-gw/sluice/internal/redisconn"
)

// Limiter decides, per key, whether one more request may pass.
type Limiter interface {
	// Take takes a token from key's bucket. key is a hash of the key
	// value (KeyHash).
	Take(key uint64, now time.Time) Verdict
	// Stats is what the limiter has seen, for the admin API.
	Stats() Stats
}

// Verdict is a limiter's answer for one request.
type Verdict struct {
	// Allowed: the request took a token.
	Allowed bool
	// Wait is how long until the key's bucket has a token again, when
	// refused.
	Wait time.Duration
}

// Stats describe one limiter.
type Stats struct {
	// Keys are the buckets kept in this process now; Evicted counts the
	// least recently used ones forgotten to stay within max_keys.
	Keys    int   `json:"keys"`
	Evicted int64 `json:"evicted"`
	// Limited counts refused requests.
	Limited int64 `json:"limited"`
	// RedisErrors counts global decisions Redis could not make (errors
	// and timeouts), and Fallback the decisions taken without Redis.
	RedisErrors int64 `json:"redis_errors,omitempty"`
	Fallback    int64 `json:"fallback_decisions,omitempty"`
}

// Spec is one rate_limit entry as the limiter needs it.
type Spec struct {
	PerSecond float64
	Burst     int
	MaxKeys   int
	// Global keeps the buckets in Redis; the fields below apply to it.
	Global bool
	// OnRedisError is config.RedisErrorLocal, RedisErrorAllow or
	// RedisErrorDeny.
	OnRedisError string
	Replicas     int
}

// KeyHash is the bucket key of a key value. Buckets are found by a 64-bit
// hash, not the value, so that a bucket costs the same memory however
// long the client makes its key (a collision between two of max_keys live
// keys is a chance of about max_keys²/2⁶⁵).
func KeyHash(value []byte) uint64 { return xxhash.Sum64(value) }

// Registry hands out limiters and concurrency counters that outlive a
// reload, and owns the Redis client global limits use.
type Registry struct {
	mu       sync.Mutex
	limiters map[string]Limiter // by route and entry identity
	inFlight map[string]*Concurrency
	redis    *redisconn.Conn
}

// NewRegistry returns an empty registry whose global limits use conn.
func NewRegistry(conn *redisconn.Conn) *Registry {
	return &Registry{limiters: map[string]Limiter{}, inFlight: map[string]*Concurrency{}, redis: conn}
}

// Limiter returns the limiter of a route's entry: the one it had under the
// previous config when the entry is unchanged, else a fresh one. entry
// tells the route's entries apart (the key source and its index).
func (r *Registry) Limiter(route, entry string, s Spec) Limiter {
	id := fmt.Sprintf("%s\x00%s\x00%+v", route, entry, s)
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.limiters[id]; ok {
		return l
	}
	var l Limiter = NewLocal(s.PerSecond, s.Burst, s.MaxKeys)
	if s.Global {
		l = newGlobal(r.redis, globalPrefix(route, entry, s), s)
	}
	r.limiters[id] = l
	return l
}

// Concurrency returns the route's in-flight counter, the same across
// reloads so that requests still running on the old config count against
// the new one's cap.
func (r *Registry) Concurrency(route string) *Concurrency {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.inFlight[route]
	if !ok {
		c = &Concurrency{}
		r.inFlight[route] = c
	}
	return c
}

// Retain forgets the limiters and counters that the given ones (those of
// the config now serving) do not include.
func (r *Registry) Retain(limiters map[Limiter]bool, counters map[*Concurrency]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, l := range r.limiters {
		if !limiters[l] {
			delete(r.limiters, id)
		}
	}
	for route, c := range r.inFlight {
		if !counters[c] {
			delete(r.inFlight, route)
		}
	}
}
