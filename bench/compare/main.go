// Command compare is the reference comparison behind `make bench`
// (bench/run.sh installs the proxies, builds the binaries and runs it;
// BENCHMARKS.md describes the method).
//
// The same backend (the trivial bench/backend, or a model worker serving
// iris) is loaded with one wrk script directly and through nginx, HAProxy,
// Caddy and the Sluice gateway in four modes, at several connection counts,
// in interleaved rounds whose target order rotates. A cell is one round,
// backend, connection count and target; each cell starts its proxy afresh,
// so the peak RSS it reports is that cell's. Per cell it records
// throughput, p50 and p99, the proxy's CPU per request and peak RSS, errors,
// and how much of the machine went to other processes and to the
// hypervisor. Every target is then compared with nginx of the same backend,
// connections and round, and the Sluice modes with plain Sluice; the medians
// over rounds go to stdout as tables and, with every raw cell, to JSON.
//
// It is a benchmark, not a test: it never fails on numbers. It exits 2 on
// bad settings, 1 when something cannot be started, 130 when interrupted;
// every process it started is stopped in all cases.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	s, err := loadSettings(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	r, err := newRunner(s)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}

	// The processes run in their own process groups, so a Ctrl-C in the
	// terminal reaches this program alone, which stops them all.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan error, 1)
	go func() { done <- r.run() }()

	select {
	case err := <-done:
		r.shutdown()
		r.removeDir()
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: error: %v\n", err)
			os.Exit(1)
		}
	case sig := <-sigs:
		logf("%v: stopping everything", sig)
		r.shutdown()
		// With its processes gone and none allowed to start, the run
		// returns at once; only then is its directory safe to remove.
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		r.removeDir()
		os.Exit(130)
	}
}

// logf reports progress on stderr; stdout carries the results only.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...)
}

// allTargets is every target in the order of the table.
var allTargets = []string{
	"direct", "nginx", "haproxy", "caddy",
	"sluice", "sluice-full", "sluice-cached", "sluice-shadow-fast", "sluice-shadow-slow",
}

var allBackends = []string{"trivial", "model"}

// settings are the knobs, read from the environment (see BENCHMARKS.md);
// the paths of the binaries come as flags from bench/run.sh.
type settings struct {
	Backends   []string
	Targets    []string
	Conns      []int
	Duration   time.Duration
	Warmup     time.Duration
	Rounds     int
	Out        string
	SlowDelay  time.Duration
	PortBase   int
	Users      int
	RawDir     string
	BackendBin string
	GatewayBin string
	WorkerBin  string
	Model      string
}

func loadSettings(args []string) (settings, error) {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	s := settings{}
	fs.StringVar(&s.BackendBin, "backend-bin", "bench/out/bin/backend", "the trivial backend (go build ./bench/backend)")
	fs.StringVar(&s.GatewayBin, "gateway-bin", env("BENCH_GATEWAY_BIN", "bin/gateway"), "the Sluice gateway")
	fs.StringVar(&s.WorkerBin, "modelworker-bin", env("BENCH_MODELWORKER_BIN", "bin/modelworker"), "the model worker")
	fs.StringVar(&s.Model, "model", env("BENCH_MODEL", "models/iris-v1.json"), "the model the model worker serves")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	var problems []error
	var err error
	if s.Backends, err = pickNames("BENCH_BACKENDS", env("BENCH_BACKENDS", "trivial model"), allBackends); err != nil {
		problems = append(problems, err)
	}
	if s.Targets, err = pickNames("BENCH_TARGETS", env("BENCH_TARGETS", ""), allTargets); err != nil {
		problems = append(problems, err)
	}
	if s.Conns, err = positiveInts("BENCH_CONNS", env("BENCH_CONNS", "1 64 256")); err != nil {
		problems = append(problems, err)
	}
	if s.Duration, err = wholeSeconds("BENCH_DURATION", env("BENCH_DURATION", "10s"), 1); err != nil {
		problems = append(problems, err)
	}
	if s.Warmup, err = wholeSeconds("BENCH_WARMUP", env("BENCH_WARMUP", "2s"), 0); err != nil {
		problems = append(problems, err)
	}
	if s.Rounds, err = positiveInt("BENCH_ROUNDS", env("BENCH_ROUNDS", "3")); err != nil {
		problems = append(problems, err)
	}
	if s.PortBase, err = positiveInt("BENCH_PORT_BASE", env("BENCH_PORT_BASE", "18080")); err == nil && s.PortBase+portSpan > 65535 {
		err = fmt.Errorf("BENCH_PORT_BASE: %d leaves no room for %d ports", s.PortBase, portSpan)
	}
	if err != nil {
		problems = append(problems, err)
	}
	if s.Users, err = positiveInt("BENCH_USERS", env("BENCH_USERS", "1000")); err != nil {
		problems = append(problems, err)
	}
	if s.SlowDelay, err = time.ParseDuration(env("BENCH_SLOW_DELAY", "8ms")); err != nil || s.SlowDelay <= 0 {
		problems = append(problems, fmt.Errorf("BENCH_SLOW_DELAY: want a positive duration such as 8ms, got %q", os.Getenv("BENCH_SLOW_DELAY")))
	}
	s.Out = env("BENCH_OUT", "bench/out/latest.json")
	s.RawDir = os.Getenv("BENCH_RAW_DIR")
	return s, errors.Join(problems...)
}

// env is the variable's value, or def when it is unset or empty.
func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// pickNames splits a space-separated list and checks every name against
// known; the result keeps known's order (the table's), each name once. An
// empty list picks all.
func pickNames(what, list string, known []string) ([]string, error) {
	want := map[string]bool{}
	for _, name := range strings.Fields(list) {
		if !slices.Contains(known, name) {
			return nil, fmt.Errorf("%s: unknown name %q (known: %s)", what, name, strings.Join(known, " "))
		}
		want[name] = true
	}
	var picked []string
	for _, name := range known {
		if len(want) == 0 || want[name] {
			picked = append(picked, name)
		}
	}
	return picked, nil
}

func positiveInt(what, v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s: want a positive integer, got %q", what, v)
	}
	return n, nil
}

// positiveInts reads a space-separated list such as "1 64 256", in the
// order given, each number once.
func positiveInts(what, list string) ([]int, error) {
	var out []int
	for _, f := range strings.Fields(list) {
		n, err := positiveInt(what, f)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: empty", what)
	}
	return out, nil
}

// wholeSeconds reads a duration that wrk can take: whole seconds, at least
// minSeconds ("0" is allowed when minSeconds is 0).
func wholeSeconds(what, v string, minSeconds int) (time.Duration, error) {
	if v == "0" && minSeconds == 0 {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d%time.Second != 0 || d < time.Duration(minSeconds)*time.Second {
		return 0, fmt.Errorf("%s: want whole seconds, at least %ds, such as 10s, got %q", what, minSeconds, v)
	}
	return d, nil
}
