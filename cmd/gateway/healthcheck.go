package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// healthcheck asks a running gateway's admin /readyz, for container
// health checks that have no shell or curl: exit 0 when it answers 200,
// 1 otherwise (printing why).
func healthcheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfig, "config file naming admin.listen")
	adminURL := fs.String("admin", "", "admin base URL, instead of reading it from -config (http://127.0.0.1:9901)")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	base := strings.TrimSuffix(*adminURL, "/")
	if base == "" {
		data, err := os.ReadFile(*path)
		if err != nil {
			fmt.Fprintf(stderr, "healthcheck: %v\n", err)
			return 1
		}
		listen, err := config.AdminListen(data)
		if err != nil {
			fmt.Fprintf(stderr, "healthcheck: %s: %v\n", *path, err)
			return 1
		}
		base = "http://" + dialable(listen)
	}
	client := &http.Client{Timeout: *timeout}
	resp, err := client.Get(base + "/readyz")
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: not ready: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: not ready (%d): %s\n", resp.StatusCode, strings.TrimSpace(string(body)))
		return 1
	}
	fmt.Fprintln(stdout, "ready")
	return 0
}

// dialable turns a listen address into one to connect to: a wildcard
// host (":9901", "0.0.0.0:9901", "[::]:9901") becomes loopback.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}
