package limits

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/redisconn"
)

// gcra takes one token from the bucket stored at KEYS[1], atomically.
// The bucket is GCRA's theoretical arrival time (tat, in microseconds of
// the Redis server's clock, so every replica reads one clock): a request
// at now may pass when tat - burst*interval <= now, and moves tat on by
// one interval. ARGV[1] is the interval (1/rate), ARGV[2] burst*interval,
// both in microseconds. It returns {1, tokens left} or {0, microseconds
// until a token is back}. The key expires when the bucket is full again,
// which is the same as absent. (tat is written with %.0f: Lua's own
// number formatting keeps 14 digits, fewer than a timestamp has.)
var gcra = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local offset = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next = tat + interval
local wait = next - offset - now
if wait > 0 then
  return {0, math.ceil(wait)}
end
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.max(1, math.ceil((next - now) / 1000)))
return {1, math.floor(-wait / interval)}
`)

// keyPrefix starts every key the rate limits keep in Redis.
const keyPrefix = "sluice:ratelimit:"

// Global is a token bucket per key kept in Redis, shared by every gateway
// replica that uses the same Redis, route and entry.
type Global struct {
	redis    *redisconn.Conn
	prefix   string
	interval float64 // microseconds per token
	offset   float64 // burst * interval
	onError  string
	fallback *Local // on_redis_error: local; else nil

	limited     atomic.Int64
	redisErrors atomic.Int64
	fellBack    atomic.Int64
}

var _ Limiter = (*Global)(nil)

func newGlobal(r *redisconn.Conn, prefix string, s Spec) *Global {
	interval := 1e6 / s.PerSecond
	g := &Global{redis: r, prefix: prefix, interval: interval, offset: interval * float64(s.Burst), onError: s.OnRedisError}
	if s.OnRedisError == config.RedisErrorLocal {
		replicas := float64(max(1, s.Replicas))
		g.fallback = NewLocal(s.PerSecond/replicas, max(1, int(math.Ceil(float64(s.Burst)/replicas))), s.MaxKeys)
	}
	return g
}

// globalPrefix names an entry's buckets in Redis: the route, the entry and
// its rate and burst, so that replicas agree on it and a changed limit
// starts afresh.
func globalPrefix(route, entry string, s Spec) string {
	return keyPrefix + route + ":" + entry + ":" + strconv.FormatFloat(s.PerSecond, 'g', -1, 64) + ":" + strconv.Itoa(s.Burst) + ":"
}

// Take asks Redis for a token, or the fallback when Redis is down.
func (g *Global) Take(key uint64, now time.Time) Verdict {
	if c, timeout, probe, ok := g.redis.Ask(now); ok {
		allowed, n, err := g.run(c, timeout, key)
		g.redis.Answered(err, time.Now(), probe)
		if err == nil {
			if allowed {
				return Verdict{Allowed: true}
			}
			g.limited.Add(1)
			return Verdict{Wait: time.Duration(n) * time.Microsecond}
		}
		g.redisErrors.Add(1)
	}
	g.fellBack.Add(1)
	switch g.onError {
	case config.RedisErrorAllow:
		return Verdict{Allowed: true}
	case config.RedisErrorDeny:
		g.limited.Add(1)
		return Verdict{Wait: redisconn.RetryAfter}
	}
	v := g.fallback.Take(key, now)
	if !v.Allowed {
		g.limited.Add(1)
	}
	return v
}

// run executes the script for one key, within timeout.
func (g *Global) run(c *redis.Client, timeout time.Duration, key uint64) (allowed bool, n int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	k := strconv.AppendUint([]byte(g.prefix), key, 16)
	res, err := gcra.Run(ctx, c, []string{string(k)}, g.interval, g.offset).Int64Slice()
	if err != nil {
		return false, 0, err
	}
	if len(res) != 2 {
		return false, 0, errors.New("rate limit script: unexpected reply")
	}
	return res[0] == 1, res[1], nil
}

// Stats implements Limiter; Keys are the fallback's buckets.
func (g *Global) Stats() Stats {
	var s Stats
	if g.fallback != nil {
		s = g.fallback.Stats()
	}
	s.Limited = g.limited.Load()
	s.RedisErrors = g.redisErrors.Load()
	s.Fallback = g.fellBack.Load()
	return s
}
