package gateway

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/model"
	"github.com/sluice-gw/sluice/internal/shadow"
	"github.com/sluice-gw/sluice/internal/testutil"
	"github.com/sluice-gw/sluice/internal/worker"
)

// loadModel reads one of the shipped models.
func loadModel(t *testing.T, version string) *model.Model {
	t.Helper()
	m, err := model.Load(filepath.Join("..", "..", "models", "iris-v"+version+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// modelWorker serves a shipped model in process, as modelworker does, and
// returns its address.
func modelWorker(t *testing.T, version string, cfg worker.Config) string {
	t.Helper()
	return modelWorkerWrapped(t, version, cfg, nil)
}

// modelWorkerWrapped is modelWorker with see called on every request first.
func modelWorkerWrapped(t *testing.T, version string, cfg worker.Config, see func(*fasthttp.RequestCtx)) string {
	t.Helper()
	srv, err := worker.New(loadModel(t, version), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		if see != nil {
			see(ctx)
		}
		srv.Handler(ctx)
	})
}

// irisInputs draws n flowers uniformly from the box around the data (each
// feature from its minimum in data/iris.csv minus 0.5 to its maximum plus
// 0.5, the grid of models/README.md), rounded to hundredths so that the
// request text is exactly the value compared offline.
func irisInputs(n int) [][4]float64 {
	lo := [4]float64{4.3 - .5, 2.0 - .5, 1.0 - .5, 0.1 - .5}
	hi := [4]float64{7.9 + .5, 4.4 + .5, 6.9 + .5, 2.5 + .5}
	r := rand.New(rand.NewPCG(5, 5))
	out := make([][4]float64, n)
	for i := range out {
		for j := range 4 {
			out[i][j] = math.Round((lo[j]+r.Float64()*(hi[j]-lo[j]))*100) / 100
		}
	}
	return out
}

func inputBody(x [4]float64) string {
	return fmt.Sprintf(`{"input":[%g,%g,%g,%g]}`, x[0], x[1], x[2], x[3])
}

// agree reports whether two models predict the same class for x.
func agree(t *testing.T, a, b *model.Model, x [4]float64) bool {
	t.Helper()
	pa, pb := make([]float64, len(a.Classes)), make([]float64, len(b.Classes))
	if err := a.Predict(x[:], pa); err != nil {
		t.Fatal(err)
	}
	if err := b.Predict(x[:], pb); err != nil {
		t.Fatal(err)
	}
	ca, _ := a.Best(pa)
	cb, _ := b.Best(pb)
	return ca == cb
}

// Acceptance point 2, on the dev stack's shape: a sticky 90/10 split of
// iris-v1 and iris-v2 with iris-v3 shadowing a quarter of the users. After
// 2,000 requests the label agreement the report gives for the control
// variant is exactly the agreement of iris-v1 and iris-v3 computed offline
// on the inputs that were mirrored, within sampling error of their
// agreement on all 2,000, and the timestamp and model_version fields,
// which always differ, are ignored.
func TestShadowLabelAgreementMatchesOfflineDisagreement(t *testing.T) {
	stamped := worker.Config{Timestamp: true}
	var mu sync.Mutex
	mirrored := map[string]string{} // user -> body the shadow got
	v3 := modelWorkerWrapped(t, "3", stamped, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		mirrored[string(ctx.Request.Header.Peek("X-User-Id"))] = string(ctx.Request.Body())
		mu.Unlock()
	})
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  iris-v1: {backends: [%s]}
  iris-v2: {backends: [%s]}
  iris-v3: {backends: [%s]}
routes:
  - name: iris
    match: {path_prefix: /v1/models/iris}
    strip_prefix: /v1/models/iris
    split:
      sticky: header:X-User-Id
      salt: iris-ab-1
      variants:
        - {name: control, pool: iris-v1, weight: 90}
        - {name: treatment, pool: iris-v2, weight: 10}
    shadow:
      pool: iris-v3
      percent: 25
      compare:
        ignore: [timestamp, model_version]
        abs_tolerance: 1e-6
        rel_tolerance: 1e-3
        label: prediction
`, modelWorker(t, "1", stamped), modelWorker(t, "2", stamped), v3))

	inputs := irisInputs(2000)
	variantOf := map[string]string{}
	for i, x := range inputs {
		user := fmt.Sprintf("user-%d", i)
		status, body, h := send(t, "POST", g.url+"/v1/models/iris/predict", inputBody(x), "X-User-Id", user)
		if status != 200 || !strings.Contains(body, `"timestamp"`) {
			t.Fatalf("request %d: %d %s", i, status, body)
		}
		variantOf[user] = h.Get("X-Sluice-Variant")
	}
	settled(t, g, "iris", 2000*25/100*8/10)
	rep := shadowReport(t, g, "iris")
	if rep.InFlight != 0 || rep.Totals.Dropped+rep.Totals.Error+rep.Totals.Timeout != 0 {
		t.Fatalf("mirrors lost: %+v", rep.Totals)
	}

	v1, v3m := loadModel(t, "1"), loadModel(t, "3")
	// Offline, on the control inputs the shadow received.
	var n, same int
	mu.Lock()
	for user, body := range mirrored {
		if variantOf[user] != "control" {
			continue
		}
		var in struct{ Input [4]float64 }
		if err := json.Unmarshal([]byte(body), &in); err != nil {
			t.Fatal(err)
		}
		n++
		if agree(t, v1, v3m, in.Input) {
			same++
		}
	}
	mu.Unlock()
	// Offline, on every input.
	all := 0
	for _, x := range inputs {
		if agree(t, v1, v3m, x) {
			all++
		}
	}
	population := float64(all) / float64(len(inputs))

	control := rep.Variants[0]
	if control.Variant != "control" || control.Label.Agreement == nil {
		t.Fatalf("control report: %+v", control)
	}
	got := *control.Label.Agreement
	t.Logf("mirrored control pairs %d: report agreement %.4f, offline on the same inputs %d/%d = %.4f, offline on all 2000 %.4f",
		control.Label.Pairs, got, same, n, float64(same)/float64(n), population)
	if control.Label.Pairs != int64(n) || control.Label.Agree != int64(same) {
		t.Errorf("report: %d of %d agree; offline on the same inputs: %d of %d", control.Label.Agree, control.Label.Pairs, same, n)
	}
	if se := math.Sqrt(population * (1 - population) / float64(n)); math.Abs(got-population) > 3*se {
		t.Errorf("report agreement %.4f is more than 3 standard errors (%.4f) from the population's %.4f", got, se, population)
	}
	if population > 0.95 || population < 0.5 {
		t.Errorf("offline agreement %.3f: the inputs no longer show the models' documented disagreement", population)
	}
	for _, f := range control.Fields {
		if f.Field == "timestamp" || f.Field == "model_version" {
			t.Errorf("ignored field %s reported: %+v", f.Field, f)
		}
	}
	if len(control.Fields) == 0 || control.Fields[0].Verdict != shadow.VerdictDifference {
		t.Errorf("fields: %+v, want the differing probabilities reported", control.Fields)
	}
}

// Acceptance point 3: noise below abs_tolerance is no mismatch; above it,
// only the noisy field is reported; and a field the primary itself
// randomises is marked as noise when a noise copy of the primary shows it.
func TestShadowToleranceAndNoiseFloorWithPerturbedWorkers(t *testing.T) {
	perturb := func(field string, amount float64) worker.Config {
		return worker.Config{Perturb: worker.Perturbations{{Field: field, Amount: amount}}}
	}
	plain := modelWorker(t, "1", worker.Config{})
	randomised := perturb("confidence", 0.01)
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  v1: {backends: [%s]}
  v1-tiny-noise: {backends: [%s]}
  v1-setosa-noise: {backends: [%s]}
  v1-random-confidence: {backends: [%s]}
  v1-random-confidence-copy: {backends: [%s]}
routes:
  - name: below
    match: {path_prefix: /below}
    strip_prefix: /below
    pool: v1
    shadow: {pool: v1-tiny-noise, percent: 100, compare: {abs_tolerance: 1e-6}}
  - name: above
    match: {path_prefix: /above}
    strip_prefix: /above
    pool: v1
    shadow: {pool: v1-setosa-noise, percent: 100, compare: {abs_tolerance: 1e-6}}
  - name: noise
    match: {path_prefix: /noise}
    strip_prefix: /noise
    pool: v1-random-confidence
    shadow:
      pool: v1-setosa-noise
      percent: 100
      noise: {pool: v1-random-confidence-copy, percent: 100}
      compare: {abs_tolerance: 1e-6}
`, plain, modelWorker(t, "1", perturb("probabilities.setosa", 1e-7)),
		modelWorker(t, "1", perturb("probabilities.setosa", 1e-2)),
		modelWorker(t, "1", randomised), modelWorker(t, "1", randomised)))

	const n = 200
	inputs := irisInputs(n)
	for _, route := range []string{"below", "above", "noise"} {
		for _, x := range inputs {
			if status, body, _ := send(t, "POST", g.url+"/"+route+"/predict", inputBody(x)); status != 200 {
				t.Fatalf("%s: %d %s", route, status, body)
			}
		}
	}

	below := settled(t, g, "below", n)
	if c := below.Totals; c.Compared != n || c.Matched != n {
		t.Errorf("noise below abs_tolerance: compared %d, matched %d, want %d and %d (fields %+v)", c.Compared, c.Matched, n, n, below.Variants[0].Fields)
	}

	above := settled(t, g, "above", n)
	fields := above.Variants[0].Fields
	if len(fields) != 1 || fields[0].Field != "probabilities.setosa" || fields[0].Mismatches < n*9/10 || fields[0].Verdict != shadow.VerdictDifference {
		t.Errorf("noise above abs_tolerance: fields %+v, want probabilities.setosa alone, as a difference", fields)
	}

	noise := settled(t, g, "noise", n)
	v := noise.Variants[0]
	verdicts := map[string]string{}
	for _, f := range v.Fields {
		verdicts[f.Field] = f.Verdict
	}
	if v.NoisePairs < n*9/10 || verdicts["confidence"] != shadow.VerdictNoise || verdicts["probabilities.setosa"] != shadow.VerdictDifference {
		t.Errorf("noise pairs %d, verdicts %v; want confidence as noise and probabilities.setosa as a difference (fields %+v)", v.NoisePairs, verdicts, v.Fields)
	}
}
