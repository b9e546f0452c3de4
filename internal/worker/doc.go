// Package worker is the model worker's HTTP server (SPEC.md section 7): one
// model version from internal/model, served on fasthttp.
//
// # Endpoints
//
//	POST /predict                         the simple JSON API below
//	POST /v2/models/{name}[/versions/{v}]/infer   Open Inference Protocol (KServe v2)
//	GET  /v2/models/{name}[/versions/{v}]         OIP model metadata
//	GET  /v2/models/{name}[/versions/{v}]/ready   OIP model readiness: {"name","ready"}
//	GET  /v2                              OIP server metadata: {"name","version","extensions"}
//	GET  /v2/health/live                  200 {"live":true}
//	GET  /v2/health/ready                 200 {"ready":true}, or 503 {"ready":false} while draining
//	GET  /health                          200 {"status":"healthy","model","version"}, or 503 {"status":"draining",...}
//	GET  /model/info                      {"name","version","kind","features","classes","max_batch"}
//	GET  /metrics                         Prometheus text format
//
// A path that is not listed gets 404, a listed path with another method 405
// with an Allow header; every error body is {"error":"message"}, the error
// object of the Open Inference Protocol, on both APIs.
//
// # POST /predict
//
// The body holds exactly one of three keys:
//
//	{"input":[5.1,3.5,1.4,0.2]}                          one row, values in the model's feature order
//	{"inputs":[[5.1,3.5,1.4,0.2],[6.7,3.0,5.2,2.3]]}     a batch of rows
//	{"data":[{"sepal_length":5.1,"sepal_width":3.5,...}]} a batch of records keyed by feature name
//
// One row ("input") gets the singular answer:
//
//	{"prediction":"setosa",
//	 "probabilities":{"setosa":0.97,"versicolor":0.02,"virginica":0.01},
//	 "confidence":0.97,"model":"iris","model_version":"1"}
//
// A batch ("inputs" or "data", even of one row) always gets the plural
// answer, each list in row order:
//
//	{"predictions":["setosa","virginica"],
//	 "probabilities":[{"setosa":0.97,...},{"setosa":0.01,...}],
//	 "confidences":[0.97,0.91],"model":"iris","model_version":"1"}
//
// The keys of each probability map are the model's classes in class order.
// The shape of the answer depends only on the key the client chose, never on
// the number of rows, so a client needs no length test to read it.
//
// # POST /v2/models/{name}/infer
//
// The request follows the protocol's $inference_request: one input tensor
// of any name with shape [4] (one row) or [N,4] (N rows), datatype FP32 or
// FP64 (INT8..INT64 and UINT8..UINT64 are accepted when every value is an
// integer in range), and "data" either flat in row-major order or nested
// to match the shape exactly. Alternatively one tensor per feature, each
// named after its feature with shape [N] or [N,1] (the columnar form some
// clients send). The outputs, all by default or those named in "outputs":
//
//	predictions    BYTES [N]    class names ("label" is accepted as a name for the same tensor)
//	probabilities  FP32  [N,C]  per row, in class order (FP64 when the input was FP64)
//	confidences    FP32  [N]    the probability of the predicted class (FP64 likewise)
//
// The response is $inference_response: {"model_name","model_version","id"
// (echoed when the request had one),"outputs":[{"name","shape","datatype","data"}]},
// with data flat in row-major order.
//
// # Limits and errors
//
// A batch holds 1 to MaxBatch (default 1000) rows. Every malformed body
// (invalid JSON, trailing data, unknown keys, wrong shapes, wrong feature
// counts, strings, null, NaN or infinite values, numbers that overflow a
// float64, empty inputs or batches, unknown or missing feature names) gets
// 400 with a message that names the problem and, where it has one, the
// position (inputs[2][3]). A body over MaxBodyBytes gets 413. An infer
// request for another model name or version gets 404.
//
// # Faults
//
// For demos and fault tests, prediction requests (never health, metadata or
// metrics) can be slowed (Latency ± uniform Jitter), failed (FailRate of
// them answered FailStatus with a JSON error) or hung (HangRate of them
// accepted and never answered: the connection is taken over from the HTTP
// server and held, unanswered, until the client closes it or the server
// shuts down).
//
// Two more options make answers differ between two identical requests,
// for demos and tests of shadow comparison. Timestamp adds the time the
// answer was made, RFC 3339 with nanoseconds in UTC, to each successful
// answer: "timestamp" before "model" in /predict answers, and
// "parameters":{"timestamp":...} in infer answers. Perturb adds uniform
// noise in [-Amount,+Amount] to "confidence" (every row's confidence,
// the confidences tensor) or "probabilities.CLASS" (every row's
// probability of that class, in the map and the probabilities tensor),
// after the prediction is made: the predicted class never changes, and
// the numbers are not clamped or renormalised. Both are off by default,
// and then the answers are byte for byte as without them.
//
// # Metrics
//
// model_requests_total{model,version,status} counts prediction requests by
// HTTP status, and status="hung" for the hung ones;
// model_request_duration_seconds{model,version} times them, injected
// latency included. Each Server has its own registry.
package worker
