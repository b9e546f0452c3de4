package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// shippedConfig is the dev stack's config, which `make run` starts from.
const shippedConfig = "../../config/gateway.yaml"

// minimalConfig is the smallest file that parses: one pool, one route.
const minimalConfig = `pools:
  p1:
    backends: [127.0.0.1:9101]
routes:
  - name: r1
    pool: p1
`

// markedLine returns the 1-based line of src that holds marker. Test files
// mark the line a problem must point at with "#!", so the expectation sits
// next to the mistake instead of in a hand-counted number.
func markedLine(t *testing.T, src, marker string) int {
	t.Helper()
	for i, l := range strings.Split(src, "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	t.Fatalf("no line holds the marker %q", marker)
	return 0
}

// parseProblems parses src, which must fail, and returns the problems.
func parseProblems(t *testing.T, src string) Problems {
	t.Helper()
	cfg, err := Parse([]byte(src))
	if err == nil {
		t.Fatalf("Parse accepted the file, want problems; got %+v", cfg)
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Parse error is %T (%v), want config.Problems", err, err)
	}
	if len(ps) == 0 {
		t.Fatal("Parse failed with an empty Problems")
	}
	return ps
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

// An operator who makes three unrelated mistakes must see all three in one
// pass, each at its own line, and nothing else.
func TestParseReportsEveryMistakeAtOnceWithItsLine(t *testing.T) {
	src := `server:
  listen: ":8080"
  read_timout: 10s              #!unknown
  write_timeout: 30 seconds     #!duration
pools:
  p1: {backends: [127.0.0.1:9101]}
routes:
  - name: r1
    pool: p2                    #!pool
`
	ps := parseProblems(t, src)
	want := []struct {
		marker, msg string
	}{
		{"#!unknown", `unknown key "read_timout"`},
		{"#!duration", `invalid duration "30 seconds"`},
		{"#!pool", `unknown pool "p2"`},
	}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(want), ps)
	}
	for i, w := range want {
		line := markedLine(t, src, w.marker)
		if ps[i].Line != line || !strings.Contains(ps[i].Msg, w.msg) {
			t.Errorf("problem %d = line %d %q, want line %d containing %q", i, ps[i].Line, ps[i].Msg, line, w.msg)
		}
	}
	// The joined error reads like a compiler's: one problem per line.
	if got := strings.Count(ps.Error(), "\n") + 1; got != 3 {
		t.Errorf("Problems.Error() has %d lines, want 3:\n%s", got, ps.Error())
	}
}

// Every validation rule, each with the line it must point at (marked #!)
// and a piece of the message an operator reads.
func TestParseRejects(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.crt")
	cases := []struct {
		name string
		src  string
		msg  string
	}{
		// Decoding: unknown keys, at any depth.
		{"unknown top-level key", minimalConfig + "logging: {level: debug}  #!\n", `unknown key "logging"`},
		{"unknown server key", "server:\n  listn: \":8080\"  #!\n" + minimalConfig, `unknown key "listn"`},
		{"unknown pool key", `pools:
  p1:
    backends: [127.0.0.1:9101]
    balancer: round_robin   #!
routes: [{name: r1, pool: p1}]
`, `unknown key "balancer"`},
		{"unknown backend key", `pools:
  p1:
    backends:
      - {addr: 127.0.0.1:9101, wieght: 2}   #!
routes: [{name: r1, pool: p1}]
`, `unknown key "wieght"`},
		{"unknown match key", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    pool: p1
    match:
      path: /v1   #!
`, `unknown key "path"`},

		// Decoding: scalars and types.
		{"bad duration", "server:\n  idle_timeout: 10   #!\n" + minimalConfig, `invalid duration "10"`},
		{"negative duration", "server:\n  drain_timeout: -1s   #!\n" + minimalConfig, `negative`},
		{"bad size", "server:\n  max_body: 1MB   #!\n" + minimalConfig, `invalid size "1MB"`},
		{"size not a number", "server:\n  max_header_bytes: lots   #!\n" + minimalConfig, `invalid size`},
		{"text where a number goes", "server:\n  max_headers: many   #!\n" + minimalConfig, `wrong type`},
		{"scalar where a list goes", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    pool: p1
    match: {methods: POST}   #!
`, `wrong type`},
		{"key given twice", "server:\n  listen: \":8080\"\n  listen: \":8081\"   #!\n" + minimalConfig, `already defined at line 2`},
		{"pool defined twice", `pools:
  p1: {backends: [127.0.0.1:9101]}
  p1: {backends: [127.0.0.1:9102]}   #!
routes: [{name: r1, pool: p1}]
`, `already defined`},
		{"file is not a mapping", "- just\n- a list   \n", `must be a YAML mapping`},
		{"tab in indentation", "pools:\n\tp1: {backends: [127.0.0.1:9101]}  #!\nroutes: []\n", `cannot start any token`},
		{"mapping value where none may go", "pools:\n- p1\n p2: x  #!\n", `mapping values are not allowed`},

		// server and admin.
		{"listen without port", "server:\n  listen: \"8080\"   #!\n" + minimalConfig, `not host:port`},
		{"listen port out of range", "server:\n  listen: \":99999\"   #!\n" + minimalConfig, `no valid port`},
		{"listen host not an IP", "server:\n  listen: \"example.com:80\"   #!\n" + minimalConfig, `not an IP address or localhost`},
		{"admin listen bad", "admin:\n  listen: \"nowhere\"   #!\n" + minimalConfig, `not host:port`},
		{"admin on the client port", "server:\n  listen: \":8080\"\nadmin:\n  listen: \"127.0.0.1:8080\"   #!\n" + minimalConfig, `admin API must never share the client port`},
		{"admin equals server listen", "server:\n  listen: \"127.0.0.1:9000\"\nadmin:\n  listen: \"127.0.0.1:9000\"   #!\n" + minimalConfig, `also server.listen`},
		{"tls without cert", "server:\n  tls:   #!\n    key: " + missing + "\n" + minimalConfig, `is required when tls is set`},
		{"tls cert unreadable", "server:\n  tls:\n    cert: " + missing + "   #!\n    key: " + missing + "\n" + minimalConfig, `cannot read`},
		{"max_header_bytes too small", "server:\n  max_header_bytes: 512   #!\n" + minimalConfig, `at least 1KiB`},
		{"max_headers negative", "server:\n  max_headers: -1   #!\n" + minimalConfig, `at least 1`},
		{"trusted proxy not an address", "server:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - 10.0.0.0/33   #!\n" + minimalConfig, `neither an IP address nor a CIDR`},
		{"trusted proxy a host name", "server:\n  trusted_proxies: [lb.internal]   #!\n" + minimalConfig, `"lb.internal"`},

		// pools.
		{"no pools", "routes: [{name: r1, pool: p1}]   #!\n", `at least one pool`},
		{"pool with no backends", `pools:
  p1:   #!
    backends: []
routes: [{name: r1, pool: p1}]
`, `has no backends`},
		{"pool with nothing in it", `pools:
  p1:       #!
routes: [{name: r1, pool: p1}]
`, `has no backends`},
		{"pool name with a space", `pools:
  "p 1":      #!
    backends: [127.0.0.1:9101]
routes: [{name: r1, pool: "p 1"}]
`, `pool name "p 1"`},
		{"backend without port", `pools:
  p1:
    backends:
      - 127.0.0.1:9101
      - 127.0.0.1   #!
routes: [{name: r1, pool: p1}]
`, `backend "127.0.0.1" is not host:port`},
		{"backend listed twice", `pools:
  p1:
    backends:
      - 127.0.0.1:9101
      - {addr: 127.0.0.1:9101, weight: 2}   #!
routes: [{name: r1, pool: p1}]
`, `listed twice`},
		{"backend weight 0", `pools:
  p1:
    backends:
      - {addr: 127.0.0.1:9101, weight: 0}   #!
routes: [{name: r1, pool: p1}]
`, `weight must be 1 to 10000, got 0`},
		{"backend weight too large", `pools:
  p1:
    backends:
      - {addr: 127.0.0.1:9101, weight: 10001}   #!
routes: [{name: r1, pool: p1}]
`, `got 10001`},
		{"backend weight not a number", `pools:
  p1:
    backends:
      - {addr: 127.0.0.1:9101, weight: heavy}   #!
routes: [{name: r1, pool: p1}]
`, `wrong type`},
		{"unknown balance", `pools:
  p1:
    backends: [127.0.0.1:9101]
    balance: fastest   #!
routes: [{name: r1, pool: p1}]
`, `unknown policy "fastest"`},
		{"max_conns negative", `pools:
  p1:
    backends: [127.0.0.1:9101]
    max_conns: -5   #!
routes: [{name: r1, pool: p1}]
`, `at least 1, got -5`},

		// routes.
		{"no routes", "pools:   #!\n  p1: {backends: [127.0.0.1:9101]}\n", `at least one route`},
		{"route without name", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - pool: p1   #!
`, `route has no name`},
		{"route name with a slash", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: a/b   #!
    pool: p1
`, `route name "a/b"`},
		{"duplicate route name", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    pool: p1
  - name: r1   #!
    pool: p1
`, `duplicate route name "r1" (also routes[0])`},
		{"route without pool", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1   #!
`, `needs exactly one of pool, split, blue_green and canary`},
		{"unknown pool", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    pool: p9   #!
`, `unknown pool "p9" (defined: p1)`},
		{"path_prefix without slash", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    pool: p1
    match: {path_prefix: v1/models}   #!
`, `must start with /`},
		{"strip_prefix without slash", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    pool: p1
    strip_prefix: v1   #!
`, `must start with /`},
		{"method not a token", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    pool: p1
    match:
      methods:
        - GET
        - "PO ST"   #!
`, `is not an HTTP method`},
		{"header name not a token", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    pool: p1
    match:
      headers:
        "X Tenant": a   #!
`, `not a valid header name`},
		{"host with port", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    pool: p1
    match: {host: "api.example.com:443"}   #!
`, `without port or scheme`},
		{"host a bare wildcard", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    pool: p1
    match: {host: "*"}   #!
`, `or *.domain`},
		{"host wildcard inside", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    pool: p1
    match: {host: "api.*.example"}   #!
`, `or *.domain`},
		{"header with an empty value never matches", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    pool: p1
    match:
      headers:
        X-Tenant: ""   #!
`, `can never match`},
		{"spawn without command", `pools:
  p1:
    backends: [127.0.0.1:9101]
    spawn: {replicas: 1}   #!
routes: [{name: r1, pool: p1}]
`, `is required`},
		{"spawn command without an address placeholder", `pools:
  p1:
    backends: [127.0.0.1:9101]
    spawn:
      command: [./bin/modelworker, -listen, ":9101"]   #!
routes: [{name: r1, pool: p1}]
`, `no argument holds {addr} or {port}`},
		{"spawn more replicas than backends", `pools:
  p1:
    backends: [127.0.0.1:9101]
    spawn:
      command: [w, "{addr}"]
      replicas: 2   #!
routes: [{name: r1, pool: p1}]
`, `only 1 backend addresses`},
		{"spawn ports and backends together", `pools:
  p1:
    backends: [127.0.0.1:9101]
    spawn:
      command: [w, "{addr}"]
      ports: 9101-9110   #!
routes: [{name: r1, pool: p1}]
`, `exclude each other`},
		{"spawn ports not a range", `pools:
  p1:
    spawn:
      command: [w, "{addr}"]
      ports: nine   #!
routes: [{name: r1, pool: p1}]
`, `not a port range`},
		{"spawn range too small", `pools:
  p1:
    spawn:
      command: [w, "{addr}"]
      replicas: 3
      ports: 9101-9102   #!
routes: [{name: r1, pool: p1}]
`, `holds 2 ports for 3 replicas`},
		{"pool with neither backends nor ports", `pools:
  p1: {spawn: {command: [w, "{addr}"]}}   #!
routes: [{name: r1, pool: p1}]
`, `has no backends`},
		{"route with pool and split", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1   #!
    pool: p1
    split: {variants: [{name: a, pool: p1, weight: 1}]}
`, `needs exactly one of pool, split, blue_green and canary (has 2)`},
		{"split variant on an unknown pool", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    split:
      variants:
        - {name: a, pool: p1, weight: 9}
        - {name: b, pool: nope, weight: 1}   #!
`, `unknown pool "nope"`},
		{"split duplicate variant", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    split:
      variants:
        - {name: a, pool: p1, weight: 9}
        - {name: a, pool: p1, weight: 1}   #!
`, `duplicate variant name "a"`},
		{"split weight out of range", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    split:
      variants:
        - {name: a, pool: p1, weight: -1}   #!
        - {name: b, pool: p1, weight: 1}
`, `must be 0 to 10000`},
		{"split all weights zero", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    split:
      variants:   #!
        - {name: a, pool: p1, weight: 0}
`, `every weight is 0`},
		{"split unknown key source", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    split:
      sticky: body:user   #!
      variants: [{name: a, pool: p1, weight: 1}]
`, `unknown key source "body:user"`},
		{"split key source without a name", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    split:
      override: "header:"   #!
      variants: [{name: a, pool: p1, weight: 1}]
`, `needs a name`},
		{"split json path with an empty field", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    split:
      sticky: json:user..id   #!
      variants: [{name: a, pool: p1, weight: 1}]
`, `empty field name`},
		{"blue_green same pool twice", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    blue_green:
      blue: p1
      green: p1   #!
      active: blue
`, `blue and green are the same pool`},
		{"blue_green active not a colour", `pools: {p1: {backends: [127.0.0.1:9101]}, p2: {backends: [127.0.0.1:9102]}}
routes:
  - name: r1
    blue_green:
      blue: p1
      green: p2
      active: red   #!
`, `must be blue or green`},
		{"canary stable is the candidate", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    canary:
      stable: p1
      candidate: p1   #!
`, `stable and candidate are the same pool "p1"`},
		{"canary unknown candidate", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    canary:
      stable: p1
      candidate: p9   #!
`, `unknown pool "p9"`},
		{"canary steps not increasing", `pools: {p1: {backends: [127.0.0.1:9101]}, p2: {backends: [127.0.0.1:9102]}}
routes:
  - name: r1
    canary:
      stable: p1
      candidate: p2
      steps:
        - 10
        - 5   #!
`, `steps must increase: 5 after 10`},
		{"canary step over 100", `pools: {p1: {backends: [127.0.0.1:9101]}, p2: {backends: [127.0.0.1:9102]}}
routes:
  - name: r1
    canary:
      stable: p1
      candidate: p2
      steps:
        - 150   #!
`, `must be above 0 and at most 100, got 150`},
		{"canary latency ratio under 1", `pools: {p1: {backends: [127.0.0.1:9101]}, p2: {backends: [127.0.0.1:9102]}}
routes:
  - name: r1
    canary:
      stable: p1
      candidate: p2
      gates:
        latency_ratio: 0.5   #!
`, `must be 0 (off) or at least 1, got 0.5`},
		{"canary on_fail unknown", `pools: {p1: {backends: [127.0.0.1:9101]}, p2: {backends: [127.0.0.1:9102]}}
routes:
  - name: r1
    canary:
      stable: p1
      candidate: p2
      on_fail: panic   #!
`, `must be rollback or pause, got "panic"`},
		{"canary webhook not a URL", `pools: {p1: {backends: [127.0.0.1:9101]}, p2: {backends: [127.0.0.1:9102]}}
routes:
  - name: r1
    canary:
      stable: p1
      candidate: p2
      webhook: alerts.local/hook   #!
`, `must be an http:// or https:// URL`},
		{"canary and pool", `pools: {p1: {backends: [127.0.0.1:9101]}, p2: {backends: [127.0.0.1:9102]}}
routes:
  - name: r1   #!
    pool: p1
    canary: {stable: p1, candidate: p2}
`, `needs exactly one of pool, split, blue_green and canary (has 2)`},
		{"empty route", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    pool: p1
  -    #!
`, `empty route`},

		// Outlier ejection.
		{"outlier failures 0 after default", `pools: {p1: {backends: [127.0.0.1:9101], outlier: {consecutive_failures: -1}}}   #!
routes: [{name: r1, pool: p1}]
`, `must be 1 to 10000`},
		{"outlier max below eject_for", `pools: {p1: {backends: [127.0.0.1:9101], outlier: {eject_for: 1m, max_eject_for: 30s}}}   #!
routes: [{name: r1, pool: p1}]
`, `shorter than eject_for`},
		{"outlier percent over 100", `pools: {p1: {backends: [127.0.0.1:9101], outlier: {max_ejected_percent: 101}}}   #!
routes: [{name: r1, pool: p1}]
`, `must be 1 to 100`},

		// Shadow.
		{"shadow unknown pool", shadowRoute("pool: p9   #!"), `unknown pool "p9"`},
		{"shadow without pool", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    pool: p1
    shadow:   #!
      percent: 10
`, `names no pool`},
		{"shadow percent over 100", shadowRoute("pool: p2\n      percent: 150   #!"), `must be 0 to 100`},
		{"shadow negative percent", shadowRoute("pool: p2\n      percent: -1   #!"), `must be 0 to 100`},
		{"shadow max_in_flight 0 after default", shadowRoute("pool: p2\n      max_in_flight: -3   #!"), `must be 1 to 100000`},
		{"shadow noise unknown pool", shadowRoute("pool: p2\n      noise: {pool: p9, percent: 5}   #!"), `unknown pool "p9"`},
		{"shadow noise is the shadow pool", shadowRoute("pool: p2\n      noise: {pool: p2, percent: 5}   #!"), `is the shadow pool itself`},
		{"shadow negative tolerance", shadowRoute("pool: p2\n      compare: {abs_tolerance: -1e-6}   #!"), `finite number, 0 or more`},
		{"shadow infinite tolerance", shadowRoute("pool: p2\n      compare: {rel_tolerance: .inf}   #!"), `finite number, 0 or more`},
		{"shadow bad ignore glob", shadowRoute("pool: p2\n      compare: {ignore: [\"meta[\"]}   #!"), `not a valid glob`},
		{"shadow record without file", shadowRoute("pool: p2\n      record: {max_bytes: 1MiB}   #!"), `names no file`},
		{"shadow record in a missing directory", shadowRoute("pool: p2\n      record: {file: /nonexistent-dir/diffs.jsonl}   #!"), `does not exist`},
		{"shadow record too small", shadowRoute("pool: p2\n      record: {file: diffs.jsonl, max_bytes: 100}   #!"), `at least 1KiB`},
		{"shadow record rate", shadowRoute("pool: p2\n      record: {file: diffs.jsonl, per_second: -1}   #!"), `above 0`},
		{"two routes record one file", `pools: {p1: {backends: [127.0.0.1:9101]}, p2: {backends: [127.0.0.1:9102]}}
routes:
  - {name: r1, pool: p1, shadow: {pool: p2, record: {file: d.jsonl}}}
  - {name: r2, pool: p1, shadow: {pool: p2, record: {file: ./d.jsonl}}}   #!
`, `already recorded to by route "r1"`},

		// Active health checks.
		{"health path without slash", poolWith("health:\n      path: health   #!"), `"health" must be a plain path starting with /`},
		{"health path with a space", poolWith("health:\n      path: \"/he alth\"   #!"), `no spaces`},
		{"health path with a control character", poolWith("health:\n      path: \"/health\\t\"   #!"), `control characters`},
		{"health path with a fragment", poolWith("health:\n      path: \"/health#x\"   #!"), `must be a plain path`},
		{"health interval too short", poolWith("health:\n      interval: 5ms   #!"), `must be 10ms to 1h, got 5ms`},
		{"health interval too long", poolWith("health:\n      interval: 2h   #!"), `must be 10ms to 1h, got 2h`},
		{"health jitter longer than interval", poolWith("health:\n      interval: 1s\n      jitter: 2s   #!"), `2s is longer than interval 1s`},
		{"health timeout longer than interval", poolWith("health:\n      interval: 1s\n      timeout: 1500ms   #!"), `1.5s is longer than interval 1s`},
		{"health timeout longer than the default interval", poolWith("health:\n      timeout: 3s   #!"), `longer than interval 2s`},
		{"health negative timeout", poolWith("health:\n      timeout: -1s   #!"), `negative`},
		{"health healthy_after negative", poolWith("health:\n      healthy_after: -1   #!"), `must be 1 to 100 probes in a row, got -1`},
		{"health unhealthy_after too many", poolWith("health:\n      unhealthy_after: 101   #!"), `must be 1 to 100 probes in a row, got 101`},
		{"health unknown key", poolWith("health:\n      uri: /health   #!"), `unknown key "uri"`},

		// Circuit breaker.
		{"breaker ratio over 1", poolWith("breaker:\n      failure_ratio: 1.5   #!"), `above 0 and at most 1, got 1.5`},
		{"breaker ratio negative", poolWith("breaker:\n      failure_ratio: -0.1   #!"), `above 0 and at most 1`},
		{"breaker ratio not a number", poolWith("breaker:\n      failure_ratio: .nan   #!"), `above 0 and at most 1`},
		{"breaker min_requests negative", poolWith("breaker:\n      min_requests: -1   #!"), `must be 1 to 1000000, got -1`},
		{"breaker min_requests too many", poolWith("breaker:\n      min_requests: 1000001   #!"), `must be 1 to 1000000`},
		{"breaker consecutive_failures too many", poolWith("breaker:\n      consecutive_failures: 2000000   #!"), `must be 1 to 1000000`},
		{"breaker half_open_requests too many", poolWith("breaker:\n      half_open_requests: 1001   #!"), `must be 1 to 1000, got 1001`},
		{"breaker open_for too short", poolWith("breaker:\n      open_for: 1ms   #!"), `must be 10ms to 1h, got 1ms`},
		{"breaker open_for too long", poolWith("breaker:\n      open_for: 90m   #!"), `must be 10ms to 1h, got 1h30m`},
		{"breaker window too short", poolWith("breaker:\n      window: 50ms   #!"), `must be 100ms to 1h, got 50ms`},
		{"breaker window too long", poolWith("breaker:\n      window: 61m   #!"), `got 1h1m`},
		{"breaker unknown key", poolWith("breaker:\n      max_failures: 3   #!"), `unknown key "max_failures"`},

		// Fallback.
		{"fallback unknown pool", routeWith("fallback: p9   #!"), `unknown pool "p9" (defined: p1, p2)`},
		{"fallback to the route's own pool", routeWith("fallback: p1   #!"), `"p1" is the route's only pool: it would fall back to itself`},
		{"fallback to a split's only pool", `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    split:
      variants: [{name: a, pool: p1, weight: 9}, {name: b, pool: p1, weight: 1}]
    fallback: p1   #!
`, `would fall back to itself`},

		// Retries.
		{"retries attempts negative", routeWith("retries:\n      attempts: -1   #!"), `must be 0 (off) to 10, got -1`},
		{"retries attempts too many", routeWith("retries:\n      attempts: 11   #!"), `must be 0 (off) to 10, got 11`},
		{"retries attempts not a number", routeWith("retries:\n      attempts: many   #!"), `wrong type`},
		{"retries not a mapping", routeWith("retries: [connect_error]   #!"), `wrong type: list where a mapping is expected`},
		{"retries unknown condition", routeWith("retries:\n      on:\n        - connect_error\n        - reset   #!"), `unknown condition "reset" (one of connect_error, timeout, bad_response, no_free_conn, http_5xx, or a status code 500 to 599)`},
		{"retries on a 4xx status", routeWith("retries:\n      on: [\"429\"]   #!"), `unknown condition "429"`},
		{"retries on a status beyond 599", routeWith("retries:\n      on: [600]   #!"), `unknown condition "600"`},
		{"retries on a padded status", routeWith("retries:\n      on: [\"0503\"]   #!"), `unknown condition "0503"`},
		{"retries on 5xx spelled loosely", routeWith("retries:\n      on: [5xx]   #!"), `unknown condition "5xx"`},
		{"retries condition listed twice", routeWith("retries:\n      on:\n        - timeout\n        - timeout   #!"), `"timeout" is listed twice`},
		{"retries status listed twice, once unquoted", routeWith("retries:\n      on:\n        - \"503\"\n        - 503   #!"), `"503" is listed twice`},
		{"retries budget negative", routeWith("retries:\n      budget_percent: -5   #!"), `must be above 0 and at most 100, got -5`},
		{"retries budget over 100", routeWith("retries:\n      budget_percent: 150   #!"), `must be above 0 and at most 100, got 150`},
		{"retries unknown key", routeWith("retries:\n      attempt: 2   #!"), `unknown key "attempt"`},

		// Cache.
		{"cache ttl too short", routeWith("cache: {ttl: 10ms}   #!"), `must be 1s to 720h, got 10ms`},
		{"cache too small", routeWith("cache: {max_bytes: 1KiB}   #!"), `must be 64KiB to 64GiB`},
		{"cache shared without redis", routeWith("cache: {shared: true}   #!"), `needs a redis block`},
		{"cache bad vary", routeWith("cache:\n      vary: [tenant]   #!"), `unknown key source "tenant"`},
		{"cache unknown key", routeWith("cache: {tll: 1m}   #!"), `unknown key "tll"`},

		// Limits.
		{"max_in_flight negative", routeWith("max_in_flight: -1   #!"), `must be 0 (no cap) to 1000000, got -1`},
		{"rate_limit without rate", routeWith("rate_limit:\n      - {key: client_ip}   #!"), `is required: requests per s, m or h`},
		{"rate_limit bad rate", routeWith("rate_limit: {rate: 100/day}   #!"), `invalid rate "100/day"`},
		{"rate_limit zero rate", routeWith("rate_limit: {rate: 0/s}   #!"), `invalid rate "0/s"`},
		// Regression: NaN passed the "above 0" check and made a limiter that admits nothing.
		{"rate_limit NaN rate", routeWith("rate_limit: {rate: NaN/s}   #!"), `invalid rate "NaN/s"`},
		{"rate_limit rate too high", routeWith("rate_limit: {rate: 2000000/s}   #!"), `at most 1000000/s`},
		{"rate_limit bad key", routeWith("rate_limit: {key: header, rate: 1/s}   #!"), `key source "header" needs a name`},
		{"rate_limit negative burst", routeWith("rate_limit: {rate: 1/s, burst: -2}   #!"), `must be 1 to 1000000, got -2`},
		{"rate_limit max_keys too many", routeWith("rate_limit: {rate: 1/s, max_keys: 20000000}   #!"), `must be 1 to 10000000`},
		{"rate_limit unknown scope", routeWith("rate_limit: {rate: 1/s, scope: cluster}   #!"), `must be local or global, got "cluster"`},
		{"rate_limit global without redis", routeWith("rate_limit: {rate: 1/s, scope: global}   #!"), `global needs a redis block`},
		{"rate_limit on_redis_error on a local limit", routeWith("rate_limit: {rate: 1/s, on_redis_error: deny}   #!"), `applies to scope: global only`},
		{"rate_limit unknown on_redis_error", "redis: {addr: 127.0.0.1:6379}\n" + routeWith("rate_limit: {rate: 1/s, scope: global, on_redis_error: panic}   #!"), `must be local, allow or deny, got "panic"`},
		{"rate_limit unknown key", routeWith("rate_limit:\n      - rate: 1/s\n        brust: 5   #!"), `unknown key "brust"`},
		{"rate_limit second entry", routeWith("rate_limit:\n      - {rate: 1/s}\n      - {rate: 1/s, burst: -1}   #!"), `must be 1 to 1000000, got -1`},

		// Auth, CORS, audit.
		{"auth without a method", routeWith("auth: {pass_credentials: true}   #!"), `needs api_keys, jwt or both`},
		{"api_keys without a file", routeWith("auth: {api_keys: {header: X-Key}}   #!"), `is required`},
		{"api_keys bad header", routeWith("auth: {api_keys: {keys_file: k.yaml, header: \"X Key\"}}   #!"), `is not a header name`},
		{"jwt without keys", routeWith("auth: {jwt: {audience: sluice}}   #!"), `needs exactly one of jwks_file, key_file and secret (has 0)`},
		{"jwt two key sources", routeWith("auth: {jwt: {jwks_file: a.json, key_file: b.pem}}   #!"), `(has 2)`},
		{"jwt short secret", routeWith("auth: {jwt: {secret: tooshort}}   #!"), `at least 32 bytes`},
		{"jwt alg none", routeWith("auth: {jwt: {jwks_file: a.json, algorithms: [none]}}   #!"), `unsigned tokens (none) are never accepted`},
		{"jwt HMAC with public keys", routeWith("auth: {jwt: {jwks_file: a.json, algorithms: [HS256]}}   #!"), `algorithm confusion`},
		{"jwt RS256 with a secret", routeWith("auth: {jwt: {secret: 0123456789abcdef0123456789abcdef, algorithms: [RS256]}}   #!"), `needs a public key`},
		{"jwt unknown algorithm", routeWith("auth: {jwt: {jwks_file: a.json, algorithms: [XX256]}}   #!"), `unknown algorithm "XX256"`},
		{"jwt leeway too long", routeWith("auth: {jwt: {jwks_file: a.json, leeway: 1h}}   #!"), `must be 0 to 5m0s`},
		{"jwt empty required claim", routeWith("auth:\n      jwt:\n        jwks_file: a.json\n        require: {scope: \"\"}   #!"), `needs a claim name and the value`},
		{"auth unknown key", routeWith("auth: {api_key: {keys_file: k.yaml}}   #!"), `unknown key "api_key"`},
		{"disabled auth with a method", routeWith("auth: {disabled: true, api_keys: {keys_file: k.yaml}}   #!"), `takes no api_keys or jwt`},
		{"server auth checked", "server:\n  auth: {jwt: {secret: short}}   #!\n" + minimalConfig, `at least 32 bytes`},
		{"api_key key source without api_keys", routeWith("rate_limit: {key: api_key, rate: 1/s}   #!"), `needs auth with api_keys`},
		{"jwt claim key source without jwt", routeWith("split:\n      sticky: jwt:sub   #!\n      variants: [{name: a, pool: p1, weight: 1}]"), `needs auth with jwt`},
		{"cache varies on a stripped credential", routeWith("auth: {api_keys: {keys_file: k.yaml}}\n    cache:\n      vary: [header:X-API-Key]   #!"), `is a credential`},
		{"bad route tag", routeWith("tags: [\"a b\"]   #!"), `tag "a b" must be`},
		{"cors without origins", routeWith("cors: {methods: [POST]}   #!"), `is required: the origins allowed`},
		{"cors origin with a path", routeWith("cors:\n      origins: [https://app.example/page]   #!"), `is not an origin`},
		{"cors origin without scheme", routeWith("cors:\n      origins: [app.example]   #!"), `is not an origin`},
		{"cors wildcard with credentials", routeWith("cors:\n      credentials: true\n      origins: [\"*\"]   #!"), `cannot go with credentials`},
		{"cors bad header", routeWith("cors:\n      origins: [https://a.example]\n      headers: [\"X Bad\"]   #!"), `is not a header name`},
		{"audit without file", "server:\n  audit: {sample_allowed: 0.1}   #!\n" + minimalConfig, `is required: a path, or stdout`},
		{"audit sample above 1", "server:\n  audit: {file: stdout, sample_allowed: 2}   #!\n" + minimalConfig, `must be 0 to 1`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps := parseProblems(t, tc.src)
			want := 1
			if strings.Contains(tc.src, "#!") {
				want = markedLine(t, tc.src, "#!")
			}
			for _, p := range ps {
				if p.Line == want && strings.Contains(p.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("no problem at line %d containing %q; got:\n%v", want, tc.msg, ps)
		})
	}
}

// Settings left out take the defaults documented on the fields (and in the
// constants, which docs and code share).
func TestParseAppliesDocumentedDefaults(t *testing.T) {
	cfg := mustParse(t, minimalConfig)
	s := cfg.Server
	checks := []struct {
		name      string
		got, want any
	}{
		{"server.listen", s.Listen, ":8080"},
		{"server.tls", s.TLS, (*TLS)(nil)},
		{"server.read_timeout", s.ReadTimeout.D(), 10 * time.Second},
		{"server.write_timeout", s.WriteTimeout.D(), 30 * time.Second},
		{"server.idle_timeout", s.IdleTimeout.D(), 60 * time.Second},
		{"server.max_header_bytes", s.MaxHeaderBytes, ByteSize(16 << 10)},
		{"server.max_headers", s.MaxHeaders, 100},
		{"server.max_body", s.MaxBody, ByteSize(1 << 20)},
		{"server.trusted_proxies", len(s.TrustedProxies), 0},
		{"server.drain_timeout", s.DrainTimeout.D(), 15 * time.Second},
		{"admin.listen", cfg.Admin.Listen, "127.0.0.1:9901"},
		{"admin.token", cfg.Admin.Token, ""},
		{"admin.pprof", cfg.Admin.Pprof, false},
		{"pool balance", cfg.Pools["p1"].Balance, "least_pending"},
		{"pool max_conns", cfg.Pools["p1"].MaxConns, 512},
		{"pool timeout", cfg.Pools["p1"].Timeout.D(), 30 * time.Second},
		{"pool outlier", cfg.Pools["p1"].Outlier, Outlier{ConsecutiveFailures: 5, EjectFor: Duration(30 * time.Second), MaxEjectFor: Duration(300 * time.Second), MaxEjectedPercent: 50}},
		{"pool health", cfg.Pools["p1"].Health, (*Health)(nil)},
		{"pool breaker", cfg.Pools["p1"].Breaker, Breaker{FailureRatio: 0.5, MinRequests: 20, ConsecutiveFailures: 5,
			OpenFor: Duration(10 * time.Second), HalfOpenRequests: 1, Window: Duration(10 * time.Second)}},
		{"backend weight", cfg.Pools["p1"].Backends[0].Weight, 1},
		{"route fallback", cfg.Routes[0].Fallback, ""},
		{"route retries", cfg.Routes[0].Retries, &Retries{Attempts: 1, On: []string{"connect_error"}, BudgetPercent: 20}},
		{"route max_body from server.max_body", cfg.Routes[0].MaxBody, ByteSize(1 << 20)},
		{"route timeout", cfg.Routes[0].Timeout.D(), time.Duration(0)},
		{"route strip_prefix", cfg.Routes[0].StripPrefix, ""},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// A file that sets everything gets exactly what it says, normalised the
// way matching expects (methods upper case, host lower case).
func TestParseFullFile(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	for _, f := range []string{cert, key} {
		if err := os.WriteFile(f, []byte("pem"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src := `server:
  listen: "0.0.0.0:8443"
  tls: {cert: ` + cert + `, key: ` + key + `}
  read_timeout: 5s
  write_timeout: 20s
  idle_timeout: 1m30s
  max_header_bytes: 32KiB
  max_headers: 50
  max_body: 2MiB
  trusted_proxies: [10.0.0.0/8, 192.168.1.1, "::1"]
  drain_timeout: 3s
admin:
  listen: "127.0.0.1:9999"
  token: s3cret
  pprof: true
pools:
  iris-v1:
    backends:
      - 127.0.0.1:9101
      - {addr: 127.0.0.1:9102, weight: 3}
    balance: p2c
    max_conns: 64
    timeout: 750ms
    outlier: {consecutive_failures: 3, eject_for: 10s, max_eject_for: 1m, max_ejected_percent: 34}
    health: {path: /health, interval: 2s, timeout: 500ms, healthy_after: 2, unhealthy_after: 3}
    breaker: {failure_ratio: 0.25, min_requests: 40, consecutive_failures: 7, open_for: 15s, half_open_requests: 2, window: 30s}
  iris-v2: {backends: ["[::1]:9103"], balance: round_robin}
routes:
  - name: iris
    match:
      path_prefix: /v1/models/iris
      methods: [post, Get]
      host: API.Example.com
      headers: {X-Tenant: acme}
    strip_prefix: /v1/models/iris
    pool: iris-v1
    fallback: iris-v2
    timeout: 1s
    retries: {attempts: 2, on: [connect_error, "503"], budget_percent: 20}
    max_body: 256KiB
    shadow:
      pool: iris-v2
      percent: 25
      max_body: 64KiB
      max_in_flight: 16
      timeout: 2s
      noise: {pool: iris-v1, percent: 5}
      compare:
        ignore: [timestamp, "meta.*"]
        abs_tolerance: 1e-6
        rel_tolerance: 1e-3
        label: prediction
      record: {file: ` + filepath.Join(dir, "diffs.jsonl") + `, max_bytes: 1MiB, per_second: 2.5}
  - name: catch-all
    pool: iris-v2
`
	cfg := mustParse(t, src)
	want := &Config{
		Server: Server{
			Listen:         "0.0.0.0:8443",
			TLS:            &TLS{Cert: cert, Key: key},
			ReadTimeout:    Duration(5 * time.Second),
			WriteTimeout:   Duration(20 * time.Second),
			IdleTimeout:    Duration(90 * time.Second),
			MaxHeaderBytes: 32 << 10,
			MaxHeaders:     50,
			MaxBody:        2 << 20,
			TrustedProxies: []string{"10.0.0.0/8", "192.168.1.1", "::1"},
			DrainTimeout:   Duration(3 * time.Second),
		},
		Admin: Admin{Listen: "127.0.0.1:9999", Token: "s3cret", Pprof: true},
		Pools: map[string]*Pool{
			"iris-v1": {
				Backends: []Backend{{Addr: "127.0.0.1:9101", Weight: 1}, {Addr: "127.0.0.1:9102", Weight: 3}},
				Balance:  "p2c", MaxConns: 64, Timeout: Duration(750 * time.Millisecond),
				Outlier: Outlier{ConsecutiveFailures: 3, EjectFor: Duration(10 * time.Second), MaxEjectFor: Duration(time.Minute), MaxEjectedPercent: 34},
				Health: &Health{Path: "/health", Interval: Duration(2 * time.Second), Jitter: Duration(200 * time.Millisecond),
					Timeout: Duration(500 * time.Millisecond), HealthyAfter: 2, UnhealthyAfter: 3},
				Breaker: Breaker{FailureRatio: 0.25, MinRequests: 40, ConsecutiveFailures: 7, OpenFor: Duration(15 * time.Second),
					HalfOpenRequests: 2, Window: Duration(30 * time.Second)},
			},
			"iris-v2": {
				Backends: []Backend{{Addr: "[::1]:9103", Weight: 1}},
				Balance:  "round_robin", MaxConns: DefaultMaxConns, Timeout: Duration(DefaultPoolTimeout),
				Outlier: Outlier{ConsecutiveFailures: DefaultOutlierFailures, EjectFor: Duration(DefaultOutlierEjectFor),
					MaxEjectFor: Duration(DefaultOutlierMaxEjectFor), MaxEjectedPercent: DefaultOutlierMaxEjectedPct},
				Breaker: Breaker{FailureRatio: DefaultBreakerFailureRatio, MinRequests: DefaultBreakerMinRequests,
					ConsecutiveFailures: DefaultBreakerFailures, OpenFor: Duration(DefaultBreakerOpenFor),
					HalfOpenRequests: DefaultBreakerHalfOpen, Window: Duration(DefaultBreakerWindow)},
			},
		},
		Routes: []*Route{
			{
				Name: "iris",
				Match: Match{
					PathPrefix: "/v1/models/iris",
					Methods:    []string{"POST", "GET"},
					Host:       "api.example.com",
					Headers:    map[string]string{"X-Tenant": "acme"},
				},
				StripPrefix: "/v1/models/iris",
				Pool:        "iris-v1",
				Fallback:    "iris-v2",
				Timeout:     Duration(time.Second),
				Retries:     &Retries{Attempts: 2, On: []string{"connect_error", "503"}, BudgetPercent: 20},
				MaxBody:     256 << 10,
				Shadow: &Shadow{
					Pool: "iris-v2", Percent: 25, MaxBody: 64 << 10, MaxInFlight: 16, Timeout: Duration(2 * time.Second),
					Noise: &ShadowNoise{Pool: "iris-v1", Percent: 5},
					Compare: ShadowCompare{
						Ignore:       []string{"timestamp", "meta.*"},
						AbsTolerance: 1e-6, RelTolerance: 1e-3, Label: "prediction",
					},
					Record: &ShadowRecord{File: filepath.Join(dir, "diffs.jsonl"), MaxBytes: 1 << 20, PerSecond: 2.5},
				},
			},
			{Name: "catch-all", Pool: "iris-v2", MaxBody: 2 << 20, Retries: DefaultRetries()},
		},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse(full file):\n got %+v\nwant %+v", cfg, want)
		for i := range min(len(cfg.Routes), len(want.Routes)) {
			t.Errorf("route %d:\n got %+v\nwant %+v", i, *cfg.Routes[i], *want.Routes[i])
		}
	}
	prefixes := cfg.Server.TrustedPrefixes()
	if len(prefixes) != 3 || prefixes[1].Bits() != 32 || prefixes[2].Bits() != 128 {
		t.Errorf("TrustedPrefixes = %v, want a /8, a /32 and a /128", prefixes)
	}
}

// ${VAR} and ${VAR:-default} expand inside scalar values, after the YAML
// structure is fixed, so an environment value can never add keys.
func TestParseExpandsEnvironment(t *testing.T) {
	t.Setenv("SLUICE_TEST_CONNS", "64")
	t.Setenv("SLUICE_TEST_PORT", "8181")
	t.Setenv("SLUICE_TEST_TOKEN", "a: b #c")
	t.Setenv("SLUICE_TEST_EMPTY", "")
	t.Setenv("SLUICE_TEST_NULL", "null")
	t.Setenv("SLUICE_TEST_TILDE", "~")
	os.Unsetenv("SLUICE_TEST_UNSET")

	cases := []struct {
		name  string
		field string // server, admin or pool line to insert
		check func(*Config) (got, want any)
	}{
		{"number from a plain scalar", "pool:max_conns: ${SLUICE_TEST_CONNS}",
			func(c *Config) (any, any) { return c.Pools["p1"].MaxConns, 64 }},
		{"inside a quoted string", `server:listen: "127.0.0.1:${SLUICE_TEST_PORT}"`,
			func(c *Config) (any, any) { return c.Server.Listen, "127.0.0.1:8181" }},
		{"default when unset", "pool:timeout: ${SLUICE_TEST_UNSET:-7s}",
			func(c *Config) (any, any) { return c.Pools["p1"].Timeout.D(), 7 * time.Second }},
		{"default when set but empty", "pool:balance: ${SLUICE_TEST_EMPTY:-random}",
			func(c *Config) (any, any) { return c.Pools["p1"].Balance, "random" }},
		{"set value wins over default", "pool:max_conns: ${SLUICE_TEST_CONNS:-3}",
			func(c *Config) (any, any) { return c.Pools["p1"].MaxConns, 64 }},
		{"YAML punctuation stays one string", "admin:token: ${SLUICE_TEST_TOKEN}",
			func(c *Config) (any, any) { return c.Admin.Token, "a: b #c" }},
		{"unset without default is empty", "admin:token: ${SLUICE_TEST_UNSET}",
			func(c *Config) (any, any) { return c.Admin.Token, "" }},
		{"unset number without default takes the default", "pool:max_conns: ${SLUICE_TEST_UNSET}",
			func(c *Config) (any, any) { return c.Pools["p1"].MaxConns, DefaultMaxConns }},
		// Regression: a token that happens to read "null" once turned into
		// no token at all, leaving /admin/* open.
		{"a value reading null stays that text", "admin:token: ${SLUICE_TEST_NULL}",
			func(c *Config) (any, any) { return c.Admin.Token, "null" }},
		{"a value reading ~ stays that text", "admin:token: ${SLUICE_TEST_TILDE}",
			func(c *Config) (any, any) { return c.Admin.Token, "~" }},
		{"two references in one value", "admin:token: ${SLUICE_TEST_CONNS}-${SLUICE_TEST_PORT}",
			func(c *Config) (any, any) { return c.Admin.Token, "64-8181" }},
		{"a dollar without braces is literal", "admin:token: pa$$word$HOME",
			func(c *Config) (any, any) { return c.Admin.Token, "pa$$word$HOME" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, withSetting(tc.field))
			if got, want := tc.check(cfg); !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v, want %#v", got, want)
			}
		})
	}

	// A quoted value keeps its string type after expansion, so it cannot
	// be used where a number goes; the problem still has its line.
	t.Run("quoted number stays text", func(t *testing.T) {
		src := withSetting(`pool:max_conns: "${SLUICE_TEST_CONNS}"   #!`)
		ps := parseProblems(t, src)
		if len(ps) != 1 || ps[0].Line != markedLine(t, src, "#!") || !strings.Contains(ps[0].Msg, "wrong type") {
			t.Errorf("got %v, want one wrong-type problem at the marked line", ps)
		}
	})
}

// withSetting builds a small valid file with one extra line, given as
// "section:key: value" where section is server, admin or pool.
func withSetting(setting string) string {
	section, line, _ := strings.Cut(setting, ":")
	var server, admin, pool string
	switch section {
	case "server":
		server = "\n  " + line
	case "admin":
		admin = "\n  " + line
	case "pool":
		pool = "\n    " + line
	}
	return "server:\n  read_timeout: 10s" + server + `
admin:
  pprof: false` + admin + `
pools:
  p1:
    backends: [127.0.0.1:9101]` + pool + `
routes:
  - name: r1
    pool: p1
`
}

// A backend is a plain address or {addr, weight}; both mean the same thing
// with weight 1, and weight 0 would be a backend that never gets traffic.
func TestParseBackendForms(t *testing.T) {
	cases := []struct {
		name     string
		backends string
		want     []Backend
		problem  string
	}{
		{"plain strings", "[127.0.0.1:9101, 127.0.0.1:9102]",
			[]Backend{{"127.0.0.1:9101", 1}, {"127.0.0.1:9102", 1}}, ""},
		{"mapping with weight", "[{addr: 127.0.0.1:9101, weight: 5}]",
			[]Backend{{"127.0.0.1:9101", 5}}, ""},
		{"mapping without weight", "[{addr: 127.0.0.1:9101}]",
			[]Backend{{"127.0.0.1:9101", 1}}, ""},
		{"both forms mixed", "[127.0.0.1:9101, {addr: \"[::1]:9102\", weight: 2}]",
			[]Backend{{"127.0.0.1:9101", 1}, {"[::1]:9102", 2}}, ""},
		{"host name", "[worker-1.internal:9101]",
			[]Backend{{"worker-1.internal:9101", 1}}, ""},
		{"weight 0 rejected", "[{addr: 127.0.0.1:9101, weight: 0}]", nil, "weight must be 1 to 10000, got 0"},
		{"negative weight rejected", "[{addr: 127.0.0.1:9101, weight: -2}]", nil, "got -2"},
		{"mapping without addr rejected", "[{weight: 2}]", nil, `backend "" is not host:port`},
		{"port 0 rejected", "[127.0.0.1:0]", nil, "not host:port"},
		// yaml.v3 drops null list entries, so the pool is empty; the
		// problem points at the pool.
		{"only a null entry rejected", "[~]", nil, `pool "p1" has no backends`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := "pools:\n  p1:\n    backends: " + tc.backends + "\nroutes: [{name: r1, pool: p1}]\n"
			if tc.problem != "" {
				ps := parseProblems(t, src)
				line := 3 // backends:
				if strings.Contains(tc.problem, "has no backends") {
					line = 2 // the pool's name
				}
				if !slices.ContainsFunc(ps, func(p Problem) bool { return p.Line == line && strings.Contains(p.Msg, tc.problem) }) {
					t.Errorf("want a problem at line %d containing %q, got:\n%v", line, tc.problem, ps)
				}
				return
			}
			cfg := mustParse(t, src)
			if got := cfg.Pools["p1"].Backends; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("backends = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Listener settings are bound at start; a reload must name each one that
// changed so the operator knows to restart, and must not complain about
// settings that reload.
func TestParseKeySource(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want KeySource
	}{
		{"header:X-User-Id", KeySource{Kind: KeyHeader, Name: "X-User-Id"}},
		{"cookie:uid", KeySource{Kind: KeyCookie, Name: "uid"}},
		{"query:user", KeySource{Kind: KeyQuery, Name: "user"}},
		{"json:user.id", KeySource{Kind: KeyJSON, Path: []string{"user", "id"}}},
		{"client_ip", KeySource{Kind: KeyClientIP}},
		{"path", KeySource{Kind: KeyPath}},
		{"api_key", KeySource{Kind: KeyAPIKey}},
		{"jwt:sub", KeySource{Kind: KeyJWTClaim, Path: []string{"sub"}}},
		{"jwt:org.id", KeySource{Kind: KeyJWTClaim, Path: []string{"org", "id"}}},
	} {
		got, err := ParseKeySource(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "header", "client_ip:x", "body:x", "header:bad name", "json:.a", "api_key:x", "jwt", "jwt:"} {
		if _, err := ParseKeySource(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// shadowRoute is a config with one route whose shadow block holds body, on
// the line of the route's "shadow:" key plus one.
func shadowRoute(body string) string {
	return `pools: {p1: {backends: [127.0.0.1:9101]}, p2: {backends: [127.0.0.1:9102], timeout: 3s}}
routes:
  - name: r1
    pool: p1
    shadow:
      ` + body + "\n"
}

// poolWith is a config whose pool p1 holds block (indented as a key of
// the pool), next to a second pool p2.
func poolWith(block string) string {
	return `pools:
  p1:
    backends: [127.0.0.1:9101]
    ` + block + `
  p2: {backends: [127.0.0.1:9102]}
routes: [{name: r1, pool: p1}]
`
}

// routeWith is a config whose route r1 (on pool p1; p2 is defined too)
// holds block, indented as a key of the route.
func routeWith(block string) string {
	return `pools: {p1: {backends: [127.0.0.1:9101]}, p2: {backends: [127.0.0.1:9102]}}
routes:
  - name: r1
    pool: p1
    ` + block + "\n"
}

func TestShadowDefaults(t *testing.T) {
	cfg := mustParse(t, `pools: {p1: {backends: [127.0.0.1:9101]}, p2: {backends: [127.0.0.1:9102], timeout: 3s}}
routes:
  - name: r1
    pool: p1
    max_body: 4KiB
    shadow: {pool: p2, percent: 12.5, record: {file: diffs.jsonl}}
`)
	sh := cfg.Routes[0].Shadow
	if sh.MaxBody != 4<<10 || sh.MaxInFlight != DefaultShadowMaxInFlight || sh.Timeout.D() != 3*time.Second || sh.Percent != 12.5 {
		t.Errorf("shadow defaults: max_body %d, max_in_flight %d, timeout %v (want the route's max_body, %d, the pool's 3s)",
			sh.MaxBody, sh.MaxInFlight, sh.Timeout.D(), DefaultShadowMaxInFlight)
	}
	if r := sh.Record; r.MaxBytes != DefaultShadowRecordMaxBytes || r.PerSecond != DefaultShadowRecordPerSecond {
		t.Errorf("record defaults: %+v", r)
	}
}

func TestSplitSaltDefaultsToTheRouteName(t *testing.T) {
	cfg := mustParse(t, `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: r1
    split: {sticky: header:X-User-Id, variants: [{name: a, pool: p1, weight: 1}]}
`)
	if got := cfg.Routes[0].Split.Salt; got != "r1" {
		t.Fatalf("salt = %q, want the route name", got)
	}
}

func TestCanaryDefaults(t *testing.T) {
	cfg := mustParse(t, `pools: {p1: {backends: [127.0.0.1:9101]}, p2: {backends: [127.0.0.1:9102]}}
state_dir: /var/lib/sluice
routes:
  - name: r1
    canary: {stable: p1, candidate: p2, gates: {latency_ratio: 0}}
`)
	cn := cfg.Routes[0].Canary
	if !slices.Equal(cn.Steps, DefaultCanarySteps()) || cn.Interval.D() != DefaultCanaryInterval ||
		cn.MinRequests != DefaultCanaryMinRequests || cn.OnFail != CanaryRollback || cn.Salt != "r1" {
		t.Errorf("canary defaults: %+v", cn)
	}
	// An absent gate gets its default; one set to 0 is off.
	if g := cn.Gates; *g.SuccessRatio != DefaultCanarySuccessRatio || *g.LatencyRatio != 0 || g.LatencySlack.D() != DefaultCanaryLatencySlack {
		t.Errorf("gates: success %v latency %v slack %v", *g.SuccessRatio, *g.LatencyRatio, g.LatencySlack.D())
	}
	if cfg.StateDir != "/var/lib/sluice" {
		t.Errorf("state_dir = %q", cfg.StateDir)
	}
	if got := cfg.Routes[0].PoolNames(); !slices.Equal(got, []string{"p1", "p2"}) {
		t.Errorf("pool names %v", got)
	}
}

func TestSpawnDefaults(t *testing.T) {
	cfg := mustParse(t, `pools:
  byaddr:
    backends: [127.0.0.1:9101, 127.0.0.1:9102]
    spawn: {command: [w, "{addr}"]}
  byport:
    spawn: {command: [w, -port, "{port}"], ports: 9201-9209}
routes: [{name: r1, pool: byaddr}]
`)
	if got := cfg.Pools["byaddr"].Spawn.Replicas; got != 2 {
		t.Errorf("replicas default with two backends = %d, want 2", got)
	}
	sp := cfg.Pools["byport"].Spawn
	if sp.Replicas != 1 || sp.StartTimeout.D() != DefaultStartTimeout || sp.StopTimeout.D() != DefaultStopTimeout {
		t.Errorf("port-range spawn defaults: %+v", sp)
	}
}

// Active checks run only for a pool with a health block; what the block
// leaves out takes the defaults, jitter and timeout following interval.
func TestHealthDefaults(t *testing.T) {
	ms := func(n int) Duration { return Duration(time.Duration(n) * time.Millisecond) }
	cases := []struct {
		name  string
		block string
		want  *Health
	}{
		{"no block, no checks", "", nil},
		{"empty block", "health: {}",
			&Health{Path: "/health", Interval: ms(2000), Jitter: ms(200), Timeout: ms(500), HealthyAfter: 2, UnhealthyAfter: 3}},
		{"jitter a tenth of a set interval", "health: {interval: 10s}",
			&Health{Path: "/health", Interval: ms(10000), Jitter: ms(1000), Timeout: ms(500), HealthyAfter: 2, UnhealthyAfter: 3}},
		{"timeout capped by a short interval", "health: {interval: 100ms}",
			&Health{Path: "/health", Interval: ms(100), Jitter: ms(10), Timeout: ms(100), HealthyAfter: 2, UnhealthyAfter: 3}},
		{"everything set is kept", "health: {path: \"/ready?deep=1\", interval: 5s, jitter: 5s, timeout: 5s, healthy_after: 1, unhealthy_after: 100}",
			&Health{Path: "/ready?deep=1", Interval: ms(5000), Jitter: ms(5000), Timeout: ms(5000), HealthyAfter: 1, UnhealthyAfter: 100}},
		{"smallest interval", "health: {interval: 10ms}",
			&Health{Path: "/health", Interval: ms(10), Jitter: ms(1), Timeout: ms(10), HealthyAfter: 2, UnhealthyAfter: 3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, "pools:\n  p1:\n    backends: [127.0.0.1:9101]\n    "+tc.block+"\nroutes: [{name: r1, pool: p1}]\n")
			if got := cfg.Pools["p1"].Health; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("health = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// A breaker block sets what it names; the rest keeps the defaults.
func TestBreakerPartialBlockKeepsOtherDefaults(t *testing.T) {
	cfg := mustParse(t, poolWith("breaker: {failure_ratio: 1, open_for: 10ms}"))
	want := Breaker{FailureRatio: 1, MinRequests: DefaultBreakerMinRequests, ConsecutiveFailures: DefaultBreakerFailures,
		OpenFor: Duration(10 * time.Millisecond), HalfOpenRequests: DefaultBreakerHalfOpen, Window: Duration(DefaultBreakerWindow)}
	if got := cfg.Pools["p1"].Breaker; got != want {
		t.Errorf("breaker = %+v, want %+v", got, want)
	}
}

func TestCacheDefaults(t *testing.T) {
	cfg := mustParse(t, routeWith("cache: {}"))
	want := Cache{TTL: Duration(DefaultCacheTTL), MaxBytes: DefaultCacheMaxBytes}
	if got := cfg.Routes[0].Cache; got == nil || !reflect.DeepEqual(*got, want) {
		t.Errorf("cache = %+v, want %+v", got, want)
	}
}

// A rate_limit entry may stand alone or in a list; burst defaults to the
// rate per second rounded up (at least 1), key to client_ip, scope to
// local, and a global limit falls back to local buckets for 1 replica.
func TestRateLimitDefaults(t *testing.T) {
	cfg := mustParse(t, `redis: {addr: 127.0.0.1:6379}
pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - name: single
    pool: p1
    rate_limit: {rate: 2.5/s}
  - name: listed
    pool: p1
    max_in_flight: 64
    rate_limit:
      - {key: header:X-API-Key, rate: 600/m, scope: global}
      - {rate: 10/h, burst: 3, max_keys: 50}
`)
	cases := []struct {
		name string
		got  *RateLimit
		want RateLimit
	}{
		{"single mapping", cfg.Routes[0].RateLimit[0], RateLimit{Key: "client_ip", Rate: Rate{2.5, time.Second}, Burst: 3, Scope: ScopeLocal, MaxKeys: DefaultMaxKeys}},
		{"global", cfg.Routes[1].RateLimit[0], RateLimit{Key: "header:X-API-Key", Rate: Rate{600, time.Minute}, Burst: 10, Scope: ScopeGlobal,
			OnRedisError: RedisErrorLocal, Replicas: 1, MaxKeys: DefaultMaxKeys}},
		{"slow rate", cfg.Routes[1].RateLimit[1], RateLimit{Key: "client_ip", Rate: Rate{10, time.Hour}, Burst: 3, Scope: ScopeLocal, MaxKeys: 50}},
	}
	for _, tc := range cases {
		if *tc.got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, *tc.got, tc.want)
		}
	}
	if len(cfg.Routes[0].RateLimit) != 1 || cfg.Routes[1].MaxInFlight != 64 || cfg.Routes[0].MaxInFlight != 0 {
		t.Errorf("entries %d, max_in_flight %d and %d", len(cfg.Routes[0].RateLimit), cfg.Routes[1].MaxInFlight, cfg.Routes[0].MaxInFlight)
	}
	if got := cfg.Routes[1].RateLimit[1].Rate.String(); got != "10/h" {
		t.Errorf("rate written back as %q, want 10/h", got)
	}
}

// Every route retries: without a block, once on connect_error. In a
// block, attempts left out is still one retry, while attempts: 0 turns
// retries off; on and budget_percent take their defaults when left out.
func TestRetriesDefaults(t *testing.T) {
	cases := []struct {
		name  string
		block string
		want  *Retries
	}{
		{"no block", "", &Retries{Attempts: 1, On: []string{"connect_error"}, BudgetPercent: 20}},
		{"null block is no block", "retries:", &Retries{Attempts: 1, On: []string{"connect_error"}, BudgetPercent: 20}},
		{"empty block", "retries: {}", &Retries{Attempts: 1, On: []string{"connect_error"}, BudgetPercent: 20}},
		{"attempts left out is one retry", "retries: {on: [timeout]}", &Retries{Attempts: 1, On: []string{"timeout"}, BudgetPercent: 20}},
		{"attempts 0 turns retries off", "retries: {attempts: 0}", &Retries{Attempts: 0, On: []string{"connect_error"}, BudgetPercent: 20}},
		{"empty on list is connect_error", "retries: {attempts: 3, on: []}", &Retries{Attempts: 3, On: []string{"connect_error"}, BudgetPercent: 20}},
		{"budget 0 is the default", "retries: {budget_percent: 0}", &Retries{Attempts: 1, On: []string{"connect_error"}, BudgetPercent: 20}},
		// Unquoted, 503 is a YAML integer; it must read as the code.
		{"status codes quoted or not", "retries: {attempts: 10, on: [http_5xx, 503, \"502\", 599], budget_percent: 100, non_idempotent: true}",
			&Retries{Attempts: 10, On: []string{"http_5xx", "503", "502", "599"}, BudgetPercent: 100, NonIdempotent: true}},
		{"every condition", "retries:\n      on: [connect_error, timeout, bad_response, no_free_conn, http_5xx, \"500\"]\n      budget_percent: 0.5",
			&Retries{Attempts: 1, On: []string{"connect_error", "timeout", "bad_response", "no_free_conn", "http_5xx", "500"}, BudgetPercent: 0.5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, routeWith(tc.block))
			if got := cfg.Routes[0].Retries; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("retries = %+v, want %+v", got, tc.want)
			}
		})
	}

	// attempts: 0 reached through an alias or a merge key counts as
	// written, and a key next to the merge overrides it.
	cfg := mustParse(t, `pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - {name: base, pool: p1, retries: &off {attempts: 0, on: [timeout]}}
  - {name: merged, pool: p1, retries: {<<: *off}}
  - {name: overridden, pool: p1, retries: {<<: *off, attempts: 2}}
  - {name: alias, pool: p1, retries: *off}
`)
	for i, want := range []int{0, 0, 2, 0} {
		if got := cfg.Routes[i].Retries.Attempts; got != want {
			t.Errorf("route %s: attempts = %d, want %d", cfg.Routes[i].Name, got, want)
		}
	}

	// Each route has a retries block of its own, never a shared one.
	cfg = mustParse(t, "pools: {p1: {backends: [127.0.0.1:9101]}}\nroutes: [{name: a, pool: p1}, {name: b, pool: p1}]\n")
	if a, b := cfg.Routes[0].Retries, cfg.Routes[1].Retries; a == b || &a.On[0] == &b.On[0] {
		t.Errorf("two routes share one default retries block")
	}
}

// A fallback may be any defined pool the route does not send everything
// to already: another pool, or one arm of a split or blue-green route.
func TestFallbackAccepted(t *testing.T) {
	cfg := mustParse(t, `pools: {p1: {backends: [127.0.0.1:9101]}, p2: {backends: [127.0.0.1:9102]}, p3: {backends: [127.0.0.1:9103]}}
routes:
  - {name: plain, pool: p1, fallback: p2}
  - name: split-arm
    split: {variants: [{name: a, pool: p1, weight: 9}, {name: b, pool: p2, weight: 1}]}
    fallback: p1
  - {name: bg-idle, blue_green: {blue: p1, green: p2, active: blue}, fallback: p2}
  - {name: bg-other, blue_green: {blue: p1, green: p2, active: green}, fallback: p3}
`)
	for i, want := range []string{"p2", "p1", "p2", "p3"} {
		if got := cfg.Routes[i].Fallback; got != want {
			t.Errorf("route %s: fallback = %q, want %q", cfg.Routes[i].Name, got, want)
		}
	}
}

// The pool and route resilience keys exactly as SPEC.md section 2 shows
// them parse, and mean what they say.
func TestParseSpecResilienceExample(t *testing.T) {
	cfg := mustParse(t, `pools:
  iris-v1:
    backends: [127.0.0.1:9101, 127.0.0.1:9102]
    balance: least_pending
    max_conns: 512
    timeout: 2s
    health:  {path: /health, interval: 2s, timeout: 500ms, healthy_after: 2, unhealthy_after: 3}
    outlier: {consecutive_failures: 5, eject_for: 30s, max_ejected_percent: 50}
    breaker: {failure_ratio: 0.5, min_requests: 20, consecutive_failures: 5, open_for: 10s, half_open_requests: 1}
  iris-v2: {backends: [127.0.0.1:9103]}
routes:
  - name: iris
    match: {path_prefix: /v1/models/iris, methods: [POST]}
    pool: iris-v2
    fallback: iris-v1
    timeout: 1s
    retries: {attempts: 2, on: [connect_error, "503"], budget_percent: 20}
`)
	p := cfg.Pools["iris-v1"]
	wantHealth := &Health{Path: "/health", Interval: Duration(2 * time.Second), Jitter: Duration(200 * time.Millisecond),
		Timeout: Duration(500 * time.Millisecond), HealthyAfter: 2, UnhealthyAfter: 3}
	if !reflect.DeepEqual(p.Health, wantHealth) {
		t.Errorf("health = %+v, want %+v", p.Health, wantHealth)
	}
	wantBreaker := Breaker{FailureRatio: 0.5, MinRequests: 20, ConsecutiveFailures: 5, OpenFor: Duration(10 * time.Second),
		HalfOpenRequests: 1, Window: Duration(DefaultBreakerWindow)}
	if p.Breaker != wantBreaker {
		t.Errorf("breaker = %+v, want %+v", p.Breaker, wantBreaker)
	}
	r := cfg.Routes[0]
	wantRetries := &Retries{Attempts: 2, On: []string{"connect_error", "503"}, BudgetPercent: 20}
	if r.Fallback != "iris-v1" || !reflect.DeepEqual(r.Retries, wantRetries) {
		t.Errorf("route fallback %q, retries %+v; want iris-v1, %+v", r.Fallback, r.Retries, wantRetries)
	}
	if cfg.Pools["iris-v2"].Health != nil {
		t.Errorf("iris-v2 has no health block but got active checks")
	}
}

func TestListenerChanges(t *testing.T) {
	base := mustParse(t, minimalConfig)
	cases := []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"nothing", func(c *Config) {}, nil},
		{"listen", func(c *Config) { c.Server.Listen = ":9090" }, []string{"server.listen"}},
		{"tls added", func(c *Config) { c.Server.TLS = &TLS{Cert: "a", Key: "b"} }, []string{"server.tls"}},
		{"read_timeout", func(c *Config) { c.Server.ReadTimeout = Duration(time.Second) }, []string{"server.read_timeout"}},
		{"write_timeout", func(c *Config) { c.Server.WriteTimeout = Duration(time.Second) }, []string{"server.write_timeout"}},
		{"idle_timeout", func(c *Config) { c.Server.IdleTimeout = Duration(time.Second) }, []string{"server.idle_timeout"}},
		{"max_header_bytes", func(c *Config) { c.Server.MaxHeaderBytes = 1 << 20 }, []string{"server.max_header_bytes"}},
		{"admin listen", func(c *Config) { c.Admin.Listen = "127.0.0.1:1" }, []string{"admin.listen"}},
		{"pprof", func(c *Config) { c.Admin.Pprof = true }, []string{"admin.pprof"}},
		{"redirect_http", func(c *Config) { c.Server.RedirectHTTP = ":80" }, []string{"server.redirect_http"}},
		{"several at once, in a fixed order", func(c *Config) {
			c.Admin.Listen = "127.0.0.1:1"
			c.Server.Listen = ":9090"
			c.Server.IdleTimeout = Duration(time.Second)
		}, []string{"server.listen", "server.idle_timeout", "admin.listen"}},
		{"per-request settings reload", func(c *Config) {
			c.Server.MaxBody = 1
			c.Server.MaxHeaders = 1
			c.Server.TrustedProxies = []string{"10.0.0.0/8"}
			c.Server.DrainTimeout = Duration(time.Second)
			c.Admin.Token = "new"
			c.Pools = map[string]*Pool{"p2": {Backends: []Backend{{"127.0.0.1:1", 1}}}}
			c.Routes = nil
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			next := *base
			tc.change(&next)
			if got := ListenerChanges(base, &next); !slices.Equal(got, tc.want) {
				t.Errorf("ListenerChanges = %q, want %q", got, tc.want)
			}
		})
	}

	t.Run("tls files", func(t *testing.T) {
		a, b := *base, *base
		a.Server.TLS = &TLS{Cert: "a.crt", Key: "a.key"}
		b.Server.TLS = &TLS{Cert: "a.crt", Key: "a.key"}
		if got := ListenerChanges(&a, &b); got != nil {
			t.Errorf("same tls files in new structs: got %q, want none", got)
		}
		b.Server.TLS = &TLS{Cert: "b.crt", Key: "a.key"}
		if got := ListenerChanges(&a, &b); got != nil {
			t.Errorf("other certificate files: got %q, want none (a reload loads them)", got)
		}
		b.Server.TLS = nil
		if got := ListenerChanges(&a, &b); !slices.Equal(got, []string{"server.tls"}) {
			t.Errorf("tls removed: got %q, want server.tls", got)
		}
	})
}

// `make run` starts from the shipped file; it must always parse.
func TestShippedConfigParses(t *testing.T) {
	loaded, err := Load(shippedConfig)
	if err != nil {
		t.Fatalf("Load(%s): %v", shippedConfig, err)
	}
	cfg := loaded.Config
	if len(cfg.Routes) == 0 || len(cfg.Pools) == 0 {
		t.Fatalf("shipped config has %d routes and %d pools, want some of each", len(cfg.Routes), len(cfg.Pools))
	}
	for _, r := range cfg.Routes {
		for _, pool := range r.PoolNames() {
			if cfg.Pools[pool] == nil {
				t.Errorf("route %q names pool %q, which is not defined", r.Name, pool)
			}
		}
	}
	if want := Sum(loaded.Source); loaded.SHA256 != want || len(want) != 64 {
		t.Errorf("SHA256 = %q, want the hex digest of the file %q", loaded.SHA256, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want an error wrapping os.ErrNotExist", err)
	}
}

// Editors on Windows save UTF-8 with a byte-order mark; it is not a key.
func TestParseToleratesByteOrderMark(t *testing.T) {
	mustParse(t, "\xef\xbb\xbf"+minimalConfig)
}

// Regression: the strict key check reported YAML merge keys ("<<: *base")
// as unknown keys, though yaml.v3 merges them and KnownFields allows them;
// operators use them to share pool settings.
func TestParseAcceptsYAMLMergeKeys(t *testing.T) {
	cfg := mustParse(t, `pools:
  iris-v1: &pool
    backends: [127.0.0.1:9101]
    balance: p2c
    max_conns: 64
  iris-v2:
    <<: *pool
    backends: [127.0.0.1:9102]
routes: [{name: r1, pool: iris-v2}]
`)
	p := cfg.Pools["iris-v2"]
	if p.Balance != "p2c" || p.MaxConns != 64 || p.Backends[0].Addr != "127.0.0.1:9102" {
		t.Errorf("iris-v2 = %+v, want iris-v1's settings with its own backend", *p)
	}

	// A key the merged mapping does not know is still reported, with its line.
	src := `pools:
  p1:
    <<: {balance: p2c, weight: 2}   #!
    backends: [127.0.0.1:9101]
routes: [{name: r1, pool: p1}]
`
	ps := parseProblems(t, src)
	if len(ps) != 1 || ps[0].Line != markedLine(t, src, "#!") || !strings.Contains(ps[0].Msg, `unknown key "weight"`) {
		t.Errorf("got %v, want one unknown key \"weight\" at the marked line", ps)
	}
}

// Regression: yaml.v3 names Go types in its messages ("!!str", "int");
// an operator must read plain words instead.
func TestParseProblemsDoNotNameGoTypes(t *testing.T) {
	src := "server:\n  max_headers: many\n  trusted_proxies: 10.0.0.0/8\n" + minimalConfig
	for _, p := range parseProblems(t, src) {
		for _, jargon := range []string{"!!", "[]string", "int", "unmarshal"} {
			if strings.Contains(p.Msg, jargon) {
				t.Errorf("line %d: message %q contains %q", p.Line, p.Msg, jargon)
			}
		}
	}
}

// A route's auth replaces the server's as a whole; disabled makes the
// route public; blocks left short take the documented defaults.
func TestAuthDefaultsAndInheritance(t *testing.T) {
	cfg := mustParse(t, `
server:
  auth: {api_keys: {keys_file: keys.yaml}}
pools: {p1: {backends: [127.0.0.1:9101]}}
routes:
  - {name: inherits, pool: p1}
  - {name: own, pool: p1, auth: {jwt: {jwks_file: jwks.json}}}
  - {name: hmac, pool: p1, auth: {jwt: {secret: 0123456789abcdef0123456789abcdef}}}
  - {name: public, pool: p1, auth: {disabled: true}}
  - {name: browser, pool: p1, cors: {origins: ["https://app.example"], methods: [post]}}
`)
	r := func(name string) *Route {
		for _, rc := range cfg.Routes {
			if rc.Name == name {
				return rc
			}
		}
		t.Fatalf("no route %s", name)
		return nil
	}
	if a := cfg.AuthFor(r("inherits")); a == nil || a.APIKeys == nil || a.APIKeys.Header != DefaultAPIKeyHeader {
		t.Errorf("inherits: %+v, want the server's api_keys with header %s", a, DefaultAPIKeyHeader)
	}
	if a := cfg.AuthFor(r("own")); a == nil || a.APIKeys != nil || a.JWT == nil {
		t.Errorf("own: %+v, want its jwt block alone", a)
	} else if j := a.JWT; j.Leeway.D() != DefaultJWTLeeway || !slices.Equal(j.Algorithms, []string{"RS256", "ES256"}) {
		t.Errorf("jwt defaults: leeway %v algorithms %v", j.Leeway.D(), j.Algorithms)
	}
	if a := cfg.AuthFor(r("hmac")); !slices.Equal(a.JWT.Algorithms, []string{"HS256"}) {
		t.Errorf("a secret's algorithms: %v, want [HS256]", a.JWT.Algorithms)
	}
	if a := cfg.AuthFor(r("public")); a != nil {
		t.Errorf("public: %+v, want none", a)
	}
	c := r("browser").CORS
	if !slices.Equal(c.Methods, []string{"POST"}) || c.MaxAge.D() != DefaultCORSMaxAge || !slices.Equal(c.ExposeHeaders, []string{"X-Request-Id", "X-Sluice-Variant"}) {
		t.Errorf("cors defaults: %+v", c)
	}
}
