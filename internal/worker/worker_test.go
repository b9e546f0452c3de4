package worker

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// TestPredictShapes sends the three input shapes of /predict to each
// shipped model and checks the singular and plural answers.
func TestPredictShapes(t *testing.T) {
	for _, file := range shippedModels {
		t.Run(file, func(t *testing.T) {
			m := loadModel(t, file)
			w := startWorker(t, m, Config{})

			r := w.post(t, "/predict", `{"input":`+rowJSON(setosaRow)+`}`)
			if r.status != 200 {
				t.Fatalf("input: %d %s", r.status, r.body)
			}
			var one singleAnswer
			decodeJSON(t, r.body, &one)
			if one.Prediction != "setosa" || one.Model != m.Name || one.ModelVersion != m.Version {
				t.Errorf("input: %+v", one)
			}
			checkProbs(t, one.Probabilities, m.Classes)
			if one.Confidence != one.Probabilities[one.Prediction] {
				t.Errorf("confidence %v is not the probability of %s, %v", one.Confidence, one.Prediction, one.Probabilities[one.Prediction])
			}
			// The map's keys come in class order, not sorted or random.
			if i, j, k := bytes.Index(r.body, []byte(`"setosa":`)), bytes.Index(r.body, []byte(`"versicolor":`)), bytes.Index(r.body, []byte(`"virginica":`)); !(i < j && j < k) {
				t.Errorf("probabilities not in class order: %s", r.body)
			}

			want := []string{"setosa", "versicolor", "virginica"}
			batchBodies := map[string]string{
				"inputs": `{"inputs":[` + rowJSON(setosaRow) + `,` + rowJSON(versicolorRow) + `,` + rowJSON(virginicaRow) + `]}`,
				"data": `{"data":[` + record(m.Features, setosaRow) + `,` + record(m.Features, versicolorRow) + `,` +
					record(m.Features, virginicaRow) + `]}`,
			}
			for key, body := range batchBodies {
				r := w.post(t, "/predict", body)
				if r.status != 200 {
					t.Fatalf("%s: %d %s", key, r.status, r.body)
				}
				var many batchAnswer
				decodeJSON(t, r.body, &many)
				if strings.Join(many.Predictions, ",") != strings.Join(want, ",") {
					t.Errorf("%s: predictions %v, want %v", key, many.Predictions, want)
				}
				if len(many.Probabilities) != 3 || len(many.Confidences) != 3 || many.Model != m.Name || many.ModelVersion != m.Version {
					t.Fatalf("%s: %s", key, r.body)
				}
				for i := range 3 {
					checkProbs(t, many.Probabilities[i], m.Classes)
					if many.Confidences[i] != many.Probabilities[i][many.Predictions[i]] {
						t.Errorf("%s: row %d confidence %v", key, i, many.Confidences[i])
					}
				}
			}

			// A batch of one row still gets the plural answer.
			r = w.post(t, "/predict", `{"inputs":[`+rowJSON(setosaRow)+`]}`)
			var many batchAnswer
			decodeJSON(t, r.body, &many)
			if len(many.Predictions) != 1 {
				t.Errorf("batch of one: %s", r.body)
			}
		})
	}
}

// record writes a row as a {"feature": value} object, keys in reverse
// order to show that order does not matter.
func record(features []string, row []float64) string {
	var parts []string
	for i := len(features) - 1; i >= 0; i-- {
		parts = append(parts, `"`+features[i]+`":`+strings.Trim(rowJSON(row[i:i+1]), "[]"))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func checkProbs(t *testing.T, probs map[string]float64, classes []string) {
	t.Helper()
	if len(probs) != len(classes) {
		t.Fatalf("probabilities %v for classes %v", probs, classes)
	}
	sum := 0.0
	for _, c := range classes {
		p, ok := probs[c]
		if !ok || p < 0 || p > 1 {
			t.Fatalf("probability of %s: %v", c, probs)
		}
		sum += p
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("probabilities sum to %v", sum)
	}
}

// TestMaxBatchRowsAreServed: the limit is inclusive.
func TestMaxBatchRowsAreServed(t *testing.T) {
	w := startWorker(t, loadModel(t, "iris-v2.json"), Config{})
	r := w.post(t, "/predict", `{"inputs":[`+rows(1000)+`]}`)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var many batchAnswer
	decodeJSON(t, r.body, &many)
	if len(many.Predictions) != 1000 || len(many.Probabilities) != 1000 || len(many.Confidences) != 1000 {
		t.Fatalf("%d predictions", len(many.Predictions))
	}
}

// TestHealthInfoAndMetadata checks the fixed endpoints, and that the
// readiness ones turn 503 when the worker is unready.
func TestHealthInfoAndMetadata(t *testing.T) {
	m := loadModel(t, "iris-v3.json")
	w := startWorker(t, m, Config{ServerVersion: "1.2.3"})

	var health struct{ Status, Model, Version string }
	r := w.get(t, "/health")
	decodeJSON(t, r.body, &health)
	if r.status != 200 || health.Status != "healthy" || health.Model != "iris" || health.Version != "3" {
		t.Errorf("/health: %d %s", r.status, r.body)
	}
	if r := w.get(t, "/v2/health/live"); r.status != 200 || string(r.body) != `{"live":true}` {
		t.Errorf("/v2/health/live: %d %s", r.status, r.body)
	}
	if r := w.get(t, "/v2/health/ready"); r.status != 200 || string(r.body) != `{"ready":true}` {
		t.Errorf("/v2/health/ready: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/v2/models/iris/ready", "/v2/models/iris/versions/3/ready"} {
		if r := w.get(t, p); r.status != 200 || string(r.body) != `{"name":"iris","ready":true}` {
			t.Errorf("%s: %d %s", p, r.status, r.body)
		}
	}
	if r := w.do(t, "HEAD", "/health", ""); r.status != 200 {
		t.Errorf("HEAD /health: %d", r.status)
	}

	var info struct {
		Name, Version, Kind string
		Features, Classes   []string
		MaxBatch            int `json:"max_batch"`
	}
	decodeJSON(t, w.get(t, "/model/info").body, &info)
	if info.Name != "iris" || info.Version != "3" || info.Kind != m.Kind || info.MaxBatch != 1000 ||
		strings.Join(info.Features, ",") != "sepal_length,sepal_width,petal_length,petal_width" ||
		strings.Join(info.Classes, ",") != "setosa,versicolor,virginica" {
		t.Errorf("/model/info: %+v", info)
	}

	type tensorMeta struct {
		Name, Datatype string
		Shape          []int
	}
	var meta struct {
		Name            string
		Versions        []string
		Platform        string
		Inputs, Outputs []tensorMeta
	}
	for _, p := range []string{"/v2/models/iris", "/v2/models/iris/versions/3"} {
		decodeJSON(t, w.get(t, p).body, &meta)
		if meta.Name != "iris" || len(meta.Versions) != 1 || meta.Versions[0] != "3" || meta.Platform != "sluice_"+m.Kind ||
			len(meta.Inputs) != 1 || meta.Inputs[0].Datatype != "FP32" || len(meta.Inputs[0].Shape) != 2 || meta.Inputs[0].Shape[0] != -1 || meta.Inputs[0].Shape[1] != 4 ||
			len(meta.Outputs) != 3 || meta.Outputs[1].Name != "probabilities" || meta.Outputs[1].Shape[1] != 3 || meta.Outputs[0].Datatype != "BYTES" {
			t.Errorf("%s: %+v", p, meta)
		}
	}
	var server struct {
		Name, Version string
		Extensions    []string
	}
	decodeJSON(t, w.get(t, "/v2").body, &server)
	if server.Name != "sluice-modelworker" || server.Version != "1.2.3" || server.Extensions == nil {
		t.Errorf("/v2: %+v", server)
	}

	w.SetReady(false)
	if r := w.get(t, "/health"); r.status != 503 || !bytes.Contains(r.body, []byte(`"status":"draining"`)) {
		t.Errorf("unready /health: %d %s", r.status, r.body)
	}
	if r := w.get(t, "/v2/health/ready"); r.status != 503 || string(r.body) != `{"ready":false}` {
		t.Errorf("unready /v2/health/ready: %d %s", r.status, r.body)
	}
	if r := w.get(t, "/v2/models/iris/ready"); r.status != 503 {
		t.Errorf("unready model ready: %d %s", r.status, r.body)
	}
	if r := w.get(t, "/v2/health/live"); r.status != 200 {
		t.Errorf("unready but live: %d %s", r.status, r.body)
	}
}

// TestMetricsCountPredictionsByStatus: model_requests_total counts
// prediction requests by status, not health checks or metadata.
func TestMetricsCountPredictionsByStatus(t *testing.T) {
	w := startWorker(t, loadModel(t, "iris-v1.json"), Config{})
	for range 3 {
		w.post(t, "/predict", good)
	}
	w.post(t, "/predict", `{"input":[1]}`)
	w.post(t, "/v2/models/iris/infer", infer(`{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}`))
	w.get(t, "/health")
	w.get(t, "/v2/models/iris")

	r := w.get(t, "/metrics")
	if r.status != 200 {
		t.Fatalf("/metrics: %d", r.status)
	}
	text := string(r.body)
	for _, want := range []string{
		`model_requests_total{model="iris",status="200",version="1"} 4`,
		`model_requests_total{model="iris",status="400",version="1"} 1`,
		`model_requests_total{model="iris",status="hung",version="1"} 0`,
		`model_request_duration_seconds_count{model="iris",version="1"} 5`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in\n%s", want, grepLines(text, "model_"))
		}
	}
}

func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
