package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestRedisBlock(t *testing.T) {
	if cfg := mustParse(t, minimalConfig); cfg.Redis != nil {
		t.Fatalf("no redis block: got %+v, want nil (per process)", cfg.Redis)
	}
	cfg := mustParse(t, "redis: {addr: 127.0.0.1:6379}\n"+minimalConfig)
	if r := cfg.Redis; r == nil || r.Addr != "127.0.0.1:6379" || r.DB != 0 || r.Timeout.D() != 25*time.Millisecond || r.Password != "" {
		t.Fatalf("defaults: %+v", cfg.Redis)
	}

	t.Setenv("SLUICE_TEST_REDIS_PASSWORD", "hunter2")
	cfg = mustParse(t, "redis: {addr: redis.internal:6380, password: \"${SLUICE_TEST_REDIS_PASSWORD}\", db: 3, timeout: 50ms}\n"+minimalConfig)
	if r := cfg.Redis; r.Addr != "redis.internal:6380" || r.Password != "hunter2" || r.DB != 3 || r.Timeout.D() != 50*time.Millisecond {
		t.Fatalf("full block: %+v", r)
	}
	shown, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(shown), "hunter2") || !strings.Contains(string(shown), `"redis":{"addr":"redis.internal:6380","db":3,"timeout":"50ms"}`) {
		t.Fatalf("/admin/config shows %s", shown)
	}
}

func TestRedisBlockRejects(t *testing.T) {
	cases := []struct{ name, src, msg string }{
		{"no addr", "redis:   #!\n  db: 1\n", `redis.addr: is required`},
		{"addr without port", "redis:\n  addr: localhost   #!\n", `"localhost" is not host:port`},
		{"bad port", "redis:\n  addr: localhost:99999   #!\n", `has no valid port`},
		{"negative db", "redis:\n  addr: localhost:6379\n  db: -1   #!\n", `must be 0 or more`},
		{"slow timeout", "redis:\n  addr: localhost:6379\n  timeout: 1m   #!\n", `must be at most 10s`},
		{"unknown key", "redis:\n  addr: localhost:6379\n  tls: true   #!\n", `unknown key "tls"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := c.src + minimalConfig
			ps := parseProblems(t, src)
			if len(ps) != 1 || !strings.Contains(ps[0].Error(), c.msg) || ps[0].Line != markedLine(t, src, "#!") {
				t.Fatalf("problems %v, want one at line %d holding %q", ps, markedLine(t, src, "#!"), c.msg)
			}
		})
	}
}
