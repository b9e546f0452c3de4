package deploytest

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// lookPath finds a Prometheus binary or skips the test: they come from the
// Debian package prometheus (apt-get install -y prometheus), which make test
// installs when they are missing.
func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (Debian package prometheus: apt-get install -y prometheus); skipping", name)
	}
	return p
}

func runTool(t *testing.T, bin string, args ...string) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
}

// TestPromtoolChecksDeployFiles: the alerting rules and the scrape config
// pass promtool, and so does every dashboard query once Grafana's variables
// are filled in (as recording rules, which promtool parses).
func TestPromtoolChecksDeployFiles(t *testing.T) {
	promtool := lookPath(t, "promtool")
	runTool(t, promtool, "check", "rules", deployPath(t, alertsFile))
	runTool(t, promtool, "check", "config", deployPath(t, promFile))

	type recording struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	type group struct {
		Name  string      `yaml:"name"`
		Rules []recording `yaml:"rules"`
	}
	var rules []recording
	for i, q := range dashboardQueries(loadDashboard(t)) {
		if q.kind == kindVariable {
			continue
		}
		rules = append(rules, recording{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: q.promQL(t)})
	}
	data, err := yaml.Marshal(map[string][]group{"groups": {{Name: "dashboard", Rules: rules}}})
	if err != nil {
		t.Fatal(err)
	}
	runTool(t, promtool, "check", "rules", testutil.WriteFile(t, t.TempDir(), "dashboard-rules.yml", string(data)))
}

// TestDashboardShape: the dashboard imports with a Prometheus data source
// input, has the datasource and route variables, and every panel has an id,
// a data source, a unit and queries.
func TestDashboardShape(t *testing.T) {
	dash := loadDashboard(t)
	if v, _ := dash["schemaVersion"].(float64); v < 36 {
		t.Errorf("schemaVersion %v, want 36 or later", dash["schemaVersion"])
	}
	for _, k := range []string{"uid", "title"} {
		if s, _ := dash[k].(string); s == "" {
			t.Errorf("dashboard has no %s", k)
		}
	}
	inputs, _ := dash["__inputs"].([]any)
	if len(inputs) != 1 || inputs[0].(map[string]any)["name"] != "DS_PROMETHEUS" {
		t.Errorf("__inputs = %v, want the one data source input DS_PROMETHEUS", inputs)
	}

	vars := map[string]map[string]any{}
	tmpl, _ := dash["templating"].(map[string]any)
	list, _ := tmpl["list"].([]any)
	for _, v := range list {
		m := v.(map[string]any)
		vars[m["name"].(string)] = m
	}
	if ds := vars["datasource"]; ds == nil || ds["type"] != "datasource" || ds["query"] != "prometheus" {
		t.Errorf("no datasource variable of Prometheus data sources: %v", ds)
	}
	route := vars["route"]
	if route == nil || route["type"] != "query" || route["definition"] != "label_values(sluice_requests_total, route)" {
		t.Errorf("route variable = %v, want a query variable label_values(sluice_requests_total, route)", route)
	} else if route["includeAll"] != true || route["multi"] != true {
		t.Errorf("route variable: includeAll %v, multi %v; want both", route["includeAll"], route["multi"])
	}

	ids := map[float64]string{}
	var panels func([]any)
	n := 0
	panels = func(list []any) {
		for _, p := range list {
			pm := p.(map[string]any)
			title, _ := pm["title"].(string)
			id, _ := pm["id"].(float64)
			if prev, dup := ids[id]; dup || id == 0 {
				t.Errorf("panel %q: id %v missing or also used by %q", title, pm["id"], prev)
			}
			ids[id] = title
			if title == "" {
				t.Errorf("panel %v has no title", pm["id"])
			}
			if pos, _ := pm["gridPos"].(map[string]any); pos == nil || pos["x"].(float64)+pos["w"].(float64) > 24 {
				t.Errorf("panel %q: gridPos %v outside the 24 columns", title, pm["gridPos"])
			}
			if pm["type"] == "row" {
				nested, _ := pm["panels"].([]any)
				if pm["collapsed"] == true && len(nested) == 0 {
					t.Errorf("collapsed row %q holds no panels", title)
				}
				panels(nested)
				continue
			}
			n++
			if ds, _ := pm["datasource"].(map[string]any); ds == nil || ds["uid"] != "${datasource}" {
				t.Errorf("panel %q: datasource %v, want the ${datasource} variable", title, pm["datasource"])
			}
			fc, _ := pm["fieldConfig"].(map[string]any)
			defaults, _ := fc["defaults"].(map[string]any)
			if unit, _ := defaults["unit"].(string); unit == "" {
				t.Errorf("panel %q sets no unit", title)
			}
			targets, _ := pm["targets"].([]any)
			if len(targets) == 0 {
				t.Errorf("panel %q has no queries", title)
			}
			refs := map[string]bool{}
			for _, tg := range targets {
				tm := tg.(map[string]any)
				ref, _ := tm["refId"].(string)
				if expr, _ := tm["expr"].(string); expr == "" || ref == "" || refs[ref] {
					t.Errorf("panel %q: target %v needs an expr and a unique refId", title, tm)
				}
				refs[ref] = true
				if _, ok := tm["legendFormat"].(string); !ok {
					t.Errorf("panel %q target %s has no legendFormat", title, ref)
				}
			}
		}
	}
	top, _ := dash["panels"].([]any)
	panels(top)
	if n < 15 {
		t.Errorf("%d panels, want the full set (traffic, latency, errors, upstreams, backends, shadow, cache, limits, config)", n)
	}
	// Each metric the brief of the dashboard names is on it.
	var exprs []string
	for _, q := range dashboardQueries(dash) {
		exprs = append(exprs, q.expr)
	}
	all := strings.Join(exprs, "\n")
	for _, want := range []string{"sluice_requests_total", "sluice_request_duration_seconds_bucket",
		"sluice_upstream_requests_total", "sluice_breaker_state", "sluice_backend_up", "sluice_shadow_requests_total",
		"sluice_shadow_field_mismatch_total", "sluice_shadow_latency_delta_seconds_bucket", "sluice_cache_requests_total",
		"sluice_ratelimit_decisions_total", "sluice_config_reloads_total", "sluice_config_generation"} {
		if !strings.Contains(all, want) {
			t.Errorf("no dashboard query reads %s", want)
		}
	}
}

// TestAlertRulesShape: the group sluice holds the five alerts with their
// severities and for durations, and annotations that name the series.
func TestAlertRulesShape(t *testing.T) {
	want := map[string]struct{ severity, for_ string }{
		"SluiceHighLatencyP99":      {"warning", "5m"},
		"SluiceHighErrorRate":       {"critical", "5m"},
		"SluiceBreakerOpen":         {"warning", "1m"},
		"SluiceShadowAgreementLow":  {"warning", "10m"},
		"SluiceConfigReloadFailing": {"warning", ""},
	}
	got := map[string]bool{}
	for _, r := range alertRules(t) {
		if r.Alert == "" {
			t.Errorf("rule %q is not an alerting rule", r.Record)
			continue
		}
		got[r.Alert] = true
		w, ok := want[r.Alert]
		if !ok {
			continue
		}
		if r.Labels["severity"] != w.severity || r.For != w.for_ {
			t.Errorf("%s: severity %q for %q, want %q for %q", r.Alert, r.Labels["severity"], r.For, w.severity, w.for_)
		}
		for _, k := range []string{"summary", "description"} {
			if !strings.Contains(r.Annotations[k], "{{ $labels.") {
				t.Errorf("%s: annotation %s names no label: %q", r.Alert, k, r.Annotations[k])
			}
		}
	}
	for name := range want {
		if !got[name] {
			t.Errorf("no alert %s in group sluice", name)
		}
	}
}

// TestQueriesUseExportedMetricsAndLabels: a real gateway, with a split, a
// shadow, a cache and a rate limit, exports every metric the dashboard and
// the alerts read, every label they select or group by, and every literal
// label value they select.
func TestQueriesUseExportedMetricsAndLabels(t *testing.T) {
	s := startStack(t)
	for i := range 6 {
		if status, err := post(s.url+"/ab/predict", fmt.Sprintf(`{"n":%d}`, i)); status != http.StatusOK {
			t.Fatalf("POST /ab: %d %v", status, err)
		}
	}
	for range 4 { // the same body: a hit once its variant has stored it
		_, _ = post(s.url+"/ab/predict", `{"n":"again"}`)
	}
	for range 3 { // one token a minute: the rest are limited
		_, _ = post(s.url+"/ab/predict", `{"n":"keyed"}`, "X-Api-Key", "k1")
	}
	for range 5 { // 500, then 503 once the breaker is open
		_, _ = post(s.url+"/flaky/predict", `{}`)
	}
	_, _ = post(s.url+"/slow/predict", `{}`)

	var text string
	testutil.Eventually(t, 10*time.Second, "shadow comparisons in /metrics", func() bool {
		text = scrape(t, s.admin)
		return strings.Contains(text, "# TYPE sluice_shadow_field_mismatch_total") &&
			strings.Contains(text, "# TYPE sluice_shadow_latency_delta_seconds")
	})
	exp, err := parseExposition(text)
	if err != nil {
		t.Fatal(err)
	}

	queries := allQueries(t)
	if len(queries) < 20 {
		t.Fatalf("only %d queries found in the deploy files", len(queries))
	}
	for _, q := range queries {
		checkAgainstExposition(t, exp, q)
	}
}

func checkAgainstExposition(t *testing.T, exp exposition, q query) {
	t.Helper()
	if q.kind == kindVariable {
		m := labelVals.FindStringSubmatch(q.expr)
		if m == nil {
			t.Errorf("%s: not a label_values(metric, label) query: %q", q.where, q.expr)
			return
		}
		if _, f := exp.resolve(m[1]); f == nil || !f.hasLabel(m[2]) {
			t.Errorf("%s: %s has no label %s", q.where, m[1], m[2])
		}
		return
	}
	names := metricNames(q.expr)
	if len(names) == 0 {
		t.Errorf("%s: reads no sluice_ metric: %q", q.where, q.expr)
	}
	fams := map[string]*family{}
	for _, n := range names {
		base, f := exp.resolve(n)
		if f == nil {
			t.Errorf("%s: %s is not exported by the gateway (no # TYPE %s line)", q.where, n, strings.TrimSuffix(n, "_bucket"))
			continue
		}
		fams[n] = f
		if strings.HasSuffix(n, "_bucket") && f.typ != "histogram" {
			t.Errorf("%s: %s is read as a histogram but %s is a %s", q.where, n, base, f.typ)
		}
	}
	for _, sel := range selectors(q.expr) {
		f := fams[sel.metric]
		if f == nil {
			continue
		}
		for _, m := range sel.matchers {
			if !f.hasLabel(m.label) {
				t.Errorf("%s: %s has no label %s (selected with %s%s%q)", q.where, sel.metric, m.label, m.label, m.op, m.value)
				continue
			}
			if strings.Contains(m.value, "$") || slices.Contains(scrapeLabels, m.label) {
				continue
			}
			seen := f.labels[m.label]
			switch {
			case m.op == "=" && !seen[m.value]:
				t.Errorf("%s: %s{%s=%q}: the gateway exports no such value (it has %v)", q.where, sel.metric, m.label, m.value, slices.Sorted(maps.Keys(seen)))
			case m.op == "=~" && literalAlt.MatchString(m.value):
				for _, alt := range strings.Split(m.value, "|") {
					if !seen[alt] {
						t.Errorf("%s: %s{%s=~%q}: the gateway exports no value %q (it has %v)", q.where, sel.metric, m.label, m.value, alt, slices.Sorted(maps.Keys(seen)))
					}
				}
			case m.op == "=~":
				re, err := regexp.Compile("^(?:" + m.value + ")$")
				if err != nil {
					t.Errorf("%s: %s{%s=~%q}: %v", q.where, sel.metric, m.label, m.value, err)
					continue
				}
				if !slices.ContainsFunc(slices.Collect(maps.Keys(seen)), re.MatchString) {
					t.Errorf("%s: %s{%s=~%q} matches none of %v", q.where, sel.metric, m.label, m.value, slices.Sorted(maps.Keys(seen)))
				}
			}
		}
	}
	for _, g := range groupings(q.expr) {
		if g.arg == "" {
			t.Errorf("%s: cannot find what `by (%s)` aggregates in %q", q.where, strings.Join(g.labels, ", "), q.expr)
			continue
		}
		for _, n := range metricNames(g.arg) {
			for _, l := range g.labels {
				if f := fams[n]; f != nil && !f.hasLabel(l) {
					t.Errorf("%s: groups %s by %s, a label it does not have", q.where, n, l)
				}
			}
		}
	}
	for _, l := range onLabels(q.expr) {
		for _, n := range names {
			if f := fams[n]; f != nil && !f.hasLabel(l) {
				t.Errorf("%s: matches on (%s), a label %s does not have", q.where, l, n)
			}
		}
	}
}

// TestPrometheusScrapesGatewayAndEvaluatesAlerts runs a real Prometheus on
// the shipped scrape config (its target pointed at an in-process gateway,
// intervals at 1s) and rules, drives traffic with 5xx answers, a slow pool,
// an open breaker, mismatching shadow answers and a rejected reload, and
// asks Prometheus: each alert's expression as shipped returns the series it
// should, with the expected labels; every dashboard panel query returns
// data; the rules load and evaluate; the pending and firing alerts render
// their annotations.
func TestPrometheusScrapesGatewayAndEvaluatesAlerts(t *testing.T) {
	bin := lookPath(t, "prometheus")
	s := startStack(t)
	dir := t.TempDir()
	prom := startPrometheus(t, bin, dir, prometheusConfig(t, dir, s.adminAddr))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	drive := func(path string, pause time.Duration) {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// A new body each time: a cache miss, so mirrored.
				_, _ = post(s.url+path, fmt.Sprintf(`{"n":%d}`, i))
				time.Sleep(pause)
			}
		})
	}
	drive("/ab/predict", 10*time.Millisecond)
	drive("/flaky/predict", 50*time.Millisecond)
	drive("/slow/predict", 0)
	defer func() {
		close(stop)
		wg.Wait()
	}()

	// A rejected reload once Prometheus has the counter at 0, so that
	// increase() sees it rise.
	deadline := time.Now().Add(45 * time.Second)
	waitFor(t, deadline, "Prometheus has scraped the gateway", func() string {
		res, err := prom.query(`sluice_config_reloads_total{result="failure"}`)
		if err != nil || len(res) == 0 {
			return fmt.Sprintf("no sample yet (%v)", err)
		}
		return ""
	})
	if err := os.WriteFile(s.configPath, []byte("routes: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.gw.Reload("test"); err == nil {
		t.Fatal("a broken config file reloaded")
	}

	rules := map[string]rule{}
	for _, r := range alertRules(t) {
		rules[r.Alert] = r
	}
	type check struct {
		what string
		run  func() string // "" once satisfied, else why not yet
	}
	var checks []check
	alert := func(name string, want map[string]string, exact bool, absent ...map[string]string) {
		r, ok := rules[name]
		if !ok {
			t.Errorf("no alert %s", name)
			return
		}
		checks = append(checks, check{"alert " + name, func() string {
			res, err := prom.query(r.Expr)
			if err != nil {
				return err.Error()
			}
			for _, a := range absent {
				for _, smp := range res {
					if subset(a, smp.Metric) {
						return fmt.Sprintf("returns %v, which it should not", smp.Metric)
					}
				}
			}
			for _, smp := range res {
				if subset(want, smp.Metric) && (!exact || maps.Equal(want, smp.Metric)) {
					return ""
				}
			}
			return fmt.Sprintf("no series with labels %v (exact: %v) in %v", want, exact, res)
		}})
	}
	alert("SluiceHighErrorRate", map[string]string{"route": "flaky"}, true, map[string]string{"route": "ab"}, map[string]string{"route": "slow"})
	alert("SluiceHighLatencyP99", map[string]string{"route": "slow"}, true)
	alert("SluiceBreakerOpen", map[string]string{"pool": "flaky", "backend": s.flakyAddr, "job": "sluice", "instance": s.adminAddr}, false)
	alert("SluiceShadowAgreementLow", map[string]string{"route": "ab"}, true)
	alert("SluiceConfigReloadFailing", map[string]string{"result": "failure", "job": "sluice", "instance": s.adminAddr}, true)

	for _, q := range dashboardQueries(loadDashboard(t)) {
		if q.kind == kindVariable {
			continue
		}
		expr := q.promQL(t)
		checks = append(checks, check{q.where, func() string {
			res, err := prom.query(expr)
			if err != nil {
				return err.Error()
			}
			if len(res) == 0 && q.kind == kindPanel {
				return "no data: " + expr
			}
			return ""
		}})
	}
	checks = append(checks, check{"variable route", func() string {
		var routes []string
		if err := prom.get("/api/v1/label/route/values", url.Values{"match[]": {"sluice_requests_total"}}, &routes); err != nil {
			return err.Error()
		}
		for _, r := range []string{"ab", "flaky", "slow"} {
			if !slices.Contains(routes, r) {
				return fmt.Sprintf("routes %v lack %s", routes, r)
			}
		}
		return ""
	}})
	checks = append(checks, check{"rules API", func() string { return checkRules(prom, rules) }})
	checks = append(checks, check{"alerts API", func() string { return checkAlerts(prom) }})

	waiting := map[int]string{}
	for i := range checks {
		waiting[i] = "not run"
	}
	for len(waiting) > 0 && time.Now().Before(deadline) {
		for i := range waiting {
			if why := checks[i].run(); why == "" {
				delete(waiting, i)
			} else {
				waiting[i] = why
			}
		}
		if len(waiting) > 0 {
			time.Sleep(500 * time.Millisecond)
		}
	}
	for _, i := range slices.Sorted(maps.Keys(waiting)) {
		t.Errorf("%s: %s", checks[i].what, waiting[i])
	}
}

// checkRules: /api/v1/rules lists the group sluice with every alert of
// alerts.yml, each evaluated without error.
func checkRules(prom *promAPI, want map[string]rule) string {
	var data struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Name      string `json:"name"`
				Type      string `json:"type"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := prom.get("/api/v1/rules", nil, &data); err != nil {
		return err.Error()
	}
	for _, g := range data.Groups {
		if g.Name != "sluice" {
			continue
		}
		seen := map[string]bool{}
		for _, r := range g.Rules {
			seen[r.Name] = true
			if r.Type != "alerting" || r.Health != "ok" {
				return fmt.Sprintf("rule %s: type %s, health %q %s", r.Name, r.Type, r.Health, r.LastError)
			}
		}
		for name := range want {
			if !seen[name] {
				return fmt.Sprintf("group sluice lacks %s", name)
			}
		}
		return ""
	}
	return fmt.Sprintf("no group sluice in %+v", data.Groups)
}

// checkAlerts: the error-rate alert is pending or firing for route flaky,
// the reload alert (no for) is firing, and every active alert's annotations
// rendered with its labels.
func checkAlerts(prom *promAPI) string {
	var data struct {
		Alerts []struct {
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
			State       string            `json:"state"`
		} `json:"alerts"`
	}
	if err := prom.get("/api/v1/alerts", nil, &data); err != nil {
		return err.Error()
	}
	errorRate, reload := false, false
	for _, a := range data.Alerts {
		name := a.Labels["alertname"]
		for _, k := range []string{"summary", "description"} {
			v := a.Annotations[k]
			if v == "" || strings.Contains(v, "<no value>") || strings.Contains(v, "{{") {
				return fmt.Sprintf("%s %v: annotation %s did not render: %q", name, a.Labels, k, v)
			}
			for _, l := range []string{"route", "pool", "backend"} {
				if val := a.Labels[l]; val != "" && !strings.Contains(v, val) {
					return fmt.Sprintf("%s: annotation %s does not name %s %q: %q", name, k, l, val, v)
				}
			}
		}
		switch {
		case name == "SluiceHighErrorRate" && a.Labels["route"] == "flaky" && a.Labels["severity"] == "critical":
			errorRate = true
		case name == "SluiceConfigReloadFailing" && a.State == "firing":
			reload = true
		}
	}
	if !errorRate || !reload {
		return fmt.Sprintf("error-rate alert active: %v, reload alert firing: %v, in %+v", errorRate, reload, data.Alerts)
	}
	return ""
}

func subset(want, got map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func waitFor(t *testing.T, deadline time.Time, what string, cond func() string) {
	t.Helper()
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in time: %s", what, why)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// prometheusConfig is the shipped prometheus.yml with its sluice job
// pointed at the gateway's admin address, every interval at 1s, the rules
// file by absolute path, and no other job or Alertmanager.
func prometheusConfig(t *testing.T, dir, target string) string {
	t.Helper()
	data, err := os.ReadFile(deployPath(t, promFile))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("%s: %v", promFile, err)
	}
	var job map[string]any
	jobs, _ := cfg["scrape_configs"].([]any)
	for _, j := range jobs {
		if m, _ := j.(map[string]any); m["job_name"] == "sluice" {
			job = m
		}
	}
	if job == nil {
		t.Fatalf("%s has no scrape job named sluice", promFile)
	}
	rules, _ := cfg["rule_files"].([]any)
	if !slices.Contains(rules, any("alerts.yml")) {
		t.Errorf("%s does not load alerts.yml: rule_files %v", promFile, rules)
	}
	job["static_configs"] = []any{map[string]any{"targets": []any{target}}}
	cfg["scrape_configs"] = []any{job}
	cfg["global"] = map[string]any{"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
	cfg["rule_files"] = []any{deployPath(t, alertsFile)}
	delete(cfg, "alerting")
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.WriteFile(t, dir, "prometheus.yml", string(out))
}

// startPrometheus runs Prometheus on a free loopback port until the test
// ends and waits until it is ready.
func startPrometheus(t *testing.T, bin, dir, config string) *promAPI {
	t.Helper()
	addr := testutil.ClosedAddr(t)
	logs := &testutil.SyncBuffer{}
	cmd := exec.Command(bin, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs)
		}
	})
	p := &promAPI{base: "http://" + addr}
	waitFor(t, time.Now().Add(15*time.Second), "Prometheus ready", func() string {
		select {
		case <-exited:
			t.Fatalf("prometheus exited: %s\n%s", cmd.ProcessState, logs)
		default:
		}
		resp, err := httpClient.Get(p.base + "/-/ready")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return resp.Status
		}
		return ""
	})
	return p
}

// promAPI is Prometheus's HTTP API.
type promAPI struct{ base string }

type promSample struct {
	Metric map[string]string `json:"metric"`
}

// get GETs an API path and decodes its data into v; an error answer
// (a bad query, say) is an error.
func (p *promAPI) get(path string, params url.Values, v any) error {
	u := p.base + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	resp, err := httpClient.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("GET %s: %d: %w", path, resp.StatusCode, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("GET %s: %s: %s", path, body.ErrorType, body.Error)
	}
	return json.Unmarshal(body.Data, v)
}

// query runs an instant query now; a scalar answer is one sample with no
// labels.
func (p *promAPI) query(expr string) ([]promSample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, fmt.Errorf("%w (query %s)", err, expr)
	}
	if data.ResultType != "vector" {
		return []promSample{{Metric: map[string]string{}}}, nil
	}
	var res []promSample
	err := json.Unmarshal(data.Result, &res)
	return res, err
}
