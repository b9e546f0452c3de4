package worker

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/valyala/fasthttp"
)

// call runs one request through the handler, without a socket.
func call(s *Server, method, path string, body []byte) (int, []byte) {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	req.SetBody(body)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	s.Handler(&ctx)
	return ctx.Response.StatusCode(), append([]byte(nil), ctx.Response.Body()...)
}

func fuzzServer(f *testing.F) *Server {
	s, err := New(loadModel(f, "iris-v2.json"), Config{})
	if err != nil {
		f.Fatal(err)
	}
	return s
}

// checkRefusal checks the properties of an answer to a refused request:
// a 4xx status and an {"error"} body with a message.
func checkRefusal(t *testing.T, body []byte, decodeErr error, status int, answer []byte) {
	t.Helper()
	code, msg := statusOf(decodeErr)
	if code < 400 || code > 499 || msg == "" {
		t.Fatalf("decode error %d %q for %q", code, msg, body)
	}
	if status != code {
		t.Fatalf("answered %d, the decoder said %d (%s) for %q", status, code, msg, body)
	}
	var e struct{ Error string }
	if err := json.Unmarshal(answer, &e); err != nil || e.Error != msg {
		t.Fatalf("error body %s (%v), want message %q", answer, err, msg)
	}
}

// finite checks that every probability is a number in [0,1].
func finite(t *testing.T, ps ...float64) {
	t.Helper()
	for _, p := range ps {
		if math.IsNaN(p) || p < 0 || p > 1 {
			t.Fatalf("probability %v", p)
		}
	}
}

// FuzzDecodePredict: whatever the body, /predict never panics or
// answers 5xx; a refusal is a 4xx with a message; a success has one
// prediction, probability map and confidence per row decoded.
func FuzzDecodePredict(f *testing.F) {
	for _, tc := range malformedPredict {
		if len(tc.body) < 4096 {
			f.Add([]byte(tc.body))
		}
	}
	f.Add([]byte(good))
	f.Add([]byte(`{"inputs":[[5.1,3.5,1.4,0.2],[6.3,3.3,6.0,2.5]]}`))
	f.Add([]byte(`{"data":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}]}`))
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		status, answer := call(s, "POST", "/predict", body)
		b, err := decodePredict(body, s.schema, nil)
		if err != nil {
			checkRefusal(t, body, err, status, answer)
			return
		}
		if status == fasthttp.StatusBadRequest { // the model refused the values: too large
			var e struct{ Error string }
			if json.Unmarshal(answer, &e) != nil || e.Error == "" {
				t.Fatalf("400 without a message: %s", answer)
			}
			return
		}
		if status != 200 {
			t.Fatalf("status %d for %q: %s", status, body, answer)
		}
		if b.single {
			var a singleAnswer
			if err := json.Unmarshal(answer, &a); err != nil || a.Prediction == "" || len(a.Probabilities) != 3 {
				t.Fatalf("answer %s (%v)", answer, err)
			}
			finite(t, a.Confidence)
			return
		}
		var a batchAnswer
		if err := json.Unmarshal(answer, &a); err != nil {
			t.Fatalf("answer %s: %v", answer, err)
		}
		if len(a.Predictions) != b.rows || len(a.Probabilities) != b.rows || len(a.Confidences) != b.rows {
			t.Fatalf("%d rows decoded, answer %s", b.rows, answer)
		}
		finite(t, a.Confidences...)
	})
}

// FuzzDecodeInfer: the same properties for the inference endpoint; a
// success has the outputs asked for, each of N or N×3 elements.
func FuzzDecodeInfer(f *testing.F) {
	for _, tc := range malformedInfer {
		if len(tc.body) < 4096 && tc.path == "" {
			f.Add([]byte(tc.body))
		}
	}
	f.Add([]byte(infer(`{"name":"x","shape":[3,4],"datatype":"FP32","data":[[5.1,3.5,1.4,0.2],[7.0,3.2,4.7,1.4],[6.3,3.3,6.0,2.5]]}`)))
	f.Add([]byte(`{"id":"7","inputs":[{"name":"x","shape":[4],"datatype":"FP64","data":[5.1,3.5,1.4,0.2]}],"outputs":[{"name":"label"}]}`))
	f.Add([]byte(columns("sepal_length", "sepal_width", "petal_length", "petal_width")))
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		status, answer := call(s, "POST", "/v2/models/iris/infer", body)
		ib, err := decodeInfer(body, s.schema, nil)
		if err != nil {
			checkRefusal(t, body, err, status, answer)
			return
		}
		if status == fasthttp.StatusBadRequest {
			var e struct{ Error string }
			if json.Unmarshal(answer, &e) != nil || e.Error == "" {
				t.Fatalf("400 without a message: %s", answer)
			}
			return
		}
		if status != 200 {
			t.Fatalf("status %d for %q: %s", status, body, answer)
		}
		var a inferAnswer
		if err := json.Unmarshal(answer, &a); err != nil {
			t.Fatalf("answer %s: %v", answer, err)
		}
		if a.ID != ib.id || len(a.Outputs) != len(ib.outputs) {
			t.Fatalf("answer %s for %q", answer, body)
		}
		for i, o := range a.Outputs {
			want := ib.rows
			if ib.outputs[i] == outProbabilities {
				want *= 3
			}
			n := 1
			for _, d := range o.Shape {
				n *= d
			}
			var data []any
			if err := json.Unmarshal(o.Data, &data); err != nil || len(data) != want || n != want {
				t.Fatalf("output %s: shape %v, %d elements, want %d (%v)", o.Name, o.Shape, len(data), want, err)
			}
		}
	})
}
