package worker

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// TestInferRequestFromTheProtocolDocument is acceptance point 4 of issue 3.
//
// The request is the one of "Inference Request Examples" in the Open
// Inference Protocol's REST document (kserve/open-inference-protocol,
// specification/protocol/inference_rest.md; the same text is
// docs/predict-api/v2/required_api.md in kserve/kserve):
//
//	POST /v2/models/mymodel/infer HTTP/1.1
//	Host: localhost:8000
//	Content-Type: application/json
//	Content-Length: <xx>
//	{
//	  "id" : "42",
//	  "inputs" : [
//	    {
//	      "name" : "input0",
//	      "shape" : [ 2, 2 ],
//	      "datatype" : "UINT32",
//	      "data" : [ 1, 2, 3, 4 ]
//	    },
//	    ...
//	  ],
//	  "outputs" : [ { "name" : "output0" } ]
//	}
//
// with the model's name, one input of this model's shape instead of the
// example's two (a batch of shape [3,4]: three rows of data/iris.csv, one
// per species), FP32 as the document's tensor types allow, and the
// outputs this model has. The document's Tensor Data section says data may
// come nested in the tensor's shape or flattened in row-major order; both
// are sent. The answer must be the document's $inference_response: the
// id echoed, model_name, model_version, and each output with name, shape,
// datatype and flat data.
func TestInferRequestFromTheProtocolDocument(t *testing.T) {
	nested := `[ [ 5.1, 3.5, 1.4, 0.2 ], [ 7.0, 3.2, 4.7, 1.4 ], [ 6.3, 3.3, 6.0, 2.5 ] ]`
	flat := `[ 5.1, 3.5, 1.4, 0.2, 7.0, 3.2, 4.7, 1.4, 6.3, 3.3, 6.0, 2.5 ]`
	for _, file := range shippedModels {
		m := loadModel(t, file)
		w := startWorker(t, m, Config{})
		for layout, data := range map[string]string{"nested": nested, "flat": flat} {
			t.Run(file+"/"+layout, func(t *testing.T) {
				body := `{
  "id" : "42",
  "inputs" : [
    {
      "name" : "input0",
      "shape" : [ 3, 4 ],
      "datatype" : "FP32",
      "data" : ` + data + `
    }
  ],
  "outputs" : [
    { "name" : "predictions" },
    { "name" : "probabilities" }
  ]
}`
				r := w.post(t, "/v2/models/iris/infer", body)
				if r.status != 200 {
					t.Fatalf("%d %s", r.status, r.body)
				}
				var a inferAnswer
				decodeJSON(t, r.body, &a)
				if a.ID != "42" || a.ModelName != "iris" || a.ModelVersion != m.Version || len(a.Outputs) != 2 {
					t.Fatalf("answer %s", r.body)
				}
				if a.Outputs[0].Name != "predictions" || a.Outputs[1].Name != "probabilities" {
					t.Errorf("outputs not in the order asked: %s", r.body)
				}
				pred := a.output(t, "predictions")
				if pred.Datatype != "BYTES" || fmt.Sprint(pred.Shape) != "[3]" {
					t.Errorf("predictions tensor %+v", pred)
				}
				if got := strings.Join(pred.strings(t), ","); got != "setosa,versicolor,virginica" {
					t.Errorf("predictions %s", got)
				}
				probs := a.output(t, "probabilities")
				if probs.Datatype != "FP32" || fmt.Sprint(probs.Shape) != "[3 3]" {
					t.Errorf("probabilities tensor %+v", probs)
				}
				p := probs.floats(t)
				if len(p) != 9 {
					t.Fatalf("%d probabilities", len(p))
				}
				for row := range 3 {
					sum := p[3*row] + p[3*row+1] + p[3*row+2]
					if math.Abs(sum-1) > 1e-5 {
						t.Errorf("row %d sums to %v", row, sum)
					}
					// Each row's predicted class has its highest probability.
					if best := p[3*row+row]; best < p[3*row] || best < p[3*row+1] || best < p[3*row+2] {
						t.Errorf("row %d: %v", row, p[3*row:3*row+3])
					}
				}
			})
		}
	}
}

// TestInferAgreesWithPredict: the two APIs give the same answers for the
// same rows, at the precision of the datatype asked.
func TestInferAgreesWithPredict(t *testing.T) {
	m := loadModel(t, "iris-v2.json")
	w := startWorker(t, m, Config{})
	var p batchAnswer
	decodeJSON(t, w.post(t, "/predict", `{"inputs":[`+rowJSON(setosaRow)+`,`+rowJSON(versicolorRow)+`]}`).body, &p)

	data := strings.Trim(rowJSON(append(append([]float64{}, setosaRow...), versicolorRow...)), "[]")
	var a inferAnswer
	decodeJSON(t, w.post(t, "/v2/models/iris/infer", infer(`{"name":"x","shape":[2,4],"datatype":"FP64","data":[`+data+`]}`)).body, &a)
	if got := a.output(t, "probabilities"); got.Datatype != "FP64" {
		t.Errorf("FP64 input gives %s probabilities", got.Datatype)
	}
	probs := a.output(t, "probabilities").floats(t)
	conf := a.output(t, "confidences").floats(t)
	for r := range 2 {
		for c, class := range m.Classes {
			if probs[3*r+c] != p.Probabilities[r][class] {
				t.Errorf("row %d %s: infer %v, predict %v", r, class, probs[3*r+c], p.Probabilities[r][class])
			}
		}
		if conf[r] != p.Confidences[r] {
			t.Errorf("row %d confidence: infer %v, predict %v", r, conf[r], p.Confidences[r])
		}
	}
}

// TestInferForms covers the protocol's other valid forms: one row of
// shape [4], integer datatypes, a versioned path, the columnar form, the
// label alias, and the default outputs.
func TestInferForms(t *testing.T) {
	w := startWorker(t, loadModel(t, "iris-v1.json"), Config{})
	for _, tc := range []struct {
		name, path, body string
		outputs          string // names of the outputs, in order
		predictions      string
	}{
		{"one row, default outputs", "/v2/models/iris/infer",
			infer(`{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}`),
			"predictions,probabilities,confidences", "setosa"},
		{"shape [1,4] nested", "/v2/models/iris/infer",
			infer(`{"name":"x","shape":[1,4],"datatype":"FP64","data":[[6.3,3.3,6.0,2.5]]}`),
			"predictions,probabilities,confidences", "virginica"},
		{"versioned path", "/v2/models/iris/versions/1/infer",
			infer(`{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}`),
			"predictions,probabilities,confidences", "setosa"},
		{"integers", "/v2/models/iris/infer",
			infer(`{"name":"x","shape":[2,4],"datatype":"INT64","data":[5,3,1,0,6,3,6,2]}`),
			"predictions,probabilities,confidences", "setosa,virginica"},
		{"label alias and parameters", "/v2/models/iris/infer",
			`{"parameters":{"content_type":"np"},"inputs":[{"name":"x","shape":[4],"datatype":"FP32","parameters":{},"data":[5.1,3.5,1.4,0.2]}],"outputs":[{"name":"label","parameters":{"binary_data":false}}]}`,
			"label", "setosa"},
		{"columns, any order", "/v2/models/iris/infer",
			`{"inputs":[` +
				`{"name":"petal_width","shape":[2],"datatype":"FP32","data":[0.2,2.5]},` +
				`{"name":"sepal_length","shape":[2],"datatype":"FP32","data":[5.1,6.3]},` +
				`{"name":"petal_length","shape":[2,1],"datatype":"FP32","data":[[1.4],[6.0]]},` +
				`{"name":"sepal_width","shape":[2],"datatype":"FP64","data":[3.5,3.3]}]}`,
			"predictions,probabilities,confidences", "setosa,virginica"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := w.post(t, tc.path, tc.body)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			var a inferAnswer
			decodeJSON(t, r.body, &a)
			var names []string
			for _, o := range a.Outputs {
				names = append(names, o.Name)
			}
			if got := strings.Join(names, ","); got != tc.outputs {
				t.Errorf("outputs %s, want %s", got, tc.outputs)
			}
			if a.ID != "" {
				t.Errorf("id %q without one in the request", a.ID)
			}
			pred := a.Outputs[0]
			if got := strings.Join(pred.strings(t), ","); got != tc.predictions {
				t.Errorf("predictions %s, want %s", got, tc.predictions)
			}
		})
	}
}
