package deploytest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"gopkg.in/yaml.v3"

	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/testutil"
)

// The shipped files, relative to the repository root.
var (
	dashboardFile = filepath.Join("deploy", "grafana", "sluice-dashboard.json")
	alertsFile    = filepath.Join("deploy", "prometheus", "alerts.yml")
	promFile      = filepath.Join("deploy", "prometheus", "prometheus.yml")
)

// deployPath is the absolute path of a shipped file. The repository root is
// the first directory above the test's working directory with a go.mod.
func deployPath(t testing.TB, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, rel)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's working directory")
		}
		dir = parent
	}
}

// queryKind says where in the deploy files a query comes from.
type queryKind string

const (
	kindPanel      queryKind = "panel"      // a dashboard panel's target: PromQL that should show data
	kindAnnotation queryKind = "annotation" // a dashboard annotation: PromQL, often empty
	kindVariable   queryKind = "variable"   // a template variable: Grafana's label_values(), not PromQL
	kindAlert      queryKind = "alert"      // an alerting rule's expr
)

// query is one expression of the deploy files.
type query struct {
	kind  queryKind
	where string // for messages: which panel, target, annotation, variable or alert
	expr  string
}

// loadDashboard decodes the shipped dashboard.
func loadDashboard(t testing.TB) map[string]any {
	t.Helper()
	data, err := os.ReadFile(deployPath(t, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardFile, err)
	}
	return dash
}

// dashboardQueries collects every expr of the dashboard, wherever it sits
// (panels nested in collapsed rows included), and the template variables'
// query definitions.
func dashboardQueries(dash map[string]any) []query {
	var out []query
	walkExprs(dash["panels"], kindPanel, "panel", &out)
	walkExprs(dash["annotations"], kindAnnotation, "annotation", &out)
	walkExprs(dash["templating"], kindVariable, "variable", &out)
	return out
}

func walkExprs(node any, kind queryKind, where string, out *[]query) {
	switch v := node.(type) {
	case map[string]any:
		if title, ok := v["title"].(string); ok && kind == kindPanel {
			where = fmt.Sprintf("panel %q", title)
		}
		if name, ok := v["name"].(string); ok && kind != kindPanel {
			where = fmt.Sprintf("%s %q", kind, name)
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			s, isString := v[k].(string)
			switch {
			case k == "expr" && isString:
				w := where
				if ref, ok := v["refId"].(string); ok {
					w += " target " + ref
				}
				*out = append(*out, query{kind: kind, where: w, expr: s})
			case k == "definition" && isString && kind == kindVariable:
				*out = append(*out, query{kind: kind, where: where, expr: s})
			default:
				walkExprs(v[k], kind, where, out)
			}
		}
	case []any:
		for _, e := range v {
			walkExprs(e, kind, where, out)
		}
	}
}

// ruleFile is the shape of a Prometheus rules file.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// loadAlerts decodes the shipped alerting rules.
func loadAlerts(t testing.TB) ruleFile {
	t.Helper()
	data, err := os.ReadFile(deployPath(t, alertsFile))
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(data, &rf); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	return rf
}

// alertRules are the rules of the group named sluice.
func alertRules(t testing.TB) []rule {
	t.Helper()
	for _, g := range loadAlerts(t).Groups {
		if g.Name == "sluice" {
			return g.Rules
		}
	}
	t.Fatalf("%s has no group named sluice", alertsFile)
	return nil
}

func alertQueries(t testing.TB) []query {
	var out []query
	for _, r := range alertRules(t) {
		out = append(out, query{kind: kindAlert, where: "alert " + r.Alert, expr: r.Expr})
	}
	return out
}

// allQueries are the dashboard's queries and the alerts' expressions.
func allQueries(t testing.TB) []query {
	return append(dashboardQueries(loadDashboard(t)), alertQueries(t)...)
}

// grafanaVars fills in the dashboard's variables with values that make a
// plain PromQL expression: every route, fixed ranges.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "1m",
	"$__interval", "30s",
	"$__range", "5m",
	"${route}", ".*",
	"$route", ".*",
)

// promQL is the expression as Prometheus would get it from Grafana.
func (q query) promQL(t testing.TB) string {
	t.Helper()
	s := grafanaVars.Replace(q.expr)
	if strings.Contains(s, "$") {
		t.Errorf("%s: a Grafana variable this test does not fill in: %q", q.where, q.expr)
	}
	return s
}

// --- PromQL, as far as these checks need it -------------------------------

var (
	metricRe   = regexp.MustCompile(`\bsluice_[A-Za-z0-9_]*`)
	selectorRe = regexp.MustCompile(`\b(sluice_[A-Za-z0-9_]*)\s*\{([^}]*)\}`)
	matcherRe  = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
	byRe       = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
	onRe       = regexp.MustCompile(`\bon\s*\(([^)]*)\)`)
	labelVals  = regexp.MustCompile(`^\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)
	literalAlt = regexp.MustCompile(`^[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*$`)
)

// metricNames are the sluice_ metrics an expression reads, each once.
func metricNames(expr string) []string {
	var names []string
	for _, n := range metricRe.FindAllString(expr, -1) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// matcher is one label matcher of a selector.
type matcher struct{ label, op, value string }

// selector is a metric with its label matchers.
type selector struct {
	metric   string
	matchers []matcher
}

func selectors(expr string) []selector {
	var out []selector
	for _, m := range selectorRe.FindAllStringSubmatch(expr, -1) {
		s := selector{metric: m[1]}
		for _, mm := range matcherRe.FindAllStringSubmatch(m[2], -1) {
			s.matchers = append(s.matchers, matcher{label: mm[1], op: mm[2], value: mm[3]})
		}
		out = append(out, s)
	}
	return out
}

// grouping is one `by (labels)` clause and the expression it aggregates.
type grouping struct {
	labels []string
	arg    string
}

// groupings finds every `by (...)` clause, in either form: `sum by (l)
// (arg)` or `sum (arg) by (l)`.
func groupings(expr string) []grouping {
	var out []grouping
	for _, loc := range byRe.FindAllStringSubmatchIndex(expr, -1) {
		g := grouping{labels: splitLabels(expr[loc[2]:loc[3]])}
		rest := strings.TrimLeft(expr[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") {
			open := len(expr) - len(rest)
			if end := matchForward(expr, open); end > 0 {
				g.arg = expr[open : end+1]
			}
		} else {
			before := strings.TrimRight(expr[:loc[0]], " \t\n")
			if strings.HasSuffix(before, ")") {
				if start := matchBackward(expr, len(before)-1); start >= 0 {
					g.arg = expr[start:len(before)]
				}
			}
		}
		out = append(out, g)
	}
	return out
}

// onLabels are the labels of every `on (...)` clause.
func onLabels(expr string) []string {
	var out []string
	for _, m := range onRe.FindAllStringSubmatch(expr, -1) {
		out = append(out, splitLabels(m[1])...)
	}
	return out
}

func splitLabels(list string) []string {
	var out []string
	for _, l := range strings.Split(list, ",") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// matchForward is the index of the parenthesis that closes the one at
// open, skipping quoted strings; -1 if none does.
func matchForward(s string, open int) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '"':
			i = skipString(s, i)
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// matchBackward is the index of the parenthesis that opens the one at
// closing; -1 if none does. Expressions here have no parentheses inside
// strings before a postfix `by`, so strings are not skipped.
func matchBackward(s string, closing int) int {
	depth := 0
	for i := closing; i >= 0; i-- {
		switch s[i] {
		case ')':
			depth++
		case '(':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

func skipString(s string, i int) int {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return len(s)
}

// --- The exposition format --------------------------------------------------

// family is one metric family of a scrape: its type and every label
// (with the values seen) of its samples.
type family struct {
	typ    string
	labels map[string]map[string]bool
}

// exposition is a scrape by family name.
type exposition map[string]*family

// scrapeLabels are added by Prometheus to every series it scrapes.
var scrapeLabels = []string{"instance", "job"}

// parseExposition reads the Prometheus text format.
func parseExposition(text string) (exposition, error) {
	exp := exposition{}
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			f := strings.Fields(line)
			if len(f) == 4 && f[1] == "TYPE" {
				exp[f[2]] = &family{typ: f[3], labels: map[string]map[string]bool{}}
			}
			continue
		}
		name, labels, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		_, fam := exp.resolve(name)
		if fam == nil {
			return nil, fmt.Errorf("line %d: sample %s before its # TYPE line", n+1, name)
		}
		for k, v := range labels {
			if fam.labels[k] == nil {
				fam.labels[k] = map[string]bool{}
			}
			fam.labels[k][v] = true
		}
	}
	return exp, nil
}

// resolve finds the family of a series name: the name itself, or for a
// histogram's or summary's _bucket, _sum and _count series the name
// without the suffix.
func (e exposition) resolve(name string) (string, *family) {
	if f, ok := e[name]; ok {
		return name, f
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if f, ok := e[base]; ok && (f.typ == "histogram" || (f.typ == "summary" && suffix != "_bucket")) {
			return base, f
		}
	}
	return "", nil
}

// hasLabel says whether series of the family carry label, counting the
// labels a scrape adds.
func (f *family) hasLabel(label string) bool {
	return f.labels[label] != nil || slices.Contains(scrapeLabels, label)
}

// parseSample splits `name{a="b",...} value [timestamp]` into the name and
// the labels.
func parseSample(line string) (string, map[string]string, error) {
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return "", nil, fmt.Errorf("not a sample: %q", line)
	}
	name, labels := line[:i], map[string]string{}
	if line[i] != '{' {
		return name, labels, nil
	}
	j := i + 1
	for {
		for j < len(line) && (line[j] == ' ' || line[j] == ',') {
			j++
		}
		if j >= len(line) {
			return "", nil, fmt.Errorf("unterminated labels: %q", line)
		}
		if line[j] == '}' {
			return name, labels, nil
		}
		eq := strings.IndexByte(line[j:], '=')
		if eq < 0 || j+eq+1 >= len(line) || line[j+eq+1] != '"' {
			return "", nil, fmt.Errorf("malformed label: %q", line)
		}
		key := strings.TrimSpace(line[j : j+eq])
		j += eq + 2
		var b strings.Builder
		for ; j < len(line) && line[j] != '"'; j++ {
			if line[j] == '\\' && j+1 < len(line) {
				j++
				if line[j] == 'n' {
					b.WriteByte('\n')
				} else {
					b.WriteByte(line[j])
				}
				continue
			}
			b.WriteByte(line[j])
		}
		if j >= len(line) {
			return "", nil, fmt.Errorf("unterminated label value: %q", line)
		}
		j++
		labels[key] = b.String()
	}
}

// --- A gateway with every kind of series -----------------------------------

// stack is an in-process gateway on loopback ports with backends behind
// routes that make every series of the dashboard and the alerts exist:
//
//   - ab: a split (control on pool a, treatment on pool b), mirrored in
//     full to the candidate pool cand, which answers another label (so
//     every compared pair mismatches on the field "label"), with a cache and
//     a rate limit keyed by the X-Api-Key header (1 a minute);
//   - flaky: a pool whose only backend answers 500; its breaker opens after
//     3 failures and stays open a minute, then the gateway answers 503;
//   - slow: a pool whose backend takes 150 ms.
type stack struct {
	gw         *gateway.Gateway
	configPath string
	url        string // client base URL
	admin      string // admin base URL
	adminAddr  string
	flakyAddr  string
}

func startStack(t *testing.T) *stack {
	t.Helper()
	answer := func(body string) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("application/json")
			ctx.SetBodyString(body)
		}
	}
	primary := answer(`{"label":"setosa","score":0.91}`)
	a, b := testutil.Backend(t, primary), testutil.Backend(t, primary)
	cand := testutil.Backend(t, answer(`{"label":"versicolor","score":0.91}`))
	flaky := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"error":"model crashed"}`)
	})
	slow := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		time.Sleep(150 * time.Millisecond)
		primary(ctx)
	})
	cfg := fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  a: {backends: [%s], timeout: 2s}
  b: {backends: [%s], timeout: 2s}
  cand: {backends: [%s], timeout: 2s}
  flaky:
    backends: [%s]
    timeout: 2s
    breaker: {consecutive_failures: 3, open_for: 1m}
  slow: {backends: [%s], timeout: 2s}
routes:
  - name: ab
    match: {path_prefix: /ab}
    split:
      variants:
        - {name: control, pool: a, weight: 1}
        - {name: treatment, pool: b, weight: 1}
    shadow: {pool: cand, percent: 100}
    cache: {ttl: 1m}
    rate_limit: {key: header:X-Api-Key, rate: 1/m, burst: 1}
  - name: flaky
    match: {path_prefix: /flaky}
    pool: flaky
  - name: slow
    match: {path_prefix: /slow}
    pool: slow
`, a, b, cand, flaky, slow)
	path := testutil.WriteFile(t, t.TempDir(), "gateway.yaml", cfg)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	g, err := gateway.New(path, log)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	return &stack{gw: g, configPath: path, url: "http://" + g.ClientAddr(), admin: "http://" + g.AdminAddr(),
		adminAddr: g.AdminAddr(), flakyAddr: flaky}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// post sends a POST with body and header name/value pairs; it returns the
// status. It is safe in goroutines: it never calls t.
func post(url, body string, headers ...string) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// scrape GETs the gateway's /metrics.
func scrape(t testing.TB, admin string) string {
	t.Helper()
	resp, err := httpClient.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(body)
}
