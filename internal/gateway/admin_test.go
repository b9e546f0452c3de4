package gateway

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/testutil"
)

func TestAdminTokenGuardsAdminAPI(t *testing.T) {
	t.Setenv("TEST_ADMIN_TOKEN", "s3cret")
	g := startGateway(t, strings.Replace(onePool([]string{testutil.Named(t, "a")}, ""),
		`admin: {listen: "127.0.0.1:0"}`, `admin: {listen: "127.0.0.1:0", token: "${TEST_ADMIN_TOKEN}"}`, 1))
	for _, tc := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer wrong", 401}, {"s3cret", 401}, {"Bearer s3cret", 200}} {
		req, _ := http.NewRequest("GET", g.admin+"/admin/config", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Authorization %q: %d, want %d", tc.auth, resp.StatusCode, tc.want)
		}
	}
	// Health, readiness and metrics stay open for probes and scrapers.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if status, _, _ := get(t, g.admin+p); status != 200 {
			t.Errorf("%s without token: %d", p, status)
		}
	}
	// The token never appears in /admin/config.
	_, body, _ := get(t, g.admin+"/admin/config", "Authorization", "Bearer s3cret")
	if strings.Contains(body, "s3cret") {
		t.Errorf("/admin/config shows the admin token")
	}
}

func TestMetricsCountRequestsAndUpstreams(t *testing.T) {
	a := testutil.Named(t, "a")
	g := startGateway(t, onePool([]string{a}, ""))
	for range 3 {
		get(t, g.url+"/x")
	}
	m := metricsText(t, g)
	for _, want := range []string{
		`sluice_requests_total{code="200",route="main",variant="p"} 3`,
		`sluice_upstream_requests_total{backend="` + a + `",outcome="success",pool="p"} 3`,
		`sluice_request_duration_seconds_count{route="main",variant="p"} 3`,
		`sluice_upstream_duration_seconds_count{pool="p"} 3`,
		`sluice_in_flight{route="main"} 0`,
		`sluice_config_generation 1`,
		`sluice_config_reloads_total{result="success"} 1`,
		`sluice_config_last_reload_success_timestamp_seconds `,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestReadyz(t *testing.T) {
	g := startGateway(t, onePool([]string{testutil.Named(t, "a")}, ""))
	status, body, _ := get(t, g.admin+"/readyz")
	if status != 200 || !strings.Contains(body, "ready") {
		t.Fatalf("/readyz with a loaded config: %d %s", status, body)
	}
}

func TestPprofOnlyWhenEnabled(t *testing.T) {
	a := testutil.Named(t, "a")
	off := startGateway(t, onePool([]string{a}, ""))
	if status, _, _ := get(t, off.admin+"/debug/pprof/"); status != 404 {
		t.Errorf("pprof off: /debug/pprof/ answered %d, want 404", status)
	}
	on := startGateway(t, strings.Replace(onePool([]string{a}, ""),
		`admin: {listen: "127.0.0.1:0"}`, `admin: {listen: "127.0.0.1:0", pprof: true}`, 1))
	if status, _, _ := get(t, on.admin+"/debug/pprof/"); status != 200 {
		t.Errorf("pprof on: /debug/pprof/ answered %d, want 200", status)
	}
}
