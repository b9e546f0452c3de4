// Package soaktest holds the soak: the gateway and model worker binaries,
// a real Redis and six model workers run as a dev-like stack under a
// constant-rate load while a fault schedule runs (workers killed,
// hung and failing, Redis stopped, the config rewritten with valid and
// invalid files, a flood of distinct rate-limit keys). TestSoak asserts
// that no request fails except those in flight on a killed worker, that
// the gateway never panics, that its resident memory and goroutines stay
// flat, and that every invalid config is rejected while the previous one
// keeps serving.
//
// `go test ./...` (and so `make test`) runs it for 60 s (SOAK_DURATION
// changes that; -short skips it); `make soak` runs it for 5 minutes
// through scripts/soak.sh and prints the report.
package soaktest
