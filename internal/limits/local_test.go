package limits

import (
	"runtime"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/redisconn"
	"github.com/sluice-gw/sluice/internal/testutil"
)

// drive sends n requests of key at one per gap from start (a fake clock)
// and counts those admitted.
func drive(l Limiter, key uint64, start time.Time, gap time.Duration, n int) int {
	admitted := 0
	for i := range n {
		if l.Take(key, start.Add(time.Duration(i)*gap)).Allowed {
			admitted++
		}
	}
	return admitted
}

func TestLocalAdmitsTheBurstThenTheRate(t *testing.T) {
	// 100/s with burst 20 driven at 1,000/s for 10 s: the burst, then one
	// request per 10 ms.
	l := NewLocal(100, 20, 1000)
	got := drive(l, 7, time.Unix(1_000_000, 0), time.Millisecond, 10_000)
	if got < 1018 || got > 1021 {
		t.Fatalf("admitted %d of 10000, want 1020 (burst 20 + 100/s for 10 s)", got)
	}
	if s := l.Stats(); s.Limited != int64(10_000-got) || s.Keys != 1 {
		t.Fatalf("stats %+v, want limited %d and 1 key", s, 10_000-got)
	}
}

func TestLocalKeysHaveTheirOwnBuckets(t *testing.T) {
	l := NewLocal(1, 3, 1000)
	now := time.Unix(1_000_000, 0)
	if got := drive(l, 1, now, 0, 10); got != 3 {
		t.Fatalf("key 1 admitted %d at one instant, want its burst of 3", got)
	}
	if got := drive(l, 2, now, 0, 10); got != 3 {
		t.Fatalf("key 2 admitted %d after key 1 spent its burst, want its own 3", got)
	}
}

func TestLocalRefusalSaysWhenATokenIsBack(t *testing.T) {
	l := NewLocal(100, 1, 1000) // a token every 10 ms
	now := time.Unix(1_000_000, 0)
	if !l.Take(1, now).Allowed {
		t.Fatal("first request refused")
	}
	v := l.Take(1, now.Add(4*time.Millisecond))
	if v.Allowed {
		t.Fatal("second request 4 ms later allowed, with 1 token per 10 ms")
	}
	if v.Wait < 5*time.Millisecond || v.Wait > 7*time.Millisecond {
		t.Fatalf("wait %v, want about 6ms (the rest of the 10 ms)", v.Wait)
	}
	if !l.Take(1, now.Add(4*time.Millisecond+v.Wait)).Allowed {
		t.Fatalf("refused again after waiting the %v it was told", v.Wait)
	}
}

func TestLocalForgetsTheLeastRecentlyUsedKey(t *testing.T) {
	l := NewLocal(1, 1, 2) // two shards of one key
	now := time.Unix(1_000_000, 0)
	// Keys 2 and 4 land in the same shard: the second pushes the first out.
	l.Take(2, now)
	if l.Take(2, now).Allowed {
		t.Fatal("key 2 had more than its burst of 1")
	}
	l.Take(4, now)
	if !l.Take(2, now).Allowed {
		t.Fatal("key 2 is still limited after key 4 took its place: it was not evicted")
	}
	if s := l.Stats(); s.Keys != 1 || s.Evicted < 1 {
		t.Fatalf("stats %+v, want 1 key and an eviction", s)
	}
}

// TestLocalMemoryIsBoundedByMaxKeys: a million distinct keys (a flood of
// spoofed API keys, or a scan from many addresses) keep at most max_keys
// buckets, in memory the README states: at most 300 bytes a key.
func TestLocalMemoryIsBoundedByMaxKeys(t *testing.T) {
	const maxKeys, distinct, perKey = 100_000, 1_000_000, 300
	before := testutil.HeapAlloc()
	l := NewLocal(10, 5, maxKeys)
	now := time.Unix(1_000_000, 0)
	for k := range uint64(distinct) {
		if !l.Take(k*0x9e3779b97f4a7c15, now).Allowed {
			t.Fatalf("a new key (%d) was refused", k)
		}
	}
	grown := testutil.HeapAlloc() - before
	s := l.Stats()
	if s.Keys != maxKeys || s.Evicted != distinct-maxKeys {
		t.Fatalf("after %d keys: %d kept, %d evicted; want %d kept", distinct, s.Keys, s.Evicted, maxKeys)
	}
	if grown > maxKeys*perKey {
		t.Fatalf("heap grew %d bytes for %d keys kept (%d a key), want at most %d a key", grown, maxKeys, grown/maxKeys, perKey)
	}
	t.Logf("%d distinct keys: %d kept, heap grew %d bytes (%d a key)", distinct, s.Keys, grown, grown/maxKeys)
	runtime.KeepAlive(l)
}

func TestConcurrencyCapsRequestsInProgress(t *testing.T) {
	var c Concurrency
	for i := range 2 {
		if !c.Acquire(2) {
			t.Fatalf("request %d of a cap of 2 was refused", i+1)
		}
	}
	if c.Acquire(2) {
		t.Fatal("a third was admitted with a cap of 2")
	}
	c.Release()
	if !c.Acquire(2) {
		t.Fatal("refused after one finished")
	}
	if c.InFlight() != 2 {
		t.Fatalf("in flight %d, want 2", c.InFlight())
	}
}

func TestRegistryKeepsUnchangedLimitersAcrossReloads(t *testing.T) {
	r := NewRegistry(&redisconn.Conn{})
	spec := Spec{PerSecond: 10, Burst: 5, MaxKeys: 100}
	a := r.Limiter("iris", "client_ip", spec)
	if r.Limiter("iris", "client_ip", spec) != a {
		t.Fatal("the same entry got a new limiter: a reload would refill every bucket")
	}
	changed := spec
	changed.Burst = 6
	b := r.Limiter("iris", "client_ip", changed)
	if b == a {
		t.Fatal("a changed burst kept the old limiter")
	}
	r.Retain(map[Limiter]bool{b: true}, nil)
	if r.Limiter("iris", "client_ip", spec) == a {
		t.Fatal("a limiter no config uses was kept")
	}
}

// BenchmarkLocalTake is the cost of a local rate limit on an admitted
// request whose key has a bucket: SPEC budgets 150 ns and 0 allocs.
func BenchmarkLocalTake(b *testing.B) {
	l := NewLocal(1e9, 1e9, 100_000)
	keys := make([]uint64, 1024)
	for i := range keys {
		keys[i] = KeyHash([]byte("api-key-" + string(rune('a'+i%26)) + string(rune('a'+i/26))))
	}
	// The proxy passes the time it read when the request arrived.
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if !l.Take(keys[i&1023], now).Allowed {
				b.Fatal("refused")
			}
			i++
		}
	})
}
