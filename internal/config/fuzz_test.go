package config

import (
	"errors"
	"math"
	"os"
	"testing"
)

// FuzzParse feeds Parse arbitrary bytes. Whatever the file holds, Parse
// must not panic, and its answer must be one the gateway can act on:
//   - accepted: every route names a pool that exists, and every pool has at
//     least one backend with a usable weight or a spawn port range to take
//     addresses from, so routing never divides by a zero total or looks up
//     a missing pool;
//   - rejected: the error is Problems, and each problem points at a real
//     line, so `gateway check` can print FILE:LINE for all of them.
func FuzzParse(f *testing.F) {
	shipped, err := os.ReadFile(shippedConfig)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(shipped),
		minimalConfig,
		"",
		"\n",
		"[]",
		"~",
		"pools:\n",
		"pools: {p1: {backends: [127.0.0.1:9101]}}\nroutes: [{name: r1, pool: p2}]\n",
		"pools: {p1: {backends: [{addr: 127.0.0.1:9101, weight: 0}]}}\nroutes: [{name: r1, pool: p1}]\n",
		"pools: {p1: {backends: []}}\nroutes: [{name: r1, pool: p1}]\n",
		"pools: {p1: {backends: [~]}}\nroutes: [~]\n",
		"server:\n  read_timout: 10s\n  write_timeout: 30 seconds\n" + minimalConfig,
		"server: {listen: \":8080\"}\nadmin: {listen: \":8080\"}\n" + minimalConfig,
		"pools:\n\tp1: {}\n",
		"pools: &a {p1: *a}\n",
		"a: &a [*a, *a]\n",
		"pools: {p1: {backends: [\"${NOPE:-127.0.0.1:1}\"], max_conns: ${NOPE}}}\nroutes: [{name: r1, pool: p1}]\n",
		"routes:\n  - name: r1\n    pool: p1\n    match: {methods: POST, headers: [a]}\n",
		"--- \n...\n--- {}\n",
		"\xef\xbb\xbf" + minimalConfig,
		"pools: {p1: {backends: [127.0.0.1:9101]}}\nroutes: [{name: r1, pool: p1, max_in_flight: 3, rate_limit: {rate: 1.5/m}}]\n",
		"redis: {addr: 127.0.0.1:6379}\npools: {p1: {backends: [127.0.0.1:9101]}}\nroutes: [{name: r1, pool: p1, rate_limit: [{key: header:K, rate: 9/h, scope: global, on_redis_error: deny, replicas: 3}, ~]}]\n",
	} {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			if cfg != nil {
				t.Errorf("Parse returned a config together with an error")
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error is %T, not Problems: %v", err, err)
			}
			if len(ps) == 0 {
				t.Fatalf("empty Problems")
			}
			for i, p := range ps {
				if p.Line < 1 {
					t.Errorf("problem %q has line %d", p.Error(), p.Line)
				}
				if p.Msg == "" {
					t.Errorf("problem at line %d has no message", p.Line)
				}
				if i > 0 && ps[i-1].Line > p.Line {
					t.Errorf("problems not sorted by line: %d before %d", ps[i-1].Line, p.Line)
				}
			}
			return
		}
		if len(cfg.Routes) == 0 || len(cfg.Pools) == 0 {
			t.Fatalf("accepted a file with %d routes and %d pools", len(cfg.Routes), len(cfg.Pools))
		}
		for i, r := range cfg.Routes {
			if r == nil {
				t.Fatalf("route %d is nil", i)
			}
			for _, pool := range r.PoolNames() {
				if cfg.Pools[pool] == nil {
					t.Errorf("route %q names pool %q, which is not defined", r.Name, pool)
				}
			}
		}
		for name, p := range cfg.Pools {
			// A pool needs addresses: its backends, or a port range its
			// spawned replicas take them from.
			if p == nil || (len(p.Backends) == 0 && (p.Spawn == nil || p.Spawn.Ports == "")) {
				t.Fatalf("pool %q has no backends and no spawn port range", name)
			}
			if sp := p.Spawn; sp != nil && sp.Ports == "" && sp.Replicas > len(p.Backends) {
				t.Errorf("pool %q spawns %d replicas on %d addresses", name, sp.Replicas, len(p.Backends))
			}
			for _, b := range p.Backends {
				if b.Weight < 1 {
					t.Errorf("pool %q backend %q has weight %d", name, b.Addr, b.Weight)
				}
			}
		}
	})
}

// FuzzParseRate: a rate that parses is positive and finite, and writes
// back as text that parses to the same rate.
func FuzzParseRate(f *testing.F) {
	for _, seed := range []string{"100/s", "600/m", "0.5/h", " 7 / s ", "1e3/s", "0/s", "-1/s", "NaN/s", "Inf/s", "5", "/s", "1/d"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		if ps := r.PerSecond(); !(ps > 0) || math.IsInf(ps, 0) {
			t.Fatalf("%q parsed to %v per second", s, ps)
		}
		again, err := ParseRate(r.String())
		if err != nil || again != r {
			t.Fatalf("%q wrote back as %q, which parses to %+v (%v)", s, r.String(), again, err)
		}
	})
}
