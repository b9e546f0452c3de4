package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// backend is one backend kind as the targets see it: the instance every
// target proxies to, and the two shadow pools' instances: a slow one for
// sluice-shadow-slow and a fast one for sluice-shadow-fast. Each shadow
// has a process of its own, so the two modes differ in the shadow's delay
// alone (a shadow sent to the primary's own busy process would find it
// awake, which an idle shadow process is not).
type backend struct {
	kind   string // trivial or model
	addr   string // 127.0.0.1:PORT
	slow   string // the slow shadow instance's address; "" when not needed
	mirror string // the fast shadow instance's address; "" when not needed
	pids   []int  // the instances' processes, for the "other %" figure
	want   []byte // the body it answers the bench request with
}

// startBackends starts the instance of a kind every target proxies to
// and, when the shadow modes run, their two shadow instances. They live
// for the whole run.
func (r *runner) startBackends(kind string, needShadows bool) (*backend, error) {
	b := &backend{kind: kind}
	addr, p, err := r.startBackendInstance(kind, kind, 0)
	if err != nil {
		return nil, err
	}
	b.addr, b.pids = addr, append(b.pids, p.pid())
	a, err := r.post("http://" + addr + "/predict")
	if err := ok2xx(a, err); err != nil {
		return nil, fmt.Errorf("%s backend: %w", kind, err)
	}
	b.want = a.body
	if !needShadows {
		return b, nil
	}
	for _, sh := range []struct {
		addr  *string
		name  string
		delay time.Duration
	}{{&b.slow, kind + "-slow", r.s.SlowDelay}, {&b.mirror, kind + "-shadow", 0}} {
		addr, p, err := r.startBackendInstance(kind, sh.name, sh.delay)
		if err != nil {
			return nil, err
		}
		*sh.addr, b.pids = addr, append(b.pids, p.pid())
	}
	return b, nil
}

func (r *runner) startBackendInstance(kind, name string, delay time.Duration) (string, *proc, error) {
	port, err := r.ports.pick()
	if err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var argv []string
	switch kind {
	case "trivial":
		argv = []string{r.s.BackendBin, "-listen", addr, "-delay", delay.String()}
	case "model":
		argv = []string{r.s.WorkerBin, "-model", r.s.Model, "-listen", addr, "-latency", delay.String()}
	}
	p, err := r.start(name+" backend", filepath.Join(r.dir, name+"-backend.log"), nil, argv...)
	if err != nil {
		return "", nil, err
	}
	if err := r.waitReady(p, func() error { return ok2xx(r.post("http://" + addr + "/predict")) }); err != nil {
		return "", nil, err
	}
	return addr, p, nil
}

// instance is one target started for one cell.
type instance struct {
	url   string // what wrk loads
	proc  *proc  // the proxy (nil for direct)
	admin string // the gateway's admin address ("" for the others)
}

// startTarget starts target in front of b, waits until it answers the
// bench request, and checks that it returns the backend's body (and, for
// sluice-cached, that the second answer is a cache hit). A wrong answer is
// a warning, not an error: the cell is measured and flagged. tag names the
// cell's files.
func (r *runner) startTarget(target string, b *backend, tag string) (*instance, []string, error) {
	if target == "direct" {
		return &instance{url: "http://" + b.addr + "/predict"}, nil, nil
	}
	port, err := r.ports.pick()
	if err != nil {
		return nil, nil, err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	inst := &instance{url: "http://" + listen + "/predict"}
	dir := filepath.Join(r.dir, tag)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	logPath := filepath.Join(dir, target+".log")

	var p *proc
	switch target {
	case "nginx":
		p, err = r.startNginx(dir, listen, b.addr, logPath)
	case "haproxy":
		p, err = r.startHAProxy(dir, listen, b.addr, logPath)
	case "caddy":
		p, err = r.startCaddy(dir, listen, b.addr, logPath)
	default:
		p, inst.admin, err = r.startGateway(target, dir, listen, b, logPath)
	}
	if err != nil {
		return nil, nil, err
	}
	inst.proc = p
	if err := r.waitReady(p, func() error { return ok2xx(r.post(inst.url)) }); err != nil {
		r.stop(p)
		return nil, nil, err
	}
	return inst, r.checkAnswers(target, inst.url, b), nil
}

// checkAnswers compares the target's answer with the backend's. A proxy
// answering 200 with another body would give fast, meaningless numbers.
func (r *runner) checkAnswers(target, url string, b *backend) []string {
	var warnings []string
	first, err := r.post(url)
	if err := ok2xx(first, err); err != nil {
		return []string{fmt.Sprintf("check request failed: %v", err)}
	}
	if !bytes.Equal(first.body, b.want) {
		warnings = append(warnings, fmt.Sprintf("answered another body than the backend's: %s", clip(first.body)))
	}
	if target == "sluice-cached" {
		second, err := r.post(url)
		switch {
		case ok2xx(second, err) != nil:
			warnings = append(warnings, fmt.Sprintf("second check request failed: %v", ok2xx(second, err)))
		case second.header.Get("X-Sluice-Cache") != "hit":
			warnings = append(warnings, fmt.Sprintf("second request was not a cache hit (X-Sluice-Cache: %q): the cell measures plain proxying", second.header.Get("X-Sluice-Cache")))
		case !bytes.Equal(second.body, b.want):
			warnings = append(warnings, fmt.Sprintf("cache hit with another body than the backend's: %s", clip(second.body)))
		}
	}
	return warnings
}

// startNginx: the config bench/run.sh has always used, with a larger
// upstream keep-alive cache. keepalive_requests is raised on both sides
// because nginx's default (1000) would close client and upstream
// connections every 1000 requests, which the other proxies do not do; the
// comparison is of proxying, not of that default. For the same reason the
// cache of idle upstream connections (keepalive, per worker) holds 1024:
// with 64 it kept up at 64 client connections, but at 256 nginx closed and
// reopened thousands of upstream connections a second.
func (r *runner) startNginx(dir, listen, upstream, logPath string) (*proc, error) {
	conf := filepath.Join(dir, "nginx.conf")
	errLog := filepath.Join(dir, "nginx-error.log")
	text := fmt.Sprintf(`worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[2]s warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path       %[1]s/proxy;
    fastcgi_temp_path     %[1]s/fastcgi;
    uwsgi_temp_path       %[1]s/uwsgi;
    scgi_temp_path        %[1]s/scgi;
    keepalive_requests 1000000;

    upstream bench_backend {
        server %[3]s;
        keepalive 1024;
        keepalive_requests 1000000;
    }
    server {
        listen %[4]s;
        location / {
            proxy_pass http://bench_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`, dir, errLog, upstream, listen)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	nginx := r.bins["nginx"]
	args := []string{"-c", conf, "-p", dir}
	// -e (nginx 1.19.5 and later) keeps even the error log written before
	// the config is read out of /var/log.
	if help, _ := runCheck(nginx, "-h"); strings.Contains(help, "-e filename") {
		args = append(args, "-e", errLog)
	}
	if out, err := runCheck(append([]string{nginx, "-t", "-q"}, args...)...); err != nil {
		return nil, fmt.Errorf("nginx rejected %s: %v\n%s", conf, err, out)
	}
	return r.start("nginx", logPath, nil, append(append([]string{nginx}, args...), "-g", "daemon off;")...)
}

// startHAProxy: HTTP mode, keep-alive on both sides (HAProxy's default),
// idle upstream connections shared between client connections
// (http-reuse always, which HAProxy's documentation recommends for servers
// known to support keep-alive), one thread per CPU (the default), no
// logging. -db keeps it in the foreground.
func (r *runner) startHAProxy(dir, listen, upstream, logPath string) (*proc, error) {
	conf := filepath.Join(dir, "haproxy.cfg")
	text := fmt.Sprintf(`global
    maxconn 4096
    pidfile %s/haproxy.pid

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    timeout http-request 10s

frontend bench
    bind %s
    default_backend bench_backend

backend bench_backend
    server backend1 %s
`, dir, listen, upstream)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	haproxy := r.bins["haproxy"]
	if out, err := runCheck(haproxy, "-c", "-q", "-f", conf); err != nil {
		return nil, fmt.Errorf("haproxy rejected %s: %v\n%s", conf, err, out)
	}
	return r.start("haproxy", logPath, nil, haproxy, "-db", "-f", conf)
}

// startCaddy: a Caddyfile with the admin endpoint and automatic HTTPS off,
// no access log (Caddy logs requests only when a site asks), and
// reverse_proxy with keep-alive on (its default). Its pool of idle upstream
// connections is raised to 1024 as nginx's is: with Caddy's default it
// closed and reopened an upstream connection for about one request in six
// at 64 client connections. HOME and the
// XDG directories point into the cell's directory, so that what Caddy
// writes (the autosaved config, its data directory) lands there, never in
// $HOME or /var.
func (r *runner) startCaddy(dir, listen, upstream, logPath string) (*proc, error) {
	conf := filepath.Join(dir, "Caddyfile")
	host, port, _ := strings.Cut(listen, ":")
	text := fmt.Sprintf(`{
	admin off
	auto_https off
}

:%s {
	bind %s
	reverse_proxy %s {
		transport http {
			keepalive_idle_conns_per_host 1024
		}
	}
}
`, port, host, upstream)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	home := filepath.Join(dir, "caddy-home")
	env := []string{"HOME=" + home, "XDG_DATA_HOME=" + home + "/data", "XDG_CONFIG_HOME=" + home + "/config"}
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	return r.start("caddy", logPath, env, r.bins["caddy"], "run", "--config", conf, "--adapter", "caddyfile")
}

// gatewayConfig is the Sluice config of one mode (README, "Config
// reference").
func gatewayConfig(mode, listen, admin string, b *backend) string {
	head := fmt.Sprintf(`server:
  listen: %q
admin:
  listen: %q
pools:
  bench:
    backends: [%q]
    max_conns: 512
`, listen, admin, b.addr)
	switch mode {
	case "sluice-full":
		// A sticky 90/10 split over two pools of the same backend, a rate
		// limit that admits everything, a concurrency limit, and a 10%
		// shadow to a third pool of the same backend.
		return head + fmt.Sprintf(`  bench-b:
    backends: [%[1]q]
    max_conns: 512
  mirror:
    backends: [%[1]q]
    max_conns: 512
routes:
  - name: bench
    match: {path_prefix: /}
    split:
      sticky: header:X-User-Id
      variants:
        - {name: a, pool: bench, weight: 90}
        - {name: b, pool: bench-b, weight: 10}
    rate_limit:
      - {key: header:X-User-Id, rate: 1000000/s, burst: 1000000}
    max_in_flight: 4096
    shadow: {pool: mirror, percent: 10}
`, b.addr)
	case "sluice-cached":
		return head + `routes:
  - name: bench
    match: {path_prefix: /}
    pool: bench
    cache: {ttl: 1h}
`
	case "sluice-shadow-slow", "sluice-shadow-fast":
		// The same 10% shadow, to the slow instance or to the fast one.
		shadow := b.slow
		if mode == "sluice-shadow-fast" {
			shadow = b.mirror
		}
		return head + fmt.Sprintf(`  shadow:
    backends: [%q]
    max_conns: 512
routes:
  - name: bench
    match: {path_prefix: /}
    pool: bench
    shadow: {pool: shadow, percent: 10}
`, shadow)
	default: // sluice: one pool, one catch-all route
		return head + `routes:
  - name: bench
    match: {path_prefix: /}
    pool: bench
`
	}
}

// startGateway writes the mode's config, has `gateway check` validate it,
// starts the gateway and waits for /readyz on its admin port.
func (r *runner) startGateway(mode, dir, listen string, b *backend, logPath string) (*proc, string, error) {
	adminPort, err := r.ports.pick()
	if err != nil {
		return nil, "", err
	}
	admin := fmt.Sprintf("127.0.0.1:%d", adminPort)
	conf := filepath.Join(dir, mode+".yaml")
	if err := os.WriteFile(conf, []byte(gatewayConfig(mode, listen, admin, b)), 0o644); err != nil {
		return nil, "", err
	}
	if out, err := runCheck(r.s.GatewayBin, "check", "-config", conf); err != nil {
		return nil, "", fmt.Errorf("gateway check rejected %s: %v\n%s", conf, err, out)
	}
	p, err := r.start(mode, logPath, nil, r.s.GatewayBin, "-config", conf, "-log-level", "warn")
	if err != nil {
		return nil, "", err
	}
	if err := r.waitReady(p, func() error { return ok2xx(r.get("http://" + admin + "/readyz")) }); err != nil {
		r.stop(p)
		return nil, "", err
	}
	return p, admin, nil
}
