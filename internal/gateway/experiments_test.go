package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

type experimentsView struct {
	Experiments []struct {
		Route    string `json:"route"`
		Variants []struct {
			Name     string `json:"name"`
			Requests uint64 `json:"requests"`
			Errors   uint64 `json:"errors"`
		} `json:"variants"`
	} `json:"experiments"`
}

func postJSON(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := httpClient.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestExperimentCountsRequestsPerVariant(t *testing.T) {
	g := startGateway(t, threeVariants(t, "      sticky: header:X-User-Id"))
	want := map[string]uint64{}
	for i := range 300 {
		_, body, _ := get(t, g.url+"/", "X-User-Id", fmt.Sprintf("u%d", i))
		want[body]++
	}
	var v experimentsView
	adminJSON(t, g.admin+"/admin/experiments", &v)
	if len(v.Experiments) != 1 || v.Experiments[0].Route != "exp" {
		t.Fatalf("experiments: %+v", v)
	}
	for _, variant := range v.Experiments[0].Variants {
		if variant.Requests != want[variant.Name] {
			t.Errorf("variant %s: %d requests recorded, %d answered", variant.Name, variant.Requests, want[variant.Name])
		}
	}
	status, page, _ := get(t, g.admin+"/admin/experiments?format=html")
	if status != 200 || !strings.Contains(page, "<html") || !strings.Contains(page, "exp") {
		t.Errorf("HTML report: %d %.200s", status, page)
	}
}

// TestOutcomesGoToTheKeysVariant: the gateway recomputes each key's variant
// from the route's salt and weights, exactly as it routes that key.
func TestOutcomesGoToTheKeysVariant(t *testing.T) {
	g := startGateway(t, threeVariants(t, "      sticky: header:X-User-Id"))
	var items []string
	byVariant := map[string]float64{}
	for i := range 60 {
		key := fmt.Sprintf("k%d", i)
		_, routedTo, _ := get(t, g.url+"/", "X-User-Id", key)
		byVariant[routedTo]++
		items = append(items, fmt.Sprintf(`{"key":%q,"metric":"converted","value":1}`, key))
	}
	status, out := postJSON(t, g.admin+"/admin/experiments/exp/outcomes", "["+strings.Join(items, ",")+"]")
	if status != 200 || out["recorded"] != float64(60) {
		t.Fatalf("outcomes: %d %v", status, out)
	}
	got := out["by_variant"].(map[string]any)
	for name, n := range byVariant {
		if got[name] != n {
			t.Errorf("variant %s: %v outcomes, but %v of the keys were routed there", name, got[name], n)
		}
	}
}

func TestOutcomesRejectBadUploads(t *testing.T) {
	g := startGateway(t, threeVariants(t, "      sticky: header:X-User-Id"))
	url := g.admin + "/admin/experiments/exp/outcomes"
	for _, tc := range []struct {
		body string
		want int
	}{
		{`not json`, 400},
		{`{"key":"a"}`, 400},
		{`[]`, 400},
		{`[{"key":"","metric":"m","value":1}]`, 400},
		{`[{"key":"a","metric":"","value":1}]`, 400},
		{`[{"key":"a","metric":"m"}]`, 400},
		{`[{"key":"a","metric":"m","value":1},{"key":"b","metric":"m","value":"x"}]`, 400},
	} {
		if status, out := postJSON(t, url, tc.body); status != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.body, status, out, tc.want)
		}
	}
	// Nothing of a rejected upload was recorded.
	var raw bytes.Buffer
	resp, err := httpClient.Get(g.admin + "/admin/experiments")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = raw.ReadFrom(resp.Body)
	resp.Body.Close()
	if strings.Contains(raw.String(), `"m"`) {
		t.Errorf("a rejected upload left outcomes behind: %s", raw.String())
	}
	if status, _ := postJSON(t, g.admin+"/admin/experiments/nope/outcomes", `[{"key":"a","metric":"m","value":1}]`); status != http.StatusNotFound {
		t.Errorf("unknown route: %d, want 404", status)
	}
}

func TestOutcomesNeedAStickySplit(t *testing.T) {
	g := startGateway(t, threeVariants(t, "      salt: s"))
	if status, _ := postJSON(t, g.admin+"/admin/experiments/exp/outcomes", `[{"key":"a","metric":"m","value":1}]`); status != http.StatusConflict {
		t.Errorf("outcomes for an unsticky split: %d, want 409", status)
	}
}
