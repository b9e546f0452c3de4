// Command modelworker serves one model version over HTTP (SPEC.md section
// 7; the endpoints are described in internal/worker), and trains the
// models it serves.
//
//	modelworker [serve] -model FILE -listen ADDR [-latency 5ms] [-jitter 2ms]
//	            [-fail-rate 0] [-fail-status 500] [-hang-rate 0]
//	            [-timestamp] [-perturb FIELD=AMOUNT[,FIELD=AMOUNT...]]...
//	modelworker train -data FILE.csv -kind softmax|mlp -out FILE.json ...
//	modelworker version
//
// -timestamp stamps each prediction answer with the time it was made;
// -perturb adds uniform noise in [-AMOUNT,+AMOUNT] to an output of each
// prediction, FIELD being confidence or probabilities.CLASS (the flag
// repeats). Both are for demos and tests of shadow comparison: they make
// two answers to the same request differ.
//
// SIGTERM or SIGINT drains: the worker stops accepting, answers what is in
// flight, drops hung requests, and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/sluice-gw/sluice/internal/model"
	"github.com/sluice-gw/sluice/internal/worker"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	// A leading flag means "serve" with flags, except the help flags.
	if len(args) > 0 && len(args[0]) > 0 && (args[0][0] != '-' || args[0] == "-h" || args[0] == "--help") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve", "run":
		return serve(args, stderr)
	case "train":
		return trainMain(args, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "sluice modelworker %s (commit %s, %s, %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "modelworker: unknown command %q\n\n", cmd)
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  modelworker [serve] -model FILE -listen ADDR [flags]   serve one model (modelworker serve -h for the flags)
  modelworker train -data FILE.csv -kind softmax|mlp -out FILE.json ...
                                                         train a model (modelworker train -h)
  modelworker version                                    print version, commit and Go version
`)
}

// serve runs the worker until a signal.
func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("modelworker serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	modelPath := fs.String("model", "", "model file (JSON, as written by modelworker train); required")
	listen := fs.String("listen", "127.0.0.1:8000", "address to listen on")
	var cfg worker.Config
	fs.DurationVar(&cfg.Latency, "latency", 0, "wait this long before answering each prediction request (fault injection)")
	fs.DurationVar(&cfg.Jitter, "jitter", 0, "spread -latency uniformly by ± this much")
	fs.Float64Var(&cfg.FailRate, "fail-rate", 0, "fraction of prediction requests answered -fail-status, 0 to 1")
	fs.IntVar(&cfg.FailStatus, "fail-status", worker.DefaultFailStatus, "HTTP status of the failed requests, 100 to 599")
	fs.Float64Var(&cfg.HangRate, "hang-rate", 0, "fraction of prediction requests accepted and never answered, 0 to 1")
	fs.BoolVar(&cfg.Timestamp, "timestamp", false, `add "timestamp" (RFC 3339, UTC) to each prediction answer`)
	fs.Var(&cfg.Perturb, "perturb", "add uniform noise in [-AMOUNT,+AMOUNT] to an output of each prediction, as `FIELD=AMOUNT`:\n"+
		"FIELD confidence or probabilities.CLASS, AMOUNT 0 to 1; repeat the flag or separate entries with commas")
	drain := fs.Duration("drain-timeout", 15*time.Second, "on SIGTERM, how long requests in flight may take to finish")
	logFormat := fs.String("log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "modelworker: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var problems []error
	if *modelPath == "" {
		problems = append(problems, errors.New("-model is required"))
	}
	if err := cfg.Validate(); err != nil {
		problems = append(problems, err)
	}
	if *drain <= 0 {
		problems = append(problems, fmt.Errorf("-drain-timeout must be positive, got %v", *drain))
	}
	log, err := newLogger(stderr, *logFormat)
	if err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "modelworker: %v\n", errors.Join(problems...))
		return 2
	}
	cfg.ServerVersion = version

	m, err := model.Load(*modelPath)
	if err != nil {
		fmt.Fprintf(stderr, "modelworker: %v\n", err)
		return 1
	}
	if err := cfg.ValidateFor(m); err != nil { // -perturb names the model's classes
		fmt.Fprintf(stderr, "modelworker: %v\n", err)
		return 2
	}
	w, err := worker.New(m, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "modelworker: %v\n", err)
		return 1
	}
	// Signals are caught before the port opens, so that a supervisor that
	// sees the port answer can stop the worker cleanly at once.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "modelworker: %v\n", err)
		return 1
	}
	attrs := append(w.LogAttrs(), slog.String("listen", ln.Addr().String()), slog.Int("pid", os.Getpid()))
	if cfg.Latency > 0 || cfg.Jitter > 0 || cfg.FailRate > 0 || cfg.HangRate > 0 {
		attrs = append(attrs, slog.Duration("latency", cfg.Latency), slog.Duration("jitter", cfg.Jitter),
			slog.Float64("fail_rate", cfg.FailRate), slog.Int("fail_status", cfg.FailStatus), slog.Float64("hang_rate", cfg.HangRate))
	}
	if cfg.Timestamp {
		attrs = append(attrs, slog.Bool("timestamp", true))
	}
	if len(cfg.Perturb) > 0 {
		attrs = append(attrs, slog.String("perturb", cfg.Perturb.String()))
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, "model worker serving", attrs...)

	served := make(chan error, 1)
	go func() { served <- w.Serve(ln) }()
	select {
	case err := <-served:
		log.Error("listener failed", "err", err)
		return 1
	case sig := <-signals:
		log.Info("signal received, draining", "signal", sig.String(), "drain_timeout", *drain)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	if err := w.Shutdown(ctx); err != nil {
		log.Warn("drain ended with requests still running", "err", err)
	}
	<-served
	log.Info("stopped")
	return 0
}

func newLogger(w io.Writer, format string) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("-log-format must be text or json, got %q", format)
}
