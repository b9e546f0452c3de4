package worker

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/model"
)

// Three rows of data/iris.csv, one per species: rows 1, 51 and 101 of the
// file (after the header).
var (
	setosaRow     = []float64{5.1, 3.5, 1.4, 0.2}
	versicolorRow = []float64{7.0, 3.2, 4.7, 1.4}
	virginicaRow  = []float64{6.3, 3.3, 6.0, 2.5}
)

// shippedModels are the model files the repository ships.
var shippedModels = []string{"iris-v1.json", "iris-v2.json", "iris-v3.json"}

// loadModel loads a shipped model file.
func loadModel(t testing.TB, name string) *model.Model {
	t.Helper()
	m, err := model.Load("../../models/" + name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return m
}

// testWorker is a Server on a loopback port with a client for it.
type testWorker struct {
	*Server
	addr   string
	client *fasthttp.HostClient
}

// startWorker serves m with cfg on a loopback port until the test ends.
func startWorker(t testing.TB, m *model.Model, cfg Config) *testWorker {
	t.Helper()
	s, err := New(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.Shutdown(t.Context())
		<-served
	})
	addr := ln.Addr().String()
	return &testWorker{Server: s, addr: addr, client: &fasthttp.HostClient{
		Addr: addr, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		MaxIdemponentCallAttempts: 1, MaxResponseBodySize: 64 << 20,
	}}
}

// response is what a test looks at of an answer.
type response struct {
	status int
	header *fasthttp.ResponseHeader
	body   []byte
}

// do sends one request and returns the answer.
func (w *testWorker) do(t testing.TB, method, path, body string) response {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://" + w.addr + path)
	if body != "" {
		req.Header.SetContentType("application/json")
		req.SetBodyString(body)
	}
	if err := w.client.Do(req, resp); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	r := response{status: resp.StatusCode(), body: append([]byte(nil), resp.Body()...), header: new(fasthttp.ResponseHeader)}
	resp.Header.CopyTo(r.header)
	return r
}

func (w *testWorker) post(t testing.TB, path, body string) response {
	t.Helper()
	return w.do(t, "POST", path, body)
}

func (w *testWorker) get(t testing.TB, path string) response {
	t.Helper()
	return w.do(t, "GET", path, "")
}

// decodeJSON decodes an answer body strictly into v.
func decodeJSON(t testing.TB, body []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}

// errorMessage returns the message of an {"error": ...} body, failing the
// test if the body is not exactly that.
func errorMessage(t testing.TB, body []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	decodeJSON(t, body, &e)
	if e.Error == "" {
		t.Fatalf("error body without a message: %s", body)
	}
	return e.Error
}

// singleAnswer is the /predict answer to one row.
type singleAnswer struct {
	Prediction    string             `json:"prediction"`
	Probabilities map[string]float64 `json:"probabilities"`
	Confidence    float64            `json:"confidence"`
	Model         string             `json:"model"`
	ModelVersion  string             `json:"model_version"`
}

// batchAnswer is the /predict answer to a batch.
type batchAnswer struct {
	Predictions   []string             `json:"predictions"`
	Probabilities []map[string]float64 `json:"probabilities"`
	Confidences   []float64            `json:"confidences"`
	Model         string               `json:"model"`
	ModelVersion  string               `json:"model_version"`
}

// inferAnswer is $inference_response.
type inferAnswer struct {
	ModelName    string        `json:"model_name"`
	ModelVersion string        `json:"model_version"`
	ID           string        `json:"id"`
	Outputs      []inferOutput `json:"outputs"`
}

type inferOutput struct {
	Name     string          `json:"name"`
	Shape    []int           `json:"shape"`
	Datatype string          `json:"datatype"`
	Data     json.RawMessage `json:"data"`
}

// output returns the named output tensor.
func (a *inferAnswer) output(t testing.TB, name string) inferOutput {
	t.Helper()
	for _, o := range a.Outputs {
		if o.Name == name {
			return o
		}
	}
	t.Fatalf("no output %q in %+v", name, a.Outputs)
	return inferOutput{}
}

// strings and floats decode an output's data.
func (o inferOutput) strings(t testing.TB) []string {
	t.Helper()
	var s []string
	if err := json.Unmarshal(o.Data, &s); err != nil {
		t.Fatalf("%s data: %v", o.Name, err)
	}
	return s
}

func (o inferOutput) floats(t testing.TB) []float64 {
	t.Helper()
	var f []float64
	if err := json.Unmarshal(o.Data, &f); err != nil {
		t.Fatalf("%s data: %v", o.Name, err)
	}
	return f
}

// rowJSON writes a row as a JSON array.
func rowJSON(row []float64) string {
	b, _ := json.Marshal(row)
	return string(b)
}

// wantErrors checks that err mentions every piece of want, or that err is
// nil when want is empty. It reports whether an error was expected, so the
// caller can go on checking that the same config is refused elsewhere.
func wantErrors(t *testing.T, err error, want []string) bool {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatal(err)
		}
		return false
	}
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q does not contain %q", err, w)
		}
	}
	return true
}
