package limits

import (
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/redisconn"
	"github.com/sluice-gw/sluice/internal/testutil"
)

const testTimeout = 25 * time.Millisecond

// replica is one gateway's registry on the given Redis.
func replica(t testing.TB, addr string) *Registry { return replicaWithin(t, addr, testTimeout) }

// replicaWithin is a replica whose Redis round trips are bounded by
// timeout: tests about shared buckets use a long one, which a loaded test
// machine cannot pass, so that no decision falls to the fallback.
func replicaWithin(t testing.TB, addr string, timeout time.Duration) *Registry {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: timeout, ReadTimeout: timeout,
		WriteTimeout: timeout, PoolTimeout: timeout, ContextTimeoutEnabled: true, MaxRetries: -1, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	conn := &redisconn.Conn{}
	conn.Use(c, timeout)
	return NewRegistry(conn)
}

func globalSpec(onError string) Spec {
	return Spec{PerSecond: 100, Burst: 20, MaxKeys: 1000, Global: true, OnRedisError: onError, Replicas: 2}
}

// TestGlobalBucketIsSharedByReplicas: three gateways on one Redis admit
// one key's burst plus its rate between them, not three times that.
func TestGlobalBucketIsSharedByReplicas(t *testing.T) {
	addr := testutil.Redis(t)
	var lims []Limiter
	for range 3 {
		lims = append(lims, replicaWithin(t, addr, time.Second).Limiter("iris", "header:X-API-Key", globalSpec(config.RedisErrorLocal)))
	}
	// 600/s in total, 200/s from each replica, for 2 s.
	const perReplica, gap = 400, 5 * time.Millisecond
	var mu sync.Mutex
	admitted := 0
	var wg sync.WaitGroup
	start := time.Now()
	for _, l := range lims {
		wg.Go(func() {
			n := 0
			for i := range perReplica {
				time.Sleep(time.Until(start.Add(time.Duration(i) * gap)))
				if l.Take(42, time.Now()).Allowed {
					n++
				}
			}
			mu.Lock()
			admitted += n
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	want := 20 + 100*elapsed.Seconds()
	if float64(admitted) < want*0.95 || float64(admitted) > want*1.05 {
		t.Fatalf("three replicas admitted %d in %v, want %.0f ± 5%% (burst 20 + 100/s, shared)", admitted, elapsed.Round(time.Millisecond), want)
	}
	for _, l := range lims {
		if s := l.Stats(); s.RedisErrors != 0 || s.Fallback != 0 {
			t.Fatalf("stats %+v: Redis was up the whole time", s)
		}
	}
}

func TestGlobalRefusalSaysWhenATokenIsBack(t *testing.T) {
	l := replicaWithin(t, testutil.Redis(t), time.Second).Limiter("iris", "client_ip", Spec{PerSecond: 1, Burst: 2, MaxKeys: 10, Global: true, OnRedisError: config.RedisErrorLocal, Replicas: 1})
	now := time.Now()
	for i := range 2 {
		if !l.Take(9, now).Allowed {
			t.Fatalf("request %d of a burst of 2 refused", i+1)
		}
	}
	v := l.Take(9, now)
	if v.Allowed || v.Wait < 900*time.Millisecond || v.Wait > time.Second {
		t.Fatalf("third request: %+v, want refused with a wait of about 1s (1/s)", v)
	}
}

// TestGlobalFallsBackWhileRedisIsDownAndResumes: a stopped Redis costs no
// request anything but the fallback's verdict; once it is back, the next
// request after redisconn.RetryAfter finds it and global limiting resumes.
func TestGlobalFallsBackWhileRedisIsDownAndResumes(t *testing.T) {
	addr := testutil.RestartableAddr(t)
	srv := testutil.StartRedis(t, addr)
	reg := replica(t, addr)
	l := reg.Limiter("iris", "client_ip", globalSpec(config.RedisErrorLocal))
	if !l.Take(1, time.Now()).Allowed {
		t.Fatal("first request refused")
	}
	srv.Stop()
	// The fallback is 1/replicas of the limit: a burst of 10 for key 2.
	now := time.Now()
	admitted := 0
	for range 30 {
		begin := time.Now()
		if l.Take(2, now).Allowed {
			admitted++
		}
		if d := time.Since(begin); d > time.Second {
			t.Fatalf("a decision took %v with Redis stopped, want it bounded by redis.timeout", d)
		}
	}
	if admitted != 10 {
		t.Fatalf("with Redis down, admitted %d of 30 at once, want the fallback's burst of 10 (20 / 2 replicas)", admitted)
	}
	if st := reg.redis.State(); st.Up || st.DownSince == nil || st.Errors < 1 {
		t.Fatalf("redis state %+v, want down with a start time and errors", st)
	}
	if s := l.Stats(); s.Fallback != 30 || s.RedisErrors < 1 {
		t.Fatalf("stats %+v: want 30 fallback decisions and a Redis error", s)
	}

	testutil.StartRedis(t, addr)
	testutil.Eventually(t, 5*time.Second, "global limiting to resume", func() bool {
		l.Take(3, time.Now())
		return reg.redis.State().Up
	})
	before := l.Stats().Fallback
	if !l.Take(4, time.Now()).Allowed || l.Stats().Fallback != before {
		t.Fatal("after Redis came back the decision was not Redis's")
	}
}

// TestGlobalPausedRedisCostsOneTimeout: a Redis that hangs costs the
// request that finds out one redis.timeout; the requests after it do not
// wait on it at all until it is asked again.
func TestGlobalPausedRedisCostsOneTimeout(t *testing.T) {
	addr := testutil.RestartableAddr(t)
	srv := testutil.StartRedis(t, addr)
	reg := replica(t, addr)
	l := reg.Limiter("iris", "client_ip", globalSpec(config.RedisErrorAllow))
	l.Take(1, time.Now()) // a pooled connection
	srv.Pause()
	defer srv.Resume()
	begin := time.Now()
	if !l.Take(1, time.Now()).Allowed {
		t.Fatal("on_redis_error: allow refused a request")
	}
	// It waited out the timeout, not a connect or pool timeout.
	if d := time.Since(begin); d < testTimeout || d > time.Second {
		t.Fatalf("the request that met the paused Redis took %v, want about redis.timeout (%v)", d, testTimeout)
	}
	errorsBefore := reg.redis.State().Errors
	for range 100 {
		if !l.Take(1, time.Now()).Allowed {
			t.Fatal("on_redis_error: allow refused a request")
		}
	}
	if got := reg.redis.State().Errors; got != errorsBefore {
		t.Fatalf("100 decisions within a second of the failure asked Redis again (%d errors, was %d): they waited on it", got, errorsBefore)
	}
}

func TestGlobalDenyRefusesWhileRedisIsDown(t *testing.T) {
	addr := testutil.RestartableAddr(t)
	srv := testutil.StartRedis(t, addr)
	l := replica(t, addr).Limiter("iris", "client_ip", globalSpec(config.RedisErrorDeny))
	srv.Stop()
	v := l.Take(1, time.Now())
	if v.Allowed || v.Wait != redisconn.RetryAfter {
		t.Fatalf("on_redis_error: deny with Redis stopped gave %+v, want refused for %v", v, redisconn.RetryAfter)
	}
}

// BenchmarkGlobalTake is the cost of a global rate limit: one script run
// on a loopback Redis per request.
func BenchmarkGlobalTake(b *testing.B) {
	l := replica(b, testutil.Redis(b)).Limiter("bench", "client_ip", Spec{PerSecond: 1e6, Burst: 1e6, MaxKeys: 10, Global: true, OnRedisError: config.RedisErrorAllow, Replicas: 1})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Take(1, time.Now())
		}
	})
	if s := l.Stats(); s.RedisErrors > 0 {
		b.Fatalf("%d Redis errors", s.RedisErrors)
	}
}
