package limits

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// localShards spreads the buckets over independently locked LRU lists, so
// that requests of different keys on different cores rarely meet on a
// lock.
const localShards = 16

// Local keeps a token bucket (a golang.org/x/time/rate Limiter) per key in
// this process, at most maxKeys of them: the least recently used key is
// forgotten first, so a flood of distinct keys costs bounded memory (a
// forgotten key's next request finds a full bucket, which is what a key
// unseen for that long would have anyway unless it was over its limit).
type Local struct {
	limit   rate.Limit
	burst   int
	shards  []localShard
	evicted atomic.Int64
	limited atomic.Int64
}

type localShard struct {
	mu      sync.Mutex
	buckets *simplelru.LRU[uint64, *rate.Limiter]
	_       [40]byte // keeps neighbouring shards' locks off one cache line
}

var _ Limiter = (*Local)(nil)

// NewLocal returns buckets of burst tokens refilled at perSecond, at most
// maxKeys of them.
func NewLocal(perSecond float64, burst, maxKeys int) *Local {
	l := &Local{limit: rate.Limit(perSecond), burst: burst}
	n := min(localShards, max(1, maxKeys))
	l.shards = make([]localShard, n)
	for i := range l.shards {
		size := maxKeys / n
		if i < maxKeys%n {
			size++
		}
		// The callback only counts, so NewLRU cannot fail here (size > 0).
		l.shards[i].buckets, _ = simplelru.NewLRU[uint64, *rate.Limiter](max(1, size), func(uint64, *rate.Limiter) { l.evicted.Add(1) })
	}
	return l
}

// Take takes a token from key's bucket, making the bucket if the key is
// new. It does not allocate unless the key is new.
func (l *Local) Take(key uint64, now time.Time) Verdict {
	s := &l.shards[key%uint64(len(l.shards))]
	s.mu.Lock()
	b, ok := s.buckets.Get(key)
	if !ok {
		b = rate.NewLimiter(l.limit, l.burst)
		s.buckets.Add(key, b)
	}
	allowed := b.AllowN(now, 1)
	var tokens float64
	if !allowed {
		tokens = b.TokensAt(now)
	}
	s.mu.Unlock()
	if allowed {
		return Verdict{Allowed: true}
	}
	l.limited.Add(1)
	return Verdict{Wait: l.untilToken(tokens)}
}

// untilToken is how long a bucket holding tokens (fewer than one) takes to
// hold one.
func (l *Local) untilToken(tokens float64) time.Duration {
	if l.limit <= 0 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration((1 - tokens) / float64(l.limit) * float64(time.Second))
}

// Len is the number of keys with a bucket now.
func (l *Local) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += s.buckets.Len()
		s.mu.Unlock()
	}
	return n
}

// Stats implements Limiter.
func (l *Local) Stats() Stats {
	return Stats{Keys: l.Len(), Evicted: l.evicted.Load(), Limited: l.limited.Load()}
}
