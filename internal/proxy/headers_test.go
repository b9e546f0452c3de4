package proxy

import (
	"encoding/json"
	"net/netip"
	"testing"
)

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	cases := []struct {
		name, peer, xff, want string
	}{
		{"untrusted peer, spoofed chain ignored", "203.0.113.9", "1.1.1.1, 2.2.2.2", "203.0.113.9"},
		{"trusted peer, no chain", "10.0.0.5", "", "10.0.0.5"},
		{"trusted peer, client first", "10.0.0.5", "198.51.100.4", "198.51.100.4"},
		{"trusted hops skipped from the right", "10.0.0.5", "198.51.100.4, 10.9.9.9, 127.0.0.1", "198.51.100.4"},
		{"spoof left of the real client is not believed", "10.0.0.5", "6.6.6.6, 198.51.100.4", "198.51.100.4"},
		{"garbled hop stops the walk", "10.0.0.5", "198.51.100.4, not-an-ip", "10.0.0.5"},
		{"IPv6 client", "127.0.0.1", "2001:db8::1", "2001:db8::1"},
		{"IPv4-mapped peer is trusted", "::ffff:10.0.0.5", "198.51.100.4", "198.51.100.4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			peer := netip.MustParseAddr(tc.peer).Unmap()
			if got := clientAddr(peer, []byte(tc.xff), trusted); got.String() != tc.want {
				t.Fatalf("client %s, want %s", got, tc.want)
			}
		})
	}
}

func TestFramingConflict(t *testing.T) {
	cases := []struct {
		raw  string
		want bool
	}{
		{"Host: x\r\nContent-Length: 4\r\n", false},
		{"Host: x\r\nTransfer-Encoding: chunked\r\n", false},
		{"Host: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n", true},
		{"Host: x\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n", true},
		{"Host: x\r\nX-Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", false},
	}
	for _, tc := range cases {
		if got := checkHeaders([]byte(tc.raw)) == headersBadFraming; got != tc.want {
			t.Errorf("%q: %v, want %v", tc.raw, got, tc.want)
		}
	}
}

func TestErrorBodyIsValidJSON(t *testing.T) {
	for _, s := range []string{"plain", `quote " and \ backslash`, "control \x01\n\t", "ünïcode"} {
		var got string
		if err := json.Unmarshal(appendJSONString(nil, s), &got); err != nil || got != s {
			t.Errorf("%q encoded as %s: %v", s, appendJSONString(nil, s), err)
		}
	}
}

func TestNewRequestIDIsUUIDv4(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		var buf [36]byte
		id := string(newRequestID(&buf))
		if len(id) != 36 || id[14] != '4' || !saneRequestID([]byte(id)) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}
