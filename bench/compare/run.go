package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// run is the whole benchmark: find the programs, start the backends, run
// every cell of every round, report.
func (r *runner) run() error {
	if err := r.findPrograms(); err != nil {
		return err
	}
	script, err := writeWrkScript(r.dir, r.s.Users)
	if err != nil {
		return err
	}
	m := r.machineFacts()
	printMachine(os.Stdout, m, r.s)

	needShadows := slices.Contains(r.s.Targets, "sluice-shadow-slow") || slices.Contains(r.s.Targets, "sluice-shadow-fast")
	backends := map[string]*backend{}
	for _, kind := range r.s.Backends {
		b, err := r.startBackends(kind, needShadows)
		if err != nil {
			return err
		}
		backends[kind] = b
		if b.slow != "" {
			logf("%s backend on %s; shadow instances: slow (%v per answer) on %s, fast on %s", kind, b.addr, r.s.SlowDelay, b.slow, b.mirror)
		} else {
			logf("%s backend on %s", kind, b.addr)
		}
	}

	var cells []cell
	total := r.s.Rounds * len(r.s.Backends) * len(r.s.Conns) * len(r.s.Targets)
	for round := 1; round <= r.s.Rounds; round++ {
		order := rotate(r.s.Targets, round-1)
		logf("round %d/%d, target order: %s", round, r.s.Rounds, strings.Join(order, " "))
		for _, kind := range r.s.Backends {
			for _, conns := range r.s.Conns {
				for pos, target := range order {
					c, err := r.measure(script, backends[kind], conns, target, round, pos+1)
					if err != nil {
						return fmt.Errorf("round %d, %s backend, %d connection%s, %s: %w", round, kind, conns, plural(conns), target, err)
					}
					cells = append(cells, c)
					logf("[%d/%d] round %d %s c=%d %-18s %9.0f req/s  p50 %.3f ms  p99 %.3f ms%s",
						len(cells), total, round, kind, conns, target, c.RPS, c.P50ms, c.P99ms, warnSuffix(c))
				}
			}
		}
	}

	m.LoadAfter = firstLine("/proc/loadavg")
	rep := buildReport(m, r.s, cells)
	printReport(os.Stdout, rep)
	if err := writeJSON(r.s.Out, rep); err != nil {
		return fmt.Errorf("write %s: %w", r.s.Out, err)
	}
	logf("raw cells, medians and ratios written to %s", r.s.Out)
	return nil
}

func warnSuffix(c cell) string {
	if len(c.Warnings) == 0 {
		return ""
	}
	return "  WARNING: " + strings.Join(c.Warnings, "; ")
}

// rotate is targets shifted left by n: round 1 runs them in table order,
// round 2 starts with the second, and so on.
func rotate(targets []string, n int) []string {
	if len(targets) == 0 {
		return nil
	}
	n %= len(targets)
	return append(slices.Clone(targets[n:]), targets[:n]...)
}

// findPrograms resolves the external programs the chosen targets need.
// nginx and haproxy live in /usr/sbin, which is not on every PATH.
func (r *runner) findPrograms() error {
	need := []string{"wrk"}
	for _, t := range r.s.Targets {
		if t == "nginx" || t == "haproxy" || t == "caddy" {
			need = append(need, t)
		}
	}
	for _, name := range need {
		path, err := exec.LookPath(name)
		if err != nil {
			for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
				if st, err2 := os.Stat(filepath.Join(dir, name)); err2 == nil && st.Mode()&0o111 != 0 {
					path, err = filepath.Join(dir, name), nil
					break
				}
			}
		}
		if err != nil {
			return fmt.Errorf("%s not found (bench/run.sh installs it)", name)
		}
		r.bins[name] = path
	}
	mustExist := []string{r.s.BackendBin}
	if slices.Contains(r.s.Backends, "model") {
		mustExist = append(mustExist, r.s.WorkerBin, r.s.Model)
	}
	for _, t := range r.s.Targets {
		if strings.HasPrefix(t, "sluice") {
			mustExist = append(mustExist, r.s.GatewayBin)
			break
		}
	}
	for _, path := range mustExist {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("%s: %w (bench/run.sh builds it)", path, err)
		}
	}
	return nil
}

// cell is one measurement: one round, backend, connection count and
// target. Pointers are null in JSON where a figure does not apply (no
// proxy for direct) or could not be had.
type cell struct {
	Round      int      `json:"round"`
	Backend    string   `json:"backend"`
	Conns      int      `json:"conns"`
	Target     string   `json:"target"`
	Position   int      `json:"position"` // 1 = ran first in its round, backend and conns
	RPS        float64  `json:"rps"`
	Requests   int64    `json:"requests"`
	P50ms      float64  `json:"p50_ms"`
	P99ms      float64  `json:"p99_ms"`
	CPUPer10k  *float64 `json:"cpu_s_per_10k"` // proxy CPU seconds per 10,000 requests
	ProxyCPUs  *float64 `json:"proxy_cpu_s"`
	PeakRSSKiB *int64   `json:"peak_rss_kib"` // VmHWM summed over the proxy's processes
	ProxyProcs int      `json:"proxy_processes"`
	Non2xx     int64    `json:"non_2xx"`
	SockErrs   int64    `json:"socket_errors"`
	OtherPct   float64  `json:"other_pct"` // machine CPU not used by proxy, backend or wrk
	StealPct   float64  `json:"steal_pct"`
	WrkCPUs    float64  `json:"wrk_cpu_s"`
	BackendCPU float64  `json:"backend_cpu_s"`
	WallS      float64  `json:"wall_s"`
	Warnings   []string `json:"warnings,omitempty"`
	// The gateway's feature counters over the cell (warm-up and checks
	// included), and what they say in a line.
	Counters map[string]float64 `json:"sluice_counters,omitempty"`
	Features string             `json:"features,omitempty"`
}

// snapshot is the CPU counters read just before and just after the main run.
type snapshot struct {
	at      time.Time
	machine machineTicks
	proxy   uint64
	backend uint64
	nproxy  int
}

func (r *runner) snapshot(proxyRoot *proc, backendPIDs []int) (snapshot, error) {
	var s snapshot
	if proxyRoot != nil {
		pids := processTree(proxyRoot.pid())
		s.proxy, s.nproxy = cpuTicks(pids), len(pids)
	}
	var bpids []int
	for _, pid := range backendPIDs {
		bpids = append(bpids, processTree(pid)...)
	}
	s.backend = cpuTicks(bpids)
	var err error
	s.machine, err = readMachineTicks()
	s.at = time.Now()
	return s, err
}

// measure runs one cell: a fresh proxy, its checks, a warm-up, the main
// run between two CPU snapshots, the peak RSS, and the proxy stopped.
func (r *runner) measure(script string, b *backend, conns int, target string, round, pos int) (cell, error) {
	c := cell{Round: round, Backend: b.kind, Conns: conns, Target: target, Position: pos}
	tag := fmt.Sprintf("r%d-%s-c%d", round, b.kind, conns)
	inst, warnings, err := r.startTarget(target, b, tag)
	if err != nil {
		return c, err
	}
	defer r.stop(inst.proc)
	c.Warnings = warnings

	base := filepath.Join(r.dir, tag, "wrk-"+target)
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		return c, err
	}
	if r.s.Warmup > 0 {
		if _, err := r.runWrk("wrk warm-up", script, inst.url, conns, r.s.Warmup, false, base+"-warmup.txt"); err != nil {
			if err == errStopping {
				return c, err
			}
			c.Warnings = append(c.Warnings, "warm-up: "+err.Error())
		}
	}

	before, err := r.snapshot(inst.proc, b.pids)
	if err != nil {
		return c, err
	}
	res, wrkErr := r.runWrk("wrk", script, inst.url, conns, r.s.Duration, true, base+".txt")
	after, err := r.snapshot(inst.proc, b.pids)
	if err != nil {
		return c, err
	}
	if wrkErr == errStopping {
		return c, wrkErr
	}
	if wrkErr != nil {
		c.Warnings = append(c.Warnings, wrkErr.Error())
	}
	if !res.HasLat {
		c.Warnings = append(c.Warnings, "wrk printed no latency distribution")
	}
	if inst.proc != nil && inst.proc.exited() {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s exited during the run: %v", target, inst.proc.waitErr))
	}

	c.RPS, c.Requests, c.P50ms, c.P99ms = res.RPS, res.Requests, res.P50ms, res.P99ms
	c.Non2xx, c.SockErrs, c.WrkCPUs = res.Non2xx, res.SockErrs, res.CPUSecond
	fillCPU(&c, before, after, r.hz, r.ncpu, inst.proc != nil)
	if inst.proc != nil {
		rss := peakRSSKiB(processTree(inst.proc.pid()))
		c.PeakRSSKiB = &rss
	}
	if inst.admin != "" {
		a, err := r.get("http://" + inst.admin + "/metrics")
		if err := ok2xx(a, err); err != nil {
			c.Warnings = append(c.Warnings, "metrics: "+err.Error())
		} else {
			c.Counters = parseCounters(string(a.body))
			var warnings []string
			c.Features, warnings = featureChecks(target, c.Counters)
			c.Warnings = append(c.Warnings, warnings...)
		}
	}
	return c, nil
}

// fillCPU turns the two snapshots into the cell's CPU figures.
func fillCPU(c *cell, before, after snapshot, hz float64, ncpu int, hasProxy bool) {
	wall := after.at.Sub(before.at).Seconds()
	c.WallS = wall
	proxy := ticksBetween(before.proxy, after.proxy) / hz
	c.BackendCPU = ticksBetween(before.backend, after.backend) / hz
	if hasProxy {
		c.ProxyCPUs = &proxy
		c.ProxyProcs = after.nproxy
		if c.Requests > 0 {
			per10k := proxy / float64(c.Requests) * 10000
			c.CPUPer10k = &per10k
		}
	}
	if wall <= 0 || ncpu <= 0 {
		return
	}
	capacity := wall * float64(ncpu) // CPU seconds the machine had
	busy := ticksBetween(before.machine.busy, after.machine.busy) / hz
	other := busy - proxy - c.BackendCPU - c.WrkCPUs
	c.OtherPct = max(0, 100*other/capacity)
	c.StealPct = 100 * ticksBetween(before.machine.steal, after.machine.steal) / hz / capacity
}

// ticksBetween is after - before, or 0 when a process that was counted
// before had gone by after.
func ticksBetween(before, after uint64) float64 {
	if after < before {
		return 0
	}
	return float64(after - before)
}

// machine is what the results depend on besides the code.
type machine struct {
	Date       string            `json:"date"`
	CPUs       int               `json:"nproc"`
	CPUModel   string            `json:"cpu_model"`
	Kernel     string            `json:"kernel"`
	OS         string            `json:"os"`
	Versions   map[string]string `json:"versions"`
	LoadBefore string            `json:"loadavg_before"`
	LoadAfter  string            `json:"loadavg_after"`
	ClockTicks float64           `json:"clk_tck"`
}

func (r *runner) machineFacts() machine {
	m := machine{
		Date:       time.Now().UTC().Format(time.RFC3339),
		CPUs:       r.ncpu,
		CPUModel:   cpuModel(),
		Kernel:     firstLine("/proc/sys/kernel/osrelease"),
		OS:         osName(),
		Versions:   map[string]string{},
		LoadBefore: firstLine("/proc/loadavg"),
		ClockTicks: r.hz,
	}
	version := func(argv ...string) string {
		out, _ := runCheck(argv...) // wrk -v exits 1 after printing
		line, _, _ := strings.Cut(out, "\n")
		return strings.TrimSpace(line)
	}
	if p := r.bins["nginx"]; p != "" {
		m.Versions["nginx"] = strings.TrimPrefix(version(p, "-v"), "nginx version: ")
	}
	if p := r.bins["haproxy"]; p != "" {
		m.Versions["haproxy"] = strings.TrimPrefix(version(p, "-v"), "HAProxy version ")
	}
	if p := r.bins["caddy"]; p != "" {
		m.Versions["caddy"] = version(p, "version")
	}
	m.Versions["wrk"] = strings.TrimPrefix(version(r.bins["wrk"], "-v"), "wrk ")
	if goVersion := version("go", "version"); goVersion != "" {
		m.Versions["go"] = goVersion
	} else {
		m.Versions["go"] = runtime.Version()
	}
	if _, err := os.Stat(r.s.GatewayBin); err == nil {
		m.Versions["gateway"] = version(r.s.GatewayBin, "version")
	}
	return m
}
