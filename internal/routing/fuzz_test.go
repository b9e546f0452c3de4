package routing

import (
	"encoding/binary"
	"strings"
	"testing"
)

// stickyWeights reads up to 6 weights of 0 to 10000 (the config's range)
// from raw, two bytes each.
func stickyWeights(raw []byte) []int {
	var w []int
	for len(raw) >= 2 && len(w) < 6 {
		w = append(w, int(binary.LittleEndian.Uint16(raw))%10001)
		raw = raw[2:]
	}
	return w
}

// FuzzSticky checks the promises of sticky.go on arbitrary salts, keys
// and weights: the pick is deterministic (a second Sticky built alike
// agrees), never a variant of weight 0, -1 exactly when every weight is
// 0; and monotone: raising one variant's weight moves a key only to that
// variant, never between two others.
func FuzzSticky(f *testing.F) {
	f.Add("exp", []byte("user-0012345"), []byte{90, 0, 10, 0}, uint8(1), uint16(500))
	f.Add("", []byte{}, []byte{1, 0, 1, 0, 1, 0}, uint8(0), uint16(1))
	f.Add("salt", []byte("k"), []byte{0, 0, 0, 0}, uint8(1), uint16(3))
	f.Add("s", []byte("\x00\xff"), []byte{0x10, 0x27, 1, 0, 0, 0}, uint8(2), uint16(10000))
	f.Fuzz(func(t *testing.T, salt string, key, rawWeights []byte, grow uint8, by uint16) {
		weights := stickyWeights(rawWeights)
		if len(weights) == 0 {
			return
		}
		names := make([]string, len(weights))
		for i := range names {
			names[i] = string(rune('a' + i))
		}
		s := NewSticky(salt, names, weights)
		got := s.Pick(key)
		if again := NewSticky(salt, names, weights).Pick(key); again != got {
			t.Fatalf("not deterministic: %d then %d", got, again)
		}
		allZero := true
		for _, w := range weights {
			allZero = allZero && w == 0
		}
		switch {
		case allZero && got != -1:
			t.Fatalf("every weight 0, picked %d", got)
		case !allZero && (got < 0 || got >= len(weights)):
			t.Fatalf("weights %v: picked %d", weights, got)
		case !allZero && weights[got] == 0:
			t.Fatalf("weights %v: picked %d of weight 0", weights, got)
		}

		i := int(grow) % len(weights)
		grown := append([]int(nil), weights...)
		grown[i] = min(grown[i]+int(by), 10000)
		after := NewSticky(salt, names, grown).Pick(key)
		if after != got && after != i {
			t.Fatalf("weights %v -> %v (variant %d grew): key %q moved from %d to %d", weights, grown, i, key, got, after)
		}
	})
}

// FuzzSmoothSplit checks that every window of sum(weights) picks gives
// each variant exactly its weight divided by the weights' common divisor.
func FuzzSmoothSplit(f *testing.F) {
	f.Add([]byte{90, 0, 10, 0})
	f.Add([]byte{3, 0, 0, 0, 7, 0})
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, rawWeights []byte) {
		weights := stickyWeights(rawWeights)
		for i := range weights {
			weights[i] %= 200 // keep a cycle short enough to walk twice
		}
		if len(weights) == 0 {
			return
		}
		g, sum := 0, 0
		for _, w := range weights {
			g = gcd(g, w)
		}
		for _, w := range weights {
			if g > 0 {
				sum += w / g
			}
		}
		s := NewSmoothSplit(weights)
		if sum == 0 {
			if p := s.Pick(); p != -1 {
				t.Fatalf("every weight 0, picked %d", p)
			}
			return
		}
		for round := 0; round < 2; round++ {
			counts := make([]int, len(weights))
			for range sum {
				p := s.Pick()
				if p < 0 || p >= len(weights) {
					t.Fatalf("weights %v: picked %d", weights, p)
				}
				counts[p]++
			}
			for i, w := range weights {
				if counts[i] != w/g {
					t.Fatalf("weights %v: window %d gave %v", weights, round, counts)
				}
			}
		}
	})
}

// mapPeeker is a header set for matching.
type mapPeeker map[string]string

func (m mapPeeker) Peek(k string) []byte { return []byte(m[k]) }

// FuzzMatch checks a matcher against arbitrary hosts and paths: a match
// means the path has the prefix and the method is allowed; the host
// comparison ignores case and a port; a "*." host never matches the bare
// domain.
func FuzzMatch(f *testing.F) {
	f.Add("/v1/", "api.example.com", "GET", "/v1/x", "API.example.com:8080")
	f.Add("/", "*.example.com", "", "/", "example.com")
	f.Add("/", "*.example.com", "", "/", "a.EXAMPLE.com")
	f.Add("/", "[::1]", "POST", "/", "[::1]:80")
	f.Add("/a", "x", "", "/a", "x:")
	f.Fuzz(func(t *testing.T, prefix, host, method, path, reqHost string) {
		host = strings.ToLower(host)
		var methods []string
		if method != "" {
			methods = []string{strings.ToUpper(method)}
		}
		m := []Matcher{NewMatcher(prefix, methods, host, nil)}
		got := Match(m, []byte(strings.ToUpper(method)), []byte(reqHost), []byte(path), mapPeeker{})
		if got == 0 && !strings.HasPrefix(path, prefix) {
			t.Fatalf("path %q matched prefix %q", path, prefix)
		}
		if !strings.HasPrefix(path, prefix) {
			return
		}
		// Same request with the Host in upper case and with a port: same
		// answer.
		if upper := Match(m, []byte(strings.ToUpper(method)), asciiUpper(reqHost), []byte(path), mapPeeker{}); upper != got {
			t.Fatalf("host %q: %d, in upper case %d", reqHost, got, upper)
		}
		if !strings.Contains(reqHost, ":") || strings.HasSuffix(reqHost, "]") {
			if port := Match(m, []byte(strings.ToUpper(method)), []byte(reqHost+":8443"), []byte(path), mapPeeker{}); port != got {
				t.Fatalf("host %q: %d, with a port %d", reqHost, got, port)
			}
		}
		if strings.HasPrefix(host, "*.") && len(host) > 2 && got == 0 && strings.EqualFold(stripPortString(reqHost), host[2:]) {
			t.Fatalf("wildcard %q matched the bare domain %q", host, reqHost)
		}
	})
}

// asciiUpper upper-cases ASCII letters only, as a client might.
func asciiUpper(s string) []byte {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return b
}

func stripPortString(h string) string { return string(stripPort([]byte(h))) }
