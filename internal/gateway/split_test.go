package gateway

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// threeVariants is a split route over three named backends.
func threeVariants(t *testing.T, split string) string {
	t.Helper()
	a, b, c := testutil.Named(t, "a"), testutil.Named(t, "b"), testutil.Named(t, "c")
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools: {pa: {backends: [%s]}, pb: {backends: [%s]}, pc: {backends: [%s]}}
routes:
  - name: exp
    match: {path_prefix: /}
    split:
%s
      variants:
        - {name: a, pool: pa, weight: 70}
        - {name: b, pool: pb, weight: 20}
        - {name: c, pool: pc, weight: 10}
`, a, b, c, split)
}

// TestUnstickySplitIsExact is acceptance point 1: 10,000 requests at
// 70/20/10 land exactly 7000/2000/1000 from one client, and within 1%
// from 64 concurrent clients.
func TestUnstickySplitIsExact(t *testing.T) {
	g := startGateway(t, threeVariants(t, "      salt: s"))
	counts := map[string]int{}
	client := &http.Client{Timeout: 5 * time.Second}
	for range 10000 {
		resp, err := client.Get(g.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		counts[resp.Header.Get("X-Sluice-Variant")]++
	}
	if counts["a"] != 7000 || counts["b"] != 2000 || counts["c"] != 1000 {
		t.Fatalf("one client: %v, want exactly a 7000, b 2000, c 1000", counts)
	}

	var mu sync.Mutex
	counts = map[string]int{}
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 10000 / 64
			if w < 10000%64 {
				n++
			}
			for range n {
				resp, err := client.Get(g.url + "/")
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				mu.Lock()
				counts[resp.Header.Get("X-Sluice-Variant")]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for name, want := range map[string]float64{"a": 7000, "b": 2000, "c": 1000} {
		if math.Abs(float64(counts[name])-want) > 100 {
			t.Errorf("64 clients: variant %s got %d, want %v within 1%% of 10000", name, counts[name], want)
		}
	}
	t.Logf("64 concurrent clients: %v", counts)
}

func TestOverrideAndStickyKeys(t *testing.T) {
	g := startGateway(t, threeVariants(t, `      sticky: header:X-User-Id
      salt: ab-1
      override: header:X-Sluice-Variant`))
	// A tester can force any variant by name; an unknown name is ignored.
	for _, name := range []string{"a", "b", "c"} {
		if _, body, h := get(t, g.url+"/", "X-User-Id", "u1", "X-Sluice-Variant", name); body != name || h.Get("X-Sluice-Variant") != name {
			t.Errorf("override %s answered by %q", name, body)
		}
	}
	_, stuck, _ := get(t, g.url+"/", "X-User-Id", "u1")
	if _, body, _ := get(t, g.url+"/", "X-User-Id", "u1", "X-Sluice-Variant", "nope"); body != stuck {
		t.Errorf("unknown override changed the variant: %q, sticky %q", body, stuck)
	}
	// The same key keeps its variant.
	for i := range 200 {
		key := fmt.Sprintf("user-%d", i)
		_, first, _ := get(t, g.url+"/", "X-User-Id", key)
		for range 3 {
			if _, again, _ := get(t, g.url+"/", "X-User-Id", key); again != first {
				t.Fatalf("key %s went to %s, then %s", key, first, again)
			}
		}
	}
}

func TestStickyKeyFromJSONBody(t *testing.T) {
	g := startGateway(t, threeVariants(t, `      sticky: json:user.id`))
	seen := map[string]string{}
	for i := range 100 {
		body := fmt.Sprintf(`{"input":[5.1,3.5,1.4,0.2],"user":{"id":"u%d","tier":"gold"}}`, i)
		_, first, _ := send(t, "POST", g.url+"/", body)
		_, again, _ := send(t, "POST", g.url+"/", strings.Replace(body, `"tier":"gold"`, `"tier":"free"`, 1))
		if first != again {
			t.Fatalf("user u%d got %s, then %s with another field changed", i, first, again)
		}
		seen[first] = "yes"
	}
	if len(seen) < 2 {
		t.Fatalf("100 users all landed on %v: the key is not being read", seen)
	}
}

// TestBlueGreenFlipUnderLoad is acceptance point 4: flipping active under
// load fails no request, and every request after the reload goes to the
// new colour.
func TestBlueGreenFlipUnderLoad(t *testing.T) {
	blue, green := testutil.Named(t, "blue-pool"), testutil.Named(t, "green-pool")
	conf := func(active string) string {
		return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools: {v1: {backends: [%s]}, v2: {backends: [%s]}}
routes:
  - name: bg
    match: {path_prefix: /}
    blue_green: {blue: v1, green: v2, active: %s}
`, blue, green, active)
	}
	g := startGateway(t, conf("blue"))
	if _, body, h := get(t, g.url+"/"); body != "blue-pool" || h.Get("X-Sluice-Variant") != "blue" {
		t.Fatalf("before the flip: %q, variant %q", body, h.Get("X-Sluice-Variant"))
	}
	traffic := startTraffic(g.url+"/", "GET", "", 8)
	time.Sleep(200 * time.Millisecond)
	replaceFile(t, g.path, conf("green"))
	eventually(t, 2*time.Second, "flip applied", func() bool { return g.Snapshot().Generation == 2 })
	for range 200 {
		if _, body, h := get(t, g.url+"/"); body != "green-pool" || h.Get("X-Sluice-Variant") != "green" {
			t.Fatalf("after the flip applied: %q, variant %q", body, h.Get("X-Sluice-Variant"))
		}
	}
	total, failed, _, first := traffic.stop()
	if failed != 0 {
		t.Fatalf("%d of %d requests failed across the flip (first: %s)", failed, total, first)
	}
	t.Logf("flip under load: %d requests, none failed", total)
}
