// Package redisconn is the Redis that requests consult on their way
// (global rate limits, the shared cache), and what the gateway knows of
// its health. Redis is a dependency that fails, and a request must never
// pay for that more than once a second:
//
//	Redis answers            -> callers use it
//	an error or a timeout    -> Redis is marked down for RetryAfter;
//	                            meanwhile Ask says no at once and each
//	                            caller does without (a rate limit's
//	                            on_redis_error, a cache miss)
//	RetryAfter passed        -> the next caller (one at a time) asks
//	                            Redis again; an answer ends the outage
//
// so a Redis that is stopped costs nothing per request, and a Redis that
// hangs costs at most one timeout to the request that finds out.
package redisconn

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RetryAfter is how long Redis stays marked down after a failed round
// trip before a request asks it again.
const RetryAfter = time.Second

// Conn is the client requests share, and whether Redis is up.
type Conn struct {
	mu      sync.Mutex // serialises Use
	client  atomic.Pointer[redis.Client]
	timeout atomic.Int64

	downUntil atomic.Int64 // unix nanoseconds; 0 while Redis answers
	probing   atomic.Bool  // a request is asking a down Redis again
	downSince atomic.Int64
	errors    atomic.Int64
	log       atomic.Pointer[slog.Logger]
}

// SetLogger makes outages and recoveries logged, one line each.
func (c *Conn) SetLogger(l *slog.Logger) { c.log.Store(l) }

// Use points the connection at a client (nil: no Redis), each round trip
// bounded by timeout. The caller owns the client and closes it.
func (c *Conn) Use(client *redis.Client, timeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timeout.Store(int64(timeout))
	c.client.Store(client)
	// A new server gets a fresh chance.
	c.downUntil.Store(0)
	c.downSince.Store(0)
}

// Ask says whether a request should ask Redis now: yes while Redis is up,
// no while it is marked down, and yes for one request at a time (the
// probe) once the retry time is up. A caller told yes must report how the
// round trip ended with Answered, passing probe back.
func (c *Conn) Ask(now time.Time) (client *redis.Client, timeout time.Duration, probe, ok bool) {
	if client = c.client.Load(); client == nil {
		return nil, 0, false, false
	}
	if until := c.downUntil.Load(); until != 0 {
		if now.UnixNano() < until || !c.probing.CompareAndSwap(false, true) {
			return nil, 0, false, false
		}
		probe = true
	}
	return client, time.Duration(c.timeout.Load()), probe, true
}

// Answered records how a round trip ended (err nil: Redis answered, even
// "no such key"); probe says it was the one asking a down Redis again.
func (c *Conn) Answered(err error, now time.Time, probe bool) {
	if probe {
		defer c.probing.Store(false)
	}
	wasDown := c.downUntil.Load() != 0
	if err != nil {
		c.errors.Add(1)
		c.downUntil.Store(now.Add(RetryAfter).UnixNano())
		if c.downSince.CompareAndSwap(0, now.UnixNano()) {
			c.logf(slog.LevelWarn, "redis is unavailable; global rate limits use on_redis_error, the shared cache is skipped", "err", err.Error())
		}
	} else if wasDown {
		since := time.Unix(0, c.downSince.Load())
		c.downUntil.Store(0)
		c.downSince.Store(0)
		c.logf(slog.LevelInfo, "redis answers again", "down_for", now.Sub(since).Round(time.Millisecond).String())
	}
}

func (c *Conn) logf(level slog.Level, msg string, args ...any) {
	if l := c.log.Load(); l != nil {
		l.Log(context.Background(), level, msg, args...)
	}
}

// State is what the admin API shows of the connection.
type State struct {
	Configured bool       `json:"configured"`
	Up         bool       `json:"up"`
	DownSince  *time.Time `json:"down_since"`
	Errors     int64      `json:"errors"`
}

// State reports the connection now.
func (c *Conn) State() State {
	s := State{Configured: c.client.Load() != nil, Errors: c.errors.Load()}
	s.Up = s.Configured && c.downUntil.Load() == 0
	if since := c.downSince.Load(); since != 0 {
		t := time.Unix(0, since).UTC()
		s.DownSince = &t
	}
	return s
}

// Down reports whether Redis is marked down now.
func (c *Conn) Down() bool { return c.downUntil.Load() != 0 }
