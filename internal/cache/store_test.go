package cache

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gw/sluice/internal/redisconn"
	"github.com/sluice-gw/sluice/internal/testutil"
)

func testEntry(route, pool string, body []byte, ttl time.Duration) *Entry {
	return NewEntry(route, pool, [][2][]byte{{[]byte("Content-Type"), []byte("application/json")}, {[]byte("X-Model"), []byte("iris-v1")}},
		body, time.Now(), ttl)
}

func key(i int) Key { return MakeKey(AppendKeyField(nil, []byte(fmt.Sprint(i))), [32]byte{}) }

func TestEntryKeepsHeadersAndBodyThroughRedisEncoding(t *testing.T) {
	e := testEntry("r", "p", []byte(`{"prediction":"setosa"}`), time.Minute)
	d, err := decodeEntry("r", "p", e.encode())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	d.Headers(func(k, v []byte) { got = append(got, string(k)+": "+string(v)) })
	if fmt.Sprint(got) != "[Content-Type: application/json X-Model: iris-v1]" || string(d.Body()) != `{"prediction":"setosa"}` {
		t.Fatalf("decoded headers %v, body %q", got, d.Body())
	}
	if d.Expires.UnixMilli() != e.Expires.UnixMilli() || d.Stored.UnixMilli() != e.Stored.UnixMilli() {
		t.Fatalf("times changed: %v %v, want %v %v", d.Stored, d.Expires, e.Stored, e.Expires)
	}
}

// FuzzDecodeEntry: whatever another program left in Redis under our key,
// decoding it never panics, and what decodes re-encodes to the same bytes.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(testEntry("r", "p", []byte("body"), time.Minute).encode())
	f.Add([]byte{sharedVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry("r", "p", b)
		if err != nil {
			return
		}
		e.Headers(func(_, _ []byte) {})
		if !bytes.Equal(e.encode(), b) {
			t.Fatalf("re-encoded differently")
		}
	})
}

func TestExpiredEntryIsAMiss(t *testing.T) {
	st := NewRegistry(&redisconn.Conn{}).Store("r", Settings{TTL: time.Minute, MaxBytes: 1 << 20})
	st.Put(key(1), testEntry("r", "p", []byte("x"), 50*time.Millisecond))
	if e, _ := st.Get(key(1), "p", time.Now()); e == nil {
		t.Fatal("a fresh entry was a miss")
	}
	if e, _ := st.Get(key(1), "p", time.Now().Add(time.Second)); e != nil {
		t.Fatal("an entry past its ttl was served")
	}
}

// Acceptance: a flood of distinct answers keeps the in-process cache
// within max_bytes, counted and in the heap.
func TestMemoryStaysWithinMaxBytes(t *testing.T) {
	const maxBytes = 4 << 20
	before := testutil.HeapAlloc()
	st := NewRegistry(&redisconn.Conn{}).Store("r", Settings{TTL: time.Hour, MaxBytes: maxBytes})
	body := bytes.Repeat([]byte("x"), 1000)
	for i := range 40_000 { // 40 MB of answers
		st.Put(key(i), testEntry("r", "p", body, time.Hour))
	}
	st.l1.CleanUp()
	s := st.Stats()
	if s.Bytes > maxBytes || s.Evicted == 0 {
		t.Fatalf("after 40 MB of answers: %d bytes counted, %d evicted; want at most %d", s.Bytes, s.Evicted, maxBytes)
	}
	if grown := testutil.HeapAlloc() - before; grown > 2*maxBytes {
		t.Fatalf("heap grew %d bytes for a cache of at most %d", grown, maxBytes)
	}
	runtime.KeepAlive(st)
}

func TestPurgeByPool(t *testing.T) {
	st := NewRegistry(&redisconn.Conn{}).Store("r", Settings{TTL: time.Hour, MaxBytes: 1 << 20})
	st.Put(key(1), testEntry("r", "blue", []byte("b"), time.Hour))
	st.Put(key(2), testEntry("r", "green", []byte("g"), time.Hour))
	if m, _, err := st.Purge(context.Background(), "blue"); m != 1 || err != nil {
		t.Fatalf("purged %d (%v), want the 1 blue entry", m, err)
	}
	if e, _ := st.Get(key(2), "green", time.Now()); e == nil {
		t.Fatal("purging blue removed green's entry")
	}
}

func sharedStore(t *testing.T, addr string) *Store {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 50 * time.Millisecond, ReadTimeout: 50 * time.Millisecond,
		WriteTimeout: 50 * time.Millisecond, ContextTimeoutEnabled: true, MaxRetries: -1, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	conn := &redisconn.Conn{}
	conn.Use(c, 50*time.Millisecond)
	return NewRegistry(conn).Store("r", Settings{TTL: time.Hour, MaxBytes: 1 << 20, Shared: true})
}

func TestSharedStoresServeEachOthersAnswers(t *testing.T) {
	addr := testutil.RestartableAddr(t)
	srv := testutil.StartRedis(t, addr)
	one, two := sharedStore(t, addr), sharedStore(t, addr)
	one.Put(key(1), testEntry("r", "p", []byte("answer"), time.Hour))
	testutil.Eventually(t, 5*time.Second, "the answer in Redis", func() bool {
		e, from := two.Get(key(1), "p", time.Now())
		return e != nil && from == FromShared && string(e.Body()) == "answer"
	})
	if _, from := two.Get(key(1), "p", time.Now()); from != FromMemory {
		t.Fatalf("second read came from %q, want memory (promoted)", from)
	}
	if _, shared, err := one.Purge(context.Background(), ""); shared != 1 || err != nil {
		t.Fatalf("purged %d shared (%v), want 1", shared, err)
	}
	srv.Stop()
	begin := time.Now()
	for i := range 50 {
		if e, _ := two.Get(key(100+i), "p", time.Now()); e != nil {
			t.Fatal("a hit for a key never stored")
		}
	}
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("50 misses with Redis stopped took %v", d)
	}
}
