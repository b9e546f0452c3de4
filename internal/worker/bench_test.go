package worker

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// benchHandler runs body through the handler b.N times on one reused
// RequestCtx, as fasthttp does per connection, without a socket.
func benchHandler(b *testing.B, path, body string) {
	s, err := New(loadModel(b, "iris-v1.json"), Config{})
	if err != nil {
		b.Fatal(err)
	}
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI(path)
	req.Header.SetContentType("application/json")
	req.SetBodyString(body)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		s.Handler(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// BenchmarkPredict is one row through POST /predict: decode, predict,
// answer, metrics (acceptance point 6 of issue 3, with wrk in README).
func BenchmarkPredict(b *testing.B) {
	benchHandler(b, "/predict", `{"input":[5.1,3.5,1.4,0.2]}`)
}

func BenchmarkPredictBatch100(b *testing.B) {
	benchHandler(b, "/predict", `{"inputs":[`+strings.TrimSuffix(strings.Repeat(`[6.3,3.3,6.0,2.5],`, 100), ",")+`]}`)
}

func BenchmarkPredictRecords(b *testing.B) {
	benchHandler(b, "/predict", `{"data":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}]}`)
}

func BenchmarkInfer(b *testing.B) {
	benchHandler(b, "/v2/models/iris/infer",
		`{"id":"42","inputs":[{"name":"input0","shape":[3,4],"datatype":"FP32","data":[[5.1,3.5,1.4,0.2],[7.0,3.2,4.7,1.4],[6.3,3.3,6.0,2.5]]}]}`)
}
