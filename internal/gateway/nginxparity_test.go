package gateway

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/nginximport"
	"github.com/sluice-gw/sluice/internal/testutil"
)

// parityNginxConf is the nginx side of the parity test: an A/B split on
// X-User-Id between two upstreams, a mirror to a third, and a per-API-key
// rate limit (50r/s, burst 10, nodelay). The temp paths are inside the
// prefix, where a test may write.
const parityNginxConf = `worker_processes 1;
events { worker_connections 512; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path       %[1]s/proxy;
    fastcgi_temp_path     %[1]s/fastcgi;
    uwsgi_temp_path       %[1]s/uwsgi;
    scgi_temp_path        %[1]s/scgi;

    upstream alpha     { server %[2]s; }
    upstream beta      { server %[3]s; }
    upstream candidate { server %[4]s; }

    split_clients "${http_x_user_id}" $variant {
        90%%    alpha;
        *       beta;
    }

    limit_req_zone $http_x_api_key zone=perkey:10m rate=50r/s;
    limit_req_status 429;

    server {
        listen %[5]s;

        location /split/ {
            proxy_pass http://$variant;
        }
        location /mirror/ {
            mirror /shadow;
            proxy_pass http://alpha;
        }
        location = /shadow {
            internal;
            proxy_pass http://candidate$request_uri;
        }
        location /limited/ {
            limit_req zone=perkey burst=10 nodelay;
            proxy_pass http://beta;
        }
    }
}
`

// nginxBinary is the nginx to compare with, or skips the test.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	t.Skip("nginx is not installed (neither /usr/sbin/nginx nor nginx on PATH): the parity test compares the gateway with a real nginx (apt-get install nginx-light)")
	return ""
}

// lockedBuffer collects a process's output for the failure message.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startNginx runs nginx in the foreground on conf, with its prefix, pid
// file and temp paths in dir, until the test ends; it returns once nginx
// accepts connections on addr.
func startNginx(t *testing.T, bin, dir, conf, addr string) {
	t.Helper()
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+"; error_log stderr;")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// SIGTERM is nginx's fast shutdown; its workers are in its group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("nginx output (the end):\n%s", tail(out.String(), 40))
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("nginx exited: %v\n%s", err, tail(out.String(), 40))
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not accept on %s:\n%s", addr, tail(out.String(), 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

var listenLine = regexp.MustCompile(`listen: "[^"]*"`)

// importForGateway translates an nginx config with the importer and puts
// the gateway's listeners on ports the kernel picks.
func importForGateway(t *testing.T, conf string) string {
	t.Helper()
	res, err := nginximport.File(conf)
	if err != nil {
		t.Fatalf("import-nginx: %v", err)
	}
	for _, n := range res.Notes {
		t.Logf("import-nginx: %s", n)
	}
	return listenLine.ReplaceAllString(string(res.YAML), `listen: "127.0.0.1:0"`)
}

// TestNginxParity runs a real nginx and the gateway on the config the
// importer made from nginx's, and sends both the same traffic: each
// location reaches the same upstream, the A/B split shares users out alike
// (the hashes differ, the shares must not), the rate limit admits as many
// requests, and the mirror reaches its upstream.
func TestNginxParity(t *testing.T) {
	bin := nginxBinary(t)
	alpha, beta := testutil.Named(t, "alpha"), testutil.Named(t, "beta")
	var mirrored sync.Map // path -> "nginx" or "gateway"
	candidate := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		by := "nginx"
		if len(ctx.Request.Header.Peek("X-Sluice-Shadow")) > 0 {
			by = "gateway"
		}
		mirrored.Store(string(ctx.Path()), by)
		ctx.SetBodyString("candidate")
	})

	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // nginx's workers may run as nobody
		t.Fatal(err)
	}
	nginxAddr := testutil.ClosedAddr(t)
	conf := testutil.WriteFile(t, dir, "nginx.conf", fmt.Sprintf(parityNginxConf, dir, alpha, beta, candidate, nginxAddr))
	startNginx(t, bin, dir, conf, nginxAddr)
	g := startGateway(t, importForGateway(t, conf))
	sides := []struct{ name, url string }{{"nginx", "http://" + nginxAddr}, {"gateway", g.url}}

	t.Run("same upstream per location", func(t *testing.T) {
		for _, side := range sides {
			for path, want := range map[string]string{"/mirror/a": "alpha", "/limited/a": "beta"} {
				if status, body, _ := get(t, side.url+path); status != 200 || body != want {
					t.Errorf("%s %s: %d %q, want 200 %q", side.name, path, status, body, want)
				}
			}
			if status, body, _ := get(t, side.url+"/split/a", "X-User-Id", "u1"); status != 200 || (body != "alpha" && body != "beta") {
				t.Errorf("%s /split/a: %d %q, want alpha or beta", side.name, status, body)
			}
		}
	})

	t.Run("split shares agree", func(t *testing.T) {
		const users = 4000
		share := map[string]float64{}
		for _, side := range sides {
			var toAlpha, answered atomic.Int64
			var wg sync.WaitGroup
			client := &fasthttp.Client{MaxConnsPerHost: 16, ReadTimeout: 5 * time.Second}
			for w := range 8 {
				wg.Go(func() {
					req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
					defer fasthttp.ReleaseRequest(req)
					defer fasthttp.ReleaseResponse(resp)
					for u := w; u < users; u += 8 {
						req.Reset()
						req.SetRequestURI(side.url + "/split/predict")
						req.Header.Set("X-User-Id", fmt.Sprintf("user-%d", u))
						if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
							continue
						}
						answered.Add(1)
						if string(resp.Body()) == "alpha" {
							toAlpha.Add(1)
						}
					}
				})
			}
			wg.Wait()
			if answered.Load() != users {
				t.Fatalf("%s answered %d of %d", side.name, answered.Load(), users)
			}
			share[side.name] = 100 * float64(toAlpha.Load()) / users
			t.Logf("%s: %.2f%% of %d users on alpha (90%% configured), %.2f%% on beta", side.name, share[side.name], users, 100-share[side.name])
		}
		if d := math.Abs(share["nginx"] - share["gateway"]); d > 1 {
			t.Errorf("alpha's share: nginx %.2f%%, gateway %.2f%%: %.2f points apart, want at most 1", share["nginx"], share["gateway"], d)
		}
		for name, s := range share {
			if math.Abs(s-90) > 2 {
				t.Errorf("%s sends %.2f%% to alpha, want about 90%%", name, s)
			}
		}
	})

	t.Run("rate limit admits alike", func(t *testing.T) {
		// A burst from a fresh key, as fast as one connection goes: nginx
		// admits burst+1 (11), which the importer writes as burst: 11.
		burst := map[string]int{}
		for _, side := range sides {
			reqs, _ := pace(t, 30, 0, 1, keyed(side.url+"/limited/x", "burst-key"))
			burst[side.name] = count(reqs, 0, time.Hour)[200]
			t.Logf("%s: %d of 30 back-to-back requests admitted", side.name, burst[side.name])
		}
		// Both refill at 50/s while the 30 requests go out, so a run slowed
		// by a loaded machine lets a few more through on either side.
		if d := burst["nginx"] - burst["gateway"]; d < -3 || d > 3 {
			t.Errorf("back-to-back burst admitted: nginx %d, gateway %d; want within 3", burst["nginx"], burst["gateway"])
		}
		if testing.Short() {
			t.Skip("the paced run takes 5 s per side")
		}
		admitted := map[string]int{}
		for _, side := range sides {
			reqs, run := pace(t, 1000, 5*time.Millisecond, 4, keyed(side.url+"/limited/x", "paced-key"))
			codes := count(reqs, 0, time.Hour)
			if codes[200]+codes[429] != 1000 {
				t.Errorf("%s answered %v, want only 200 and 429", side.name, codes)
			}
			admitted[side.name] = codes[200]
			t.Logf("%s: %d of 1000 admitted at 200/s over %v (10+1 burst plus 50/s: about %.0f)", side.name, codes[200], run.Round(time.Millisecond), 11+50*run.Seconds())
		}
		within(t, "gateway admitted, against nginx's count", admitted["gateway"], float64(admitted["nginx"]), 0.05)
	})

	t.Run("mirror reaches the candidate", func(t *testing.T) {
		for _, side := range sides {
			path := "/mirror/probe-" + side.name
			if status, body, _ := get(t, side.url+path); status != 200 || body != "alpha" {
				t.Fatalf("%s %s: %d %q, want the primary's answer", side.name, path, status, body)
			}
			eventually(t, 5*time.Second, side.name+" mirrors "+path+" to the candidate", func() bool {
				by, ok := mirrored.Load(path)
				return ok && by == side.name
			})
		}
	})
}
