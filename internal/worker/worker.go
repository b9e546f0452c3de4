package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/model"
)

// Defaults of the Config fields whose zero value means "default".
const (
	DefaultMaxBatch     = 1000
	DefaultMaxBodyBytes = 8 << 20
	DefaultFailStatus   = fasthttp.StatusInternalServerError
)

const contentJSON = "application/json"

// Config is how a worker serves its model.
type Config struct {
	// Latency is waited before answering each prediction request.
	// Default and zero value: no wait.
	Latency time.Duration
	// Jitter spreads Latency uniformly over [Latency-Jitter,
	// Latency+Jitter], floored at zero. Default and zero value: none.
	Jitter time.Duration
	// FailRate is the fraction of prediction requests answered with
	// FailStatus and {"error":"injected failure"}, from 0 to 1. Default
	// and zero value: none.
	FailRate float64
	// FailStatus is the status of the failed requests, 100 to 599.
	// Zero value: 500.
	FailStatus int
	// HangRate is the fraction of prediction requests accepted and never
	// answered, from 0 to 1; HangRate+FailRate may not pass 1. Default
	// and zero value: none.
	HangRate float64
	// Timestamp adds "timestamp", the time the answer was made (RFC 3339
	// with nanoseconds, in UTC), before "model" in each successful
	// /predict answer, and as "parameters":{"timestamp":...} to each
	// infer answer, as some model servers stamp theirs. Default and zero
	// value: off, and the answers are as without it, byte for byte.
	Timestamp bool
	// Perturb adds uniform noise to numeric outputs of each successful
	// prediction (see Perturbation), on both APIs; the predicted classes
	// are never changed. Each field at most once. Default and zero
	// value: none.
	Perturb Perturbations
	// MaxBatch is the most rows one request may hold. Zero value: 1000.
	MaxBatch int
	// MaxBodyBytes is the largest request body; a larger one gets 413.
	// Zero value: 8 MiB.
	MaxBodyBytes int
	// ServerVersion is reported by GET /v2. Zero value: "dev".
	ServerVersion string
}

// Validate returns every problem with the config at once, except those
// that depend on the model: see ValidateFor.
func (c Config) Validate() error {
	var errs []error
	if err := c.validateFaults(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("max batch must not be negative, got %d", c.MaxBatch))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("max body size must not be negative, got %d", c.MaxBodyBytes))
	}
	return errors.Join(errs...)
}

// ValidateFor returns every problem with the config for serving m: those
// of Validate, and the -perturb fields, which must name an output of m
// (its classes). m must not be nil.
func (c Config) ValidateFor(m *model.Model) error {
	return errors.Join(c.Validate(), validatePerturbFields(c.Perturb, m.Name, m.Classes))
}

func (c Config) withDefaults() Config {
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.FailStatus == 0 {
		c.FailStatus = DefaultFailStatus
	}
	if c.ServerVersion == "" {
		c.ServerVersion = "dev"
	}
	return c
}

// Server serves one model over HTTP.
type Server struct {
	model   *model.Model
	cfg     Config
	schema  *schema
	faults  *faults
	metrics *metrics
	hangs   hangs
	ready   atomic.Bool
	http    *fasthttp.Server
	scratch sync.Pool // *scratch

	// JSON pieces built once.
	classKeys  [][]byte // `"setosa":`, one per class
	classNames [][]byte // `"setosa"`
	nameJSON   []byte   // `"iris"`
	tail       []byte   // `,"model":"iris","model_version":"1"}`
	inferHead  []byte   // `{"model_name":"iris","model_version":"1"`
	infoBody   []byte   // GET /model/info
	metaBody   []byte   // GET /v2/models/{name}
	serverBody []byte   // GET /v2
	readyModel [2][]byte
	healthBody [2][]byte // [0] draining, [1] healthy
}

// scratch is the per-request memory, pooled so that a prediction does not
// allocate for its values, probabilities or answer.
type scratch struct {
	values []float64
	probs  []float64
	best   []int
	conf   []float64 // per row, the probability of its best class as answered
	out    []byte
}

// New builds a server for m. It is ready (GET /health answers 200) from
// the start; Shutdown makes it unready.
func New(m *model.Model, cfg Config) (*Server, error) {
	if m == nil || len(m.Features) == 0 || len(m.Classes) == 0 {
		return nil, errors.New("worker: the model has no features or no classes")
	}
	if err := cfg.ValidateFor(m); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{
		model:   m,
		cfg:     cfg,
		schema:  newSchema(m.Features, cfg.MaxBatch),
		faults:  newFaults(cfg, m.Classes),
		metrics: newMetrics(m.Name, m.Version),
	}
	s.scratch.New = func() any { return new(scratch) }
	s.buildBodies()
	s.ready.Store(true)
	s.http = &fasthttp.Server{
		Handler:                      s.Handler,
		ErrorHandler:                 errorHandler(cfg.MaxBodyBytes),
		Name:                         "sluice-modelworker",
		MaxRequestBodySize:           cfg.MaxBodyBytes,
		ReadTimeout:                  30 * time.Second,
		WriteTimeout:                 30 * time.Second,
		IdleTimeout:                  2 * time.Minute,
		CloseOnShutdown:              true,
		DisablePreParseMultipartForm: true,
		NoDefaultContentType:         true,
		// fasthttp would log every broken connection; the worker logs
		// events, not requests (the errors reach clients and metrics).
		Logger: quietLogger{},
	}
	return s, nil
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// errorHandler answers requests fasthttp could not read, in JSON like
// every other error.
func errorHandler(maxBody int) func(*fasthttp.RequestCtx, error) {
	return func(ctx *fasthttp.RequestCtx, err error) {
		var small *fasthttp.ErrSmallBuffer
		var netErr net.Error
		switch {
		case errors.Is(err, fasthttp.ErrBodyTooLarge):
			writeError(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("request body too large: the limit is %d bytes", maxBody))
		case errors.As(err, &small):
			writeError(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "request headers too large")
		case errors.As(err, &netErr) && netErr.Timeout():
			writeError(ctx, fasthttp.StatusRequestTimeout, "timed out reading the request")
		default:
			writeError(ctx, fasthttp.StatusBadRequest, "malformed HTTP request: "+err.Error())
		}
	}
}

// Serve answers connections from ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.http.Serve(ln) }

// Shutdown stops accepting, marks the worker unready, lets requests in
// flight finish, and ends hung ones. It returns ctx.Err() if ctx ends
// first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.ready.Store(false)
	s.hangs.release()
	return s.http.ShutdownWithContext(ctx)
}

// SetReady sets what the readiness endpoints answer.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Handler routes one request. It is exported so that tests and benchmarks
// can call it without a socket.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	switch string(path) {
	case "/predict":
		if allow(ctx, "POST") {
			s.prediction(ctx, s.servePredict)
		}
	case "/health":
		if allowGet(ctx) {
			s.serveHealth(ctx)
		}
	case "/model/info":
		if allowGet(ctx) {
			writeJSON(ctx, fasthttp.StatusOK, s.infoBody)
		}
	case "/metrics":
		if allowGet(ctx) {
			s.metrics.handler(ctx)
		}
	case "/v2":
		if allowGet(ctx) {
			writeJSON(ctx, fasthttp.StatusOK, s.serverBody)
		}
	case "/v2/health/live":
		if allowGet(ctx) {
			writeJSON(ctx, fasthttp.StatusOK, []byte(`{"live":true}`))
		}
	case "/v2/health/ready":
		if allowGet(ctx) {
			if s.ready.Load() {
				writeJSON(ctx, fasthttp.StatusOK, []byte(`{"ready":true}`))
			} else {
				writeJSON(ctx, fasthttp.StatusServiceUnavailable, []byte(`{"ready":false}`))
			}
		}
	default:
		if rest, ok := bytes.CutPrefix(path, []byte("/v2/models/")); ok {
			s.routeModel(ctx, rest)
			return
		}
		writeError(ctx, fasthttp.StatusNotFound, "no such path "+quoteShort(string(path)))
	}
}

// routeModel serves /v2/models/{name}[/versions/{version}][/ready|/infer].
func (s *Server) routeModel(ctx *fasthttp.RequestCtx, rest []byte) {
	name, tail, _ := bytes.Cut(rest, []byte("/"))
	var version []byte
	if v, ok := bytes.CutPrefix(tail, []byte("versions/")); ok {
		version, tail, _ = bytes.Cut(v, []byte("/"))
	}
	var serve func()
	switch string(tail) {
	case "":
		if allowGet(ctx) {
			serve = func() { writeJSON(ctx, fasthttp.StatusOK, s.metaBody) }
		}
	case "ready":
		if allowGet(ctx) {
			serve = func() {
				if s.ready.Load() {
					writeJSON(ctx, fasthttp.StatusOK, s.readyModel[1])
				} else {
					writeJSON(ctx, fasthttp.StatusServiceUnavailable, s.readyModel[0])
				}
			}
		}
	case "infer":
		if allow(ctx, "POST") {
			serve = func() { s.prediction(ctx, s.serveInfer) }
		}
	default:
		writeError(ctx, fasthttp.StatusNotFound, "no such path "+quoteShort(string(ctx.Path())))
		return
	}
	if serve == nil { // 405 written
		return
	}
	switch {
	case string(name) != s.model.Name:
		writeError(ctx, fasthttp.StatusNotFound, fmt.Sprintf("unknown model %s: this worker serves %q", quoteShort(string(name)), s.model.Name))
	case version != nil && string(version) != s.model.Version:
		writeError(ctx, fasthttp.StatusNotFound, fmt.Sprintf("model %q has no version %s: this worker serves version %q",
			s.model.Name, quoteShort(string(version)), s.model.Version))
	default:
		serve()
	}
}

// allow answers 405 with an Allow header unless the request's method is
// method.
func allow(ctx *fasthttp.RequestCtx, method string) bool {
	if string(ctx.Method()) == method {
		return true
	}
	ctx.Response.Header.Set("Allow", method)
	writeError(ctx, fasthttp.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed here: use %s", quoteShort(string(ctx.Method())), method))
	return false
}

func allowGet(ctx *fasthttp.RequestCtx) bool {
	if ctx.IsGet() || ctx.IsHead() {
		return true
	}
	ctx.Response.Header.Set("Allow", "GET, HEAD")
	writeError(ctx, fasthttp.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed here: use GET", quoteShort(string(ctx.Method()))))
	return false
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.SetStatusCode(status)
	ctx.SetContentType(contentJSON)
	ctx.SetBody(body)
}

// prediction runs a prediction endpoint: faults first, then serve, which
// answers and returns the status; and the metrics of both.
func (s *Server) prediction(ctx *fasthttp.RequestCtx, serve func(*fasthttp.RequestCtx) int) {
	start := time.Now()
	f := s.faults.decide()
	if f == faultHang {
		s.metrics.hung.Inc()
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(s.hangs.hold)
		return
	}
	if d := s.faults.delay(); d > 0 {
		time.Sleep(d)
	}
	var status int
	if f == faultFail {
		status = s.cfg.FailStatus
		writeError(ctx, status, fmt.Sprintf("injected failure (-fail-rate %v)", s.faults.failRate))
	} else {
		status = serve(ctx)
	}
	s.metrics.observe(status, time.Since(start))
}

// servePredict answers POST /predict.
func (s *Server) servePredict(ctx *fasthttp.RequestCtx) int {
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	b, err := decodePredict(ctx.PostBody(), s.schema, sc.values)
	if b.values != nil { // keep the grown buffer for the next request
		sc.values = b.values[:0]
	}
	if err == nil {
		err = s.run(&b, sc)
	}
	if err != nil {
		status, msg := statusOf(err)
		writeError(ctx, status, msg)
		return status
	}
	sc.out = s.appendPredict(sc.out[:0], &b, sc)
	writeJSON(ctx, fasthttp.StatusOK, sc.out)
	return fasthttp.StatusOK
}

// serveInfer answers POST /v2/models/{name}/infer.
func (s *Server) serveInfer(ctx *fasthttp.RequestCtx) int {
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	ib, err := decodeInfer(ctx.PostBody(), s.schema, sc.values)
	if ib.values != nil {
		sc.values = ib.values[:0]
	}
	if err == nil {
		err = s.run(&ib.batch, sc)
	}
	if err != nil {
		status, msg := statusOf(err)
		writeError(ctx, status, msg)
		return status
	}
	sc.out = s.appendInfer(sc.out[:0], &ib, sc)
	writeJSON(ctx, fasthttp.StatusOK, sc.out)
	return fasthttp.StatusOK
}

// run predicts every row of b into sc.probs, sc.best and sc.conf, and
// adds the -perturb noise, if any, to the numbers.
func (s *Server) run(b *batch, sc *scratch) error {
	nf, nc := len(s.model.Features), len(s.model.Classes)
	if len(b.values) != b.rows*nf { // the decoders guarantee it; a bug otherwise
		return internalError(fmt.Errorf("%d values for %d rows", len(b.values), b.rows))
	}
	sc.probs = grow(sc.probs, b.rows*nc)
	sc.best, sc.conf = sc.best[:0], sc.conf[:0]
	for r := 0; r < b.rows; r++ {
		p := sc.probs[r*nc : (r+1)*nc]
		if err := s.model.Predict(b.values[r*nf:(r+1)*nf], p); err != nil {
			if errors.Is(err, model.ErrBadInput) {
				return badRequest("%s: %v", b.rowName(r), err)
			}
			return internalError(err)
		}
		for _, v := range p {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return badRequest("%s: the values are too large for the model: its output is not a finite number", b.rowName(r))
			}
		}
		class, _ := s.model.Best(p)
		best := s.classIndex(class, p)
		sc.best = append(sc.best, best)
		sc.conf = append(sc.conf, p[best])
	}
	if s.faults.perturbing {
		s.faults.perturb(sc.probs, sc.conf, nc)
	}
	return nil
}

// classIndex finds the index of the class Best named.
func (s *Server) classIndex(class string, p []float64) int {
	for i, c := range s.model.Classes {
		if c == class {
			return i
		}
	}
	best := 0 // Best named no class: a bug in the model; fall back to argmax
	for i, v := range p {
		if v > p[best] {
			best = i
		}
	}
	return best
}

func grow(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}

// serveHealth answers GET /health.
func (s *Server) serveHealth(ctx *fasthttp.RequestCtx) {
	if s.ready.Load() {
		writeJSON(ctx, fasthttp.StatusOK, s.healthBody[1])
		return
	}
	writeJSON(ctx, fasthttp.StatusServiceUnavailable, s.healthBody[0])
}

// buildBodies builds the fixed answers and the JSON pieces of the
// prediction answers once.
func (s *Server) buildBodies() {
	m := s.model
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err) // only maps and strings: cannot fail
		}
		return b
	}
	for _, c := range m.Classes {
		name := mustJSON(c)
		s.classNames = append(s.classNames, name)
		s.classKeys = append(s.classKeys, append(append([]byte{}, name...), ':'))
	}
	s.nameJSON = mustJSON(m.Name)
	s.tail = fmt.Appendf(nil, `,"model":%s,"model_version":%s}`, s.nameJSON, mustJSON(m.Version))
	s.inferHead = fmt.Appendf(nil, `{"model_name":%s,"model_version":%s`, s.nameJSON, mustJSON(m.Version))

	s.infoBody = mustJSON(map[string]any{
		"name": m.Name, "version": m.Version, "kind": m.Kind,
		"features": m.Features, "classes": m.Classes, "max_batch": s.cfg.MaxBatch,
	})
	type tensorMeta struct {
		Name     string  `json:"name"`
		Datatype string  `json:"datatype"`
		Shape    []int64 `json:"shape"`
	}
	nf, nc := int64(len(m.Features)), int64(len(m.Classes))
	s.metaBody = mustJSON(struct {
		Name     string       `json:"name"`
		Versions []string     `json:"versions"`
		Platform string       `json:"platform"`
		Inputs   []tensorMeta `json:"inputs"`
		Outputs  []tensorMeta `json:"outputs"`
	}{
		Name: m.Name, Versions: []string{m.Version}, Platform: "sluice_" + m.Kind,
		Inputs: []tensorMeta{{Name: "input", Datatype: "FP32", Shape: []int64{-1, nf}}},
		Outputs: []tensorMeta{
			{Name: outputNames[outPredictions], Datatype: "BYTES", Shape: []int64{-1}},
			{Name: outputNames[outProbabilities], Datatype: "FP32", Shape: []int64{-1, nc}},
			{Name: outputNames[outConfidences], Datatype: "FP32", Shape: []int64{-1}},
		},
	})
	s.serverBody = mustJSON(map[string]any{"name": "sluice-modelworker", "version": s.cfg.ServerVersion, "extensions": []string{}})
	s.readyModel[0] = mustJSON(map[string]any{"name": m.Name, "ready": false})
	s.readyModel[1] = mustJSON(map[string]any{"name": m.Name, "ready": true})
	s.healthBody[0] = mustJSON(map[string]any{"status": "draining", "model": m.Name, "version": m.Version})
	s.healthBody[1] = mustJSON(map[string]any{"status": "healthy", "model": m.Name, "version": m.Version})
}

// LogAttrs are the attributes of the worker's start line.
func (s *Server) LogAttrs() []slog.Attr {
	return []slog.Attr{
		slog.String("model", s.model.Name), slog.String("version", s.model.Version), slog.String("kind", s.model.Kind),
		slog.Int("features", len(s.model.Features)), slog.String("classes", strings.Join(s.model.Classes, ",")),
	}
}
