package worker

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// statusHung is the status label of requests the worker accepted and,
// by the hang fault, never answered.
const statusHung = "hung"

// Buckets from 0.1 ms to 10 s: a prediction takes microseconds, injected
// latency milliseconds to seconds.
var durationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// metrics holds the worker's collectors in their own registry, so that
// several workers can live in one test process. The hot path resolves no
// label values: status codes index a table of counters made on first use.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration prometheus.Observer
	hung     prometheus.Counter
	model    string
	version  string
	codes    [600]atomic.Pointer[prometheus.Counter]
	handler  fasthttp.RequestHandler
}

func newMetrics(model, version string) *metrics {
	m := &metrics{registry: prometheus.NewRegistry(), model: model, version: version}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "model_requests_total",
		Help: `Prediction requests (POST /predict and /v2/models/{name}/infer) by model, version and HTTP status; status="hung" for those the hang fault never answered.`,
	}, []string{"model", "version", "status"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "model_request_duration_seconds",
		Help:    "Time to answer a prediction request, injected latency included, by model and version.",
		Buckets: durationBuckets,
	}, []string{"model", "version"})
	m.registry.MustRegister(m.requests, duration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.duration = duration.WithLabelValues(model, version)
	m.hung = m.requests.WithLabelValues(model, version, statusHung)
	// The usual series exist from the start, so that rate() over them
	// works before the first request.
	m.counter(fasthttp.StatusOK)
	m.counter(fasthttp.StatusBadRequest)
	m.handler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	return m
}

// observe records one answered prediction request.
func (m *metrics) observe(status int, took time.Duration) {
	m.counter(status).Inc()
	m.duration.Observe(took.Seconds())
}

func (m *metrics) counter(status int) prometheus.Counter {
	if status < 0 || status >= len(m.codes) {
		status = 0
	}
	if c := m.codes[status].Load(); c != nil {
		return *c
	}
	c := m.requests.WithLabelValues(m.model, m.version, strconv.Itoa(status))
	m.codes[status].Store(&c)
	return c
}
