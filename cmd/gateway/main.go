// Command gateway is Sluice, the inference gateway.
//
//	gateway [run] -config FILE        serve
//	gateway check -config FILE        validate a config, print every error
//	gateway healthcheck -config FILE  exit 0 when the gateway is ready
//	gateway version                   version, commit, Go version
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/experiments"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/shadow"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

const defaultConfig = "config/gateway.yaml"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	// A leading flag means "run" with flags, except the help flags, which
	// the switch below answers with the usage of every command.
	if len(args) > 0 && len(args[0]) > 0 && (args[0][0] != '-' || args[0] == "-h" || args[0] == "--help") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run", "serve":
		return serve(args, stderr)
	case "check":
		return check(args, stdout, stderr)
	case "report":
		return report(args, stdout, stderr)
	case "healthcheck":
		return healthcheck(args, stdout, stderr)
	case "import-nginx":
		return importNginx(args, stdout, stderr)
	case "keys":
		return keysCommand(args, os.Stdin, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "sluice gateway %s (commit %s, %s, %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "gateway: unknown command %q\n\n", cmd)
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  gateway [run] -config FILE   serve (SIGHUP reloads, SIGTERM/SIGINT drain and exit)
  gateway check -config FILE   validate a config: exit 0, or print every error with its line and exit 1
  gateway healthcheck [-config FILE | -admin URL] [-timeout 2s]
                               ask a running gateway's /readyz: exit 0 when ready,
                               1 with the reasons when not (for Docker HEALTHCHECK)
  gateway report shadow|experiments [-admin URL] [-token T]
                               print the shadow comparison or the A/B report of a
                               running gateway as a table
  gateway import-nginx [-o out.yaml] nginx.conf
                               translate an nginx config into a gateway config; every
                               directive not translated is listed on stderr with its line
  gateway keys add NAME [-routes a,b] [-tags t1,t2]
                               make an API key: print it once, and the line that lists
                               its SHA-256 in the keys file (the key is kept nowhere)
  gateway keys hash            read one key on stdin, print its SHA-256 (for keys you have)
  gateway version              print version, commit and Go version
`)
}

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfig, "config file")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level, *format)
	if err != nil {
		fmt.Fprintln(stderr, "gateway:", err)
		return 2
	}

	g, err := gateway.New(*path, log)
	if err != nil {
		printConfigError(stderr, *path, err)
		return 1
	}
	if err := g.Start(); err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}

	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	for {
		select {
		case err := <-g.Errors():
			log.Error("listener failed", "err", err)
			return 1
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				_, _ = g.Reload("signal")
				continue
			}
			log.Info("signal received, shutting down", "signal", sig.String())
			if err := g.Shutdown(context.Background()); err != nil {
				log.Warn("drain ended with requests still running", "err", err)
			}
			log.Info("stopped")
			return 0
		}
	}
}

func check(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfig, "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	loaded, err := config.Load(*path)
	if err != nil {
		printConfigError(stderr, *path, err)
		return 1
	}
	// The keys and JWT key files the routes name must load too, as they
	// must for the gateway to start.
	for _, r := range loaded.Config.Routes {
		if err := auth.Check(loaded.Config.AuthFor(r)); err != nil {
			fmt.Fprintf(stderr, "%s: routes %s: auth.%v\n", *path, r.Name, err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "%s: ok (%d routes, %d pools)\n", *path, len(loaded.Config.Routes), len(loaded.Config.Pools))
	return 0
}

// printConfigError prints each problem as FILE:LINE: message, the way
// compilers do, so editors can jump to it.
func printConfigError(w io.Writer, path string, err error) {
	var problems config.Problems
	if !errors.As(err, &problems) {
		fmt.Fprintf(w, "%s: %v\n", path, err)
		return
	}
	for _, p := range problems {
		if p.Path != "" {
			fmt.Fprintf(w, "%s:%d: %s: %s\n", path, p.Line, p.Path, p.Msg)
		} else {
			fmt.Fprintf(w, "%s:%d: %s\n", path, p.Line, p.Msg)
		}
	}
	fmt.Fprintf(w, "%d problem(s) in %s\n", len(problems), path)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format must be text or json, got %q", format)
}

// reports are what `gateway report` can print: where each is read from
// on the admin API, and how it is turned into a table.
var reports = map[string]struct {
	path   string
	render func(body io.Reader, w io.Writer) error
}{
	"experiments": {"/admin/experiments", func(body io.Reader, w io.Writer) error {
		var out struct {
			Experiments []experiments.RouteReport `json:"experiments"`
		}
		if err := json.NewDecoder(body).Decode(&out); err != nil {
			return fmt.Errorf("reading the report: %w", err)
		}
		return experiments.RenderText(w, out.Experiments)
	}},
	"shadow": {"/admin/shadow", func(body io.Reader, w io.Writer) error {
		var out struct {
			Shadow []shadow.RouteReport `json:"shadow"`
		}
		if err := json.NewDecoder(body).Decode(&out); err != nil {
			return fmt.Errorf("reading the report: %w", err)
		}
		return shadow.RenderText(w, out.Shadow)
	}},
}

// report prints a running gateway's report, read from its admin API.
func report(args []string, stdout, stderr io.Writer) int {
	const use = "usage: gateway report shadow|experiments [-admin URL] [-token TOKEN]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, use)
		return 2
	}
	kind, ok := reports[args[0]]
	if !ok {
		fmt.Fprintln(stderr, use)
		return 2
	}
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	adminURL := fs.String("admin", "http://127.0.0.1:9901", "the gateway's admin address")
	token := fs.String("token", os.Getenv("SLUICE_ADMIN_TOKEN"), "admin token (default $SLUICE_ADMIN_TOKEN)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	req, err := http.NewRequest("GET", strings.TrimRight(*adminURL, "/")+kind.path, nil)
	if err != nil {
		fmt.Fprintln(stderr, "gateway report:", err)
		return 2
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "gateway report:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		fmt.Fprintf(stderr, "gateway report: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	if err := kind.render(resp.Body, stdout); err != nil {
		fmt.Fprintln(stderr, "gateway report:", err)
		return 1
	}
	return 0
}
