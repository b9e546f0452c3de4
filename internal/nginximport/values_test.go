package nginximport

import (
	"testing"
	"time"
)

func TestNginxValues(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30": 30 * time.Second, "500ms": 500 * time.Millisecond, "5m": 5 * time.Minute, "1h30m": 90 * time.Minute,
		"1h 30m": 90 * time.Minute, "2d": 48 * time.Hour, "1w": 7 * 24 * time.Hour, "1M": 30 * 24 * time.Hour, "1y": 365 * 24 * time.Hour,
	} {
		if got, err := parseTime(in); err != nil || got != want {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "soon", "5x", "-1s", "1h-", "99999999999999999999s"} {
		if _, err := parseTime(bad); err == nil {
			t.Errorf("parseTime(%q) took it", bad)
		}
	}
	for in, want := range map[string]int64{"512": 512, "16k": 16 << 10, "10M": 10 << 20, "1g": 1 << 30, "0": 0} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "k", "1t", "-1m", "1.5m"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) took it", bad)
		}
	}
	for in, want := range map[int64]string{1 << 20: "1MiB", 1536: "1536", 100 << 10: "100KiB", 3 << 30: "3GiB"} {
		if got := sizeText(in); got != want {
			t.Errorf("sizeText(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"remote_addr": "client_ip", "binary_remote_addr": "client_ip", "http_x_user_id": "header:X-User-Id",
		"http_authorization": "header:Authorization", "cookie_session_id": "cookie:session_id", "arg_uid": "query:uid", "uri": "path",
	} {
		if got, why := keySource(in); got != want || why != "" {
			t.Errorf("keySource(%q) = %q, %q; want %q", in, got, why, want)
		}
	}
	for _, bad := range []string{"request_id", "server_name", "http_", "host"} {
		if _, why := keySource(bad); why == "" {
			t.Errorf("keySource(%q) took it", bad)
		}
	}
	for in, want := range map[string]string{
		"127.0.0.1:9101": "127.0.0.1:9101", "backend.local": "backend.local:80", "[::1]:9102": "[::1]:9102", "[::1]": "[::1]:80", "::1": "[::1]:80",
	} {
		if got, ok := hostPort(in, 80); !ok || got != want {
			t.Errorf("hostPort(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"unix:/run/a.sock", "a:b:c", "host:0", "host:99999", "ho st:80", "$host:80", "-bad-:80", "x\x00:80"} {
		if got, ok := hostPort(bad, 80); ok {
			t.Errorf("hostPort(%q) = %q, took it", bad, got)
		}
	}
	names, literal := variables("${remote_addr}AAA$http_x")
	if len(names) != 2 || names[0] != "remote_addr" || names[1] != "http_x" || literal != "AAA" {
		t.Errorf("variables: %q %q", names, literal)
	}
}
