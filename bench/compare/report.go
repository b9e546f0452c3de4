package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// report is everything the JSON output holds: the machine, the settings,
// every raw cell of every round, and per backend and connection count the
// medians over rounds and the ratios (per round and their medians).
type report struct {
	Machine  machine      `json:"machine"`
	Settings settingsJSON `json:"settings"`
	Cells    []cell       `json:"cells"`
	Summary  []group      `json:"summary"`
}

type settingsJSON struct {
	Backends  []string `json:"backends"`
	Targets   []string `json:"targets"`
	Conns     []int    `json:"conns"`
	Duration  string   `json:"duration"`
	Warmup    string   `json:"warmup"`
	Rounds    int      `json:"rounds"`
	SlowDelay string   `json:"slow_delay"`
	Users     int      `json:"users"`
	Threads   string   `json:"wrk_threads"`
	Request   string   `json:"request"`
}

// group is one backend at one connection count.
type group struct {
	Backend string          `json:"backend"`
	Conns   int             `json:"conns"`
	Targets []targetSummary `json:"targets"`
	Modes   *modeSummary    `json:"sluice_modes,omitempty"`
}

type targetSummary struct {
	Target         string        `json:"target"`
	Rounds         int           `json:"rounds"`
	Median         figures       `json:"median"`
	VsNginx        ratios        `json:"vs_nginx"` // medians of the per-round ratios
	VsNginxByRound []roundRatios `json:"vs_nginx_by_round"`
	Warnings       []string      `json:"warnings,omitempty"` // of any round
	Features       string        `json:"features,omitempty"` // of the last round
}

// figures are medians over rounds, each column on its own.
type figures struct {
	RPS        *float64 `json:"rps"`
	P50ms      *float64 `json:"p50_ms"`
	P99ms      *float64 `json:"p99_ms"`
	CPUPer10k  *float64 `json:"cpu_s_per_10k"`
	PeakRSSKiB *float64 `json:"peak_rss_kib"`
	Non2xx     *float64 `json:"non_2xx"`
	SockErrs   *float64 `json:"socket_errors"`
	OtherPct   *float64 `json:"other_pct"`
	StealPct   *float64 `json:"steal_pct"`
}

// ratios compare a target with nginx of the same backend, connections and
// round. Throughput above 1 is better; CPU per request, p99 and the
// latency added per hop below 1 are.
type ratios struct {
	Throughput *float64 `json:"throughput"`
	CPU        *float64 `json:"cpu_per_request"`
	P99        *float64 `json:"p99"`
	// Hop, at one connection only: (target p50 - direct p50) /
	// (nginx p50 - direct p50), the latency the target adds to a request
	// against what nginx adds.
	Hop *float64 `json:"latency_added_per_hop,omitempty"`
}

type roundRatios struct {
	Round int `json:"round"`
	ratios
}

// modeRatios are the figures SPEC section 8 budgets for the Sluice modes,
// against plain sluice of the same backend, connections and round (and
// plain sluice against HAProxy).
type modeRatios struct {
	FullThroughput   *float64 `json:"full_throughput"`   // sluice-full / sluice req/s
	CachedThroughput *float64 `json:"cached_throughput"` // sluice-cached / sluice req/s
	ShadowSlowP99    *float64 `json:"shadow_slow_p99"`   // sluice-shadow-slow / sluice p99
	// sluice-shadow-slow / sluice-shadow-fast p99: the same mirroring work,
	// only the shadow's speed differs, so this is what its slowness costs
	// the client.
	ShadowSlowVsFastP99 *float64 `json:"shadow_slow_vs_fast_p99"`
	VsHAProxy           *float64 `json:"sluice_vs_haproxy_throughput"`
}

type roundModeRatios struct {
	Round int `json:"round"`
	modeRatios
}

type modeSummary struct {
	Median  modeRatios        `json:"median"`
	ByRound []roundModeRatios `json:"by_round"`
}

func buildReport(m machine, s settings, cells []cell) report {
	rep := report{
		Machine: m,
		Settings: settingsJSON{
			Backends: s.Backends, Targets: s.Targets, Conns: s.Conns,
			Duration: s.Duration.String(), Warmup: s.Warmup.String(), Rounds: s.Rounds,
			SlowDelay: s.SlowDelay.String(), Users: s.Users, Threads: "min(2, conns)",
			Request: "POST /predict " + predictBody,
		},
		Cells: cells,
	}
	for _, b := range s.Backends {
		for _, conns := range s.Conns {
			rep.Summary = append(rep.Summary, summarize(b, conns, s.Targets, s.Rounds, cells))
		}
	}
	return rep
}

// summarize computes one group's per-round ratios and the medians.
func summarize(backendKind string, conns int, targets []string, rounds int, cells []cell) group {
	g := group{Backend: backendKind, Conns: conns}
	byRound := make([]map[string]*cell, rounds+1) // [round][target]
	for i := range byRound {
		byRound[i] = map[string]*cell{}
	}
	for i := range cells {
		c := &cells[i]
		if c.Backend == backendKind && c.Conns == conns && c.Round >= 1 && c.Round <= rounds {
			byRound[c.Round][c.Target] = c
		}
	}
	for _, t := range targets {
		ts := targetSummary{Target: t}
		var col [9][]*float64
		var rs []ratios
		for round := 1; round <= rounds; round++ {
			c := byRound[round][t]
			if c == nil {
				continue
			}
			ts.Rounds++
			var rss *float64
			if c.PeakRSSKiB != nil {
				rss = ptr(float64(*c.PeakRSSKiB))
			}
			for i, v := range []*float64{ptr(c.RPS), ptr(c.P50ms), ptr(c.P99ms), c.CPUPer10k, rss,
				ptr(float64(c.Non2xx)), ptr(float64(c.SockErrs)), ptr(c.OtherPct), ptr(c.StealPct)} {
				col[i] = append(col[i], v)
			}
			r := vsNginx(c, byRound[round]["nginx"], byRound[round]["direct"])
			rs = append(rs, r)
			ts.VsNginxByRound = append(ts.VsNginxByRound, roundRatios{Round: round, ratios: r})
			if c.Features != "" {
				ts.Features = fmt.Sprintf("%s (round %d)", c.Features, round)
			}
			for _, w := range c.Warnings {
				ts.Warnings = append(ts.Warnings, fmt.Sprintf("round %d: %s", round, w))
			}
			if c.Non2xx+c.SockErrs > 0 {
				ts.Warnings = append(ts.Warnings, fmt.Sprintf("round %d: %d non-2xx, %d socket errors: its req/s counts errors", round, c.Non2xx, c.SockErrs))
			}
		}
		ts.Median = figures{
			RPS: median(col[0]), P50ms: median(col[1]), P99ms: median(col[2]), CPUPer10k: median(col[3]),
			PeakRSSKiB: median(col[4]), Non2xx: median(col[5]), SockErrs: median(col[6]),
			OtherPct: median(col[7]), StealPct: median(col[8]),
		}
		ts.VsNginx = medianRatios(rs)
		g.Targets = append(g.Targets, ts)
	}

	if slices.Contains(targets, "sluice") {
		ms := &modeSummary{}
		var all []modeRatios
		for round := 1; round <= rounds; round++ {
			if byRound[round]["sluice"] == nil {
				continue
			}
			mr := sluiceModes(byRound[round])
			all = append(all, mr)
			ms.ByRound = append(ms.ByRound, roundModeRatios{Round: round, modeRatios: mr})
		}
		ms.Median = modeRatios{
			FullThroughput:      median(pick(all, func(m modeRatios) *float64 { return m.FullThroughput })),
			CachedThroughput:    median(pick(all, func(m modeRatios) *float64 { return m.CachedThroughput })),
			ShadowSlowP99:       median(pick(all, func(m modeRatios) *float64 { return m.ShadowSlowP99 })),
			ShadowSlowVsFastP99: median(pick(all, func(m modeRatios) *float64 { return m.ShadowSlowVsFastP99 })),
			VsHAProxy:           median(pick(all, func(m modeRatios) *float64 { return m.VsHAProxy })),
		}
		g.Modes = ms
	}
	return g
}

// vsNginx compares cell t with nginx's and direct's cells of the same
// backend, connections and round (either may be nil: not run).
func vsNginx(t, nginx, direct *cell) ratios {
	var r ratios
	if nginx == nil {
		return r
	}
	r.Throughput = ratio(t.RPS, nginx.RPS)
	if t.CPUPer10k != nil && nginx.CPUPer10k != nil {
		r.CPU = ratio(*t.CPUPer10k, *nginx.CPUPer10k)
	}
	r.P99 = ratio(t.P99ms, nginx.P99ms)
	if t.Conns == 1 && direct != nil && t.Target != "direct" {
		r.Hop = ratio(t.P50ms-direct.P50ms, nginx.P50ms-direct.P50ms)
	}
	return r
}

// sluiceModes is one round's Sluice mode ratios; cells maps target to cell.
func sluiceModes(cells map[string]*cell) modeRatios {
	var m modeRatios
	plain := cells["sluice"]
	if plain == nil {
		return m
	}
	if c := cells["sluice-full"]; c != nil {
		m.FullThroughput = ratio(c.RPS, plain.RPS)
	}
	if c := cells["sluice-cached"]; c != nil {
		m.CachedThroughput = ratio(c.RPS, plain.RPS)
	}
	if c := cells["sluice-shadow-slow"]; c != nil {
		m.ShadowSlowP99 = ratio(c.P99ms, plain.P99ms)
		if f := cells["sluice-shadow-fast"]; f != nil {
			m.ShadowSlowVsFastP99 = ratio(c.P99ms, f.P99ms)
		}
	}
	if c := cells["haproxy"]; c != nil {
		m.VsHAProxy = ratio(plain.RPS, c.RPS)
	}
	return m
}

func medianRatios(rs []ratios) ratios {
	return ratios{
		Throughput: median(pick(rs, func(r ratios) *float64 { return r.Throughput })),
		CPU:        median(pick(rs, func(r ratios) *float64 { return r.CPU })),
		P99:        median(pick(rs, func(r ratios) *float64 { return r.P99 })),
		Hop:        median(pick(rs, func(r ratios) *float64 { return r.Hop })),
	}
}

func pick[T any](xs []T, f func(T) *float64) []*float64 {
	out := make([]*float64, 0, len(xs))
	for _, x := range xs {
		out = append(out, f(x))
	}
	return out
}

// ratio is a/b, or nil when b is not positive or either is not finite.
func ratio(a, b float64) *float64 {
	if b <= 0 || math.IsNaN(a) || math.IsInf(a, 0) || math.IsNaN(b) || math.IsInf(b, 0) {
		return nil
	}
	return ptr(a / b)
}

// median of the values that are present (nil and NaN left out): the
// middle one, or the mean of the two middle ones; nil when none is.
func median(vs []*float64) *float64 {
	var xs []float64
	for _, v := range vs {
		if v != nil && !math.IsNaN(*v) {
			xs = append(xs, *v)
		}
	}
	if len(xs) == 0 {
		return nil
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return ptr(xs[n/2])
	}
	return ptr((xs[n/2-1] + xs[n/2]) / 2)
}

func ptr[T any](v T) *T { return &v }

func printMachine(w io.Writer, m machine, s settings) {
	fmt.Fprintf(w, "machine: %d CPUs, %s, kernel %s, %s\n", m.CPUs, m.CPUModel, m.Kernel, m.OS)
	for _, name := range []string{"nginx", "haproxy", "caddy", "wrk", "go", "gateway"} {
		if v, ok := m.Versions[name]; ok {
			fmt.Fprintf(w, "%-8s %s\n", name+":", v)
		}
	}
	fmt.Fprintf(w, "load:    %s (1/5/15-min load average, runnable/total, last pid) at the start\n", m.LoadBefore)
	fmt.Fprintf(w, "runs:    %d round%s x backends [%s] x connections %v x targets [%s]; each: fresh proxy, %v warm-up, %v wrk --latency, threads min(2, conns)\n",
		s.Rounds, plural(s.Rounds), strings.Join(s.Backends, " "), s.Conns, strings.Join(s.Targets, " "), s.Warmup, s.Duration)
	fmt.Fprintf(w, "request: POST /predict %s, X-User-Id cycling over %d users\n", predictBody, s.Users)
	if slices.Contains(s.Targets, "sluice-shadow-slow") {
		fmt.Fprintf(w, "slow:    sluice-shadow-slow's shadow backend answers %v later than the primary\n", s.SlowDelay)
	}
	fmt.Fprintln(w, "note:    wrk, backend and proxy share these CPUs: compare ratios, not absolute numbers")
}

func printReport(w io.Writer, rep report) {
	for _, g := range rep.Summary {
		fmt.Fprintf(w, "\n%s backend, %d connection%s: medians of %d round%s (after |: ratios to nginx)\n", g.Backend, g.Conns,
			plural(g.Conns), rep.Settings.Rounds, plural(rep.Settings.Rounds))
		head := "%-18s %9s %8s %8s %10s %7s %8s %9s %8s %8s |%8s %7s %7s %7s\n"
		fmt.Fprintf(w, head, "target", "req/s", "p50 ms", "p99 ms", "CPU s/10k", "RSS MB", "non-2xx", "sock err", "other %", "steal %",
			"req/s", "CPU", "p99", "hop")
		var warnings []string
		for _, t := range g.Targets {
			if t.Rounds == 0 {
				continue
			}
			m, r := t.Median, t.VsNginx
			fmt.Fprintf(w, head, t.Target,
				num(m.RPS, "%.0f"), num(m.P50ms, "%.3f"), num(m.P99ms, "%.3f"), num(m.CPUPer10k, "%.4f"),
				num(scale(m.PeakRSSKiB, 1.0/1024), "%.1f"), num(m.Non2xx, "%.0f"), num(m.SockErrs, "%.0f"),
				num(m.OtherPct, "%.1f"), num(m.StealPct, "%.1f"),
				num(r.Throughput, "%.2fx"), num(r.CPU, "%.2fx"), num(r.P99, "%.2fx"), num(r.Hop, "%.2fx"))
			for _, warn := range t.Warnings {
				warnings = append(warnings, t.Target+": "+warn)
			}
			if m.OtherPct != nil && *m.OtherPct > 5 {
				warnings = append(warnings, fmt.Sprintf("%s: other processes used %.0f%% of the CPUs: its figures are skewed", t.Target, *m.OtherPct))
			}
			if m.StealPct != nil && *m.StealPct > 5 {
				warnings = append(warnings, fmt.Sprintf("%s: the hypervisor took %.0f%% of the CPUs (steal): its figures are skewed", t.Target, *m.StealPct))
			}
		}
		for _, t := range g.Targets {
			if t.Features != "" {
				fmt.Fprintf(w, "%s: %s\n", t.Target, t.Features)
			}
		}
		if g.Modes != nil {
			md := g.Modes.Median
			var parts []string
			for _, m := range []struct {
				what string
				v    *float64
			}{
				{"sluice-full req/s", md.FullThroughput},
				{"sluice-cached req/s", md.CachedThroughput},
				{"sluice-shadow-slow p99", md.ShadowSlowP99},
				{"sluice-shadow-slow p99 vs sluice-shadow-fast", md.ShadowSlowVsFastP99},
				{"sluice vs haproxy req/s", md.VsHAProxy},
			} {
				if m.v != nil {
					parts = append(parts, m.what+" "+num(m.v, "%.2fx"))
				}
			}
			if len(parts) > 0 {
				fmt.Fprintf(w, "sluice modes (vs sluice): %s\n", strings.Join(parts, ", "))
			}
		}
		for _, warn := range warnings {
			fmt.Fprintln(w, "WARNING: "+warn)
		}
	}
	fmt.Fprintf(w, "\nload:    %s at the end\n", rep.Machine.LoadAfter)
	fmt.Fprint(w, `vs nginx: each round's ratio to nginx of the same backend, connections and round, then the median over rounds.
  req/s above 1x is better; CPU per request, p99 and hop below 1x are. hop (1 connection only) is
  (p50 - direct p50) / (nginx p50 - direct p50): the latency the target adds against what nginx adds.
SPEC section 8 budgets for sluice: req/s >= 1.15x nginx and >= 1.0x haproxy, CPU <= 0.85x, hop <= 1.0x,
  p99 at 64 connections <= 1.0x; sluice-full >= 0.8x and sluice-cached >= 1.5x sluice's req/s,
  sluice-shadow-slow p99 <= 1.05x sluice's (sluice-shadow-fast mirrors the same share to a fast
  copy: slow against fast is what the shadow's slowness alone costs the client).
`)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func scale(v *float64, f float64) *float64 {
	if v == nil {
		return nil
	}
	return ptr(*v * f)
}

// num formats a figure, "-" when there is none.
func num(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}

// writeJSON writes the report to path (its directory made if missing),
// through a temporary file so a reader never sees half of it.
func writeJSON(path string, rep report) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, time.Now().UnixNano())
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
