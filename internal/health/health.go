// Package health runs the active health checks of section 2 of the spec:
// for every target (a backend address with a pool's `health` settings)
// one goroutine GETs the configured path every interval plus jitter and
// hands each outcome to a Report. What the outcomes mean (healthy_after,
// unhealthy_after, marking a backend down) is the caller's business; this
// package only probes, as Envoy's health checker does for its hosts.
//
// Lifecycle of one prober:
//
//	Set lists the target   -> started: probes at once, then waits
//	                          interval + rand[0, jitter) between probes
//	Set lists it again     -> untouched (same schedule, no extra probe)
//	Set leaves it out,     -> stopped: no Report from the moment Set or
//	or Close                  Close returns; the goroutine leaves its wait
//	                          at once (or after the probe in flight, which
//	                          is bounded by the timeout), closes its idle
//	                          connection and exits
//
// A target is its address and its settings together, so a reload that
// changes a pool's health settings stops the old prober and starts a new
// one, whose first probe runs at once.
package health

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Settings of one check. It is comparable: a Target whose Settings change
// is a new target, and its prober restarts.
type Settings struct {
	// Path is requested with GET, verbatim (a query is allowed). Zero:
	// /health, the spec's default.
	Path string
	// Interval is the wait from one probe's outcome to the next probe of
	// the same target, before jitter. Zero or negative: 2s, the spec's
	// default (a zero interval would probe in a busy loop).
	Interval time.Duration
	// Jitter: each wait is Interval plus a random time in [0, Jitter), so
	// that the probes of many backends spread out. Zero: no jitter.
	Jitter time.Duration
	// Timeout bounds one probe, from connecting to the whole response.
	// Zero or negative: 500ms, the spec's default.
	Timeout time.Duration
}

// Spec defaults for zero settings. Config compilation is expected to fill
// them in already; these only keep a zero Settings from probing in a busy
// loop or failing every probe at once.
const (
	defaultPath     = "/health"
	defaultInterval = 2 * time.Second
	defaultTimeout  = 500 * time.Millisecond
)

// userAgent marks probes in a backend's access log.
const userAgent = "sluice-health-check"

// maxBody bounds how much of a probe's response body is read. A health
// answer is judged by its status alone, so a 2xx with a larger body still
// passes (as Kubernetes probes read only the first 10 KiB and judge the
// status); the connection is then closed rather than drained.
const maxBody = 64 << 10

// maxIdleConn caps how long a probe's keep-alive connection is kept
// between probes. Probes at longer intervals dial afresh each time, which
// costs little at that rate and holds no socket for minutes.
const maxIdleConn = 30 * time.Second

// Target is one backend address probed with some settings.
type Target struct {
	Addr     string
	Settings Settings
}

// Report receives every probe's outcome: ok is a 2xx answer within the
// timeout; detail says why not ("connection refused", "status 503",
// "timeout after 500ms") and is "" when ok. It is called from the
// target's prober goroutine, one call at a time per target, and must not
// call Set or Close (a stop waits for a Report in progress to return).
type Report func(t Target, ok bool, detail string)

// Checker runs one prober per target.
type Checker struct {
	report Report

	mu      sync.Mutex
	probers map[Target]*prober
	closed  bool
	wg      sync.WaitGroup // one per running prober goroutine
}

// New returns a checker with no targets; report receives every outcome.
func New(report Report) *Checker {
	return &Checker{report: report, probers: map[Target]*prober{}}
}

// Set makes the running probers exactly targets: it starts probers for
// new targets (their first probe runs at once), stops those of targets no
// longer listed, and leaves the others running on their own schedule.
// Duplicates in targets are probed once. Set does not wait for stopped
// probers to exit (one may be in the middle of a probe); they report
// nothing once Set has returned. After Close, Set does nothing.
func (c *Checker) Set(targets []Target) {
	want := make(map[Target]struct{}, len(targets))
	for _, t := range targets {
		want[t] = struct{}{}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	for t, p := range c.probers {
		if _, ok := want[t]; !ok {
			p.stop()
			delete(c.probers, t)
		}
	}
	for t := range want {
		if _, ok := c.probers[t]; ok {
			continue
		}
		p := newProber(t, c.report)
		c.probers[t] = p
		c.wg.Go(p.run)
	}
}

// Close stops every prober and waits for them to exit, which takes at
// most one probe timeout (a probe in flight cannot be cancelled). Set
// after Close does nothing; closing twice is fine.
func (c *Checker) Close() {
	c.mu.Lock()
	c.closed = true
	for t, p := range c.probers {
		p.stop()
		delete(c.probers, t)
	}
	c.mu.Unlock()
	// Every wg.Add happened in Set under mu before closed was set, so
	// this Wait cannot race with an Add.
	c.wg.Wait()
}

// prober probes one target until stopped.
type prober struct {
	target   Target
	path     string
	interval time.Duration
	timeout  time.Duration
	report   Report
	client   *fasthttp.HostClient
	done     chan struct{} // closed by stop: leave the wait at once

	// mu orders reports against stop: a report is made under mu only
	// while stopped is false, so once stop has set it no report is in
	// progress and none follows.
	mu      sync.Mutex
	stopped bool
}

func newProber(t Target, report Report) *prober {
	p := &prober{
		target:   t,
		path:     t.Settings.Path,
		interval: t.Settings.Interval,
		timeout:  t.Settings.Timeout,
		report:   report,
		done:     make(chan struct{}),
	}
	if p.path == "" {
		p.path = defaultPath
	}
	if p.interval <= 0 {
		p.interval = defaultInterval
	}
	if p.timeout <= 0 {
		p.timeout = defaultTimeout
	}
	p.client = newProbeClient(t.Addr, p.timeout, min(p.interval+max(t.Settings.Jitter, 0)+p.timeout, maxIdleConn))
	return p
}

// newProbeClient builds a target's own transport, apart from the pool's
// so that probes never queue behind traffic for a connection. Like the
// proxy's transport it is dumb: one attempt per call, every limit set.
// idle keeps the keep-alive connection from one probe to the next.
func newProbeClient(addr string, timeout, idle time.Duration) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:                      addr,
		NoDefaultUserAgentHeader:  true,
		MaxConns:                  1,
		MaxIdleConnDuration:       idle,
		MaxIdemponentCallAttempts: 1,
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		ReadTimeout:               timeout,
		WriteTimeout:              timeout,
		MaxResponseBodySize:       maxBody,
		DisablePathNormalizing:    true,
	}
}

// stop ends the prober: no report after stop returns, and the goroutine
// leaves its wait at once. Called under the checker's mu, at most once.
func (p *prober) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	close(p.done)
}

func (p *prober) run() {
	defer p.client.CloseIdleConnections()

	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURI(p.path)
	req.Header.SetHost(p.target.Addr)
	req.Header.SetUserAgent(userAgent)

	wait := time.NewTimer(0) // the first probe runs at once
	defer wait.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-wait.C:
		}
		ok, detail := p.probe(req, resp)
		if !p.deliver(ok, detail) {
			return
		}
		wait.Reset(p.next())
	}
}

// next is the wait before the next probe: interval + rand[0, jitter).
func (p *prober) next() time.Duration {
	if j := p.target.Settings.Jitter; j > 0 {
		return p.interval + rand.N(j)
	}
	return p.interval
}

// deliver reports one outcome unless the prober was stopped meanwhile,
// and says whether it is still running.
func (p *prober) deliver(ok bool, detail string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return false
	}
	p.report(p.target, ok, detail)
	return true
}

// probe sends one GET and judges it: ok is a 2xx answer within the
// timeout.
//
// A keep-alive connection pooled since the last probe may have been closed
// by the backend meanwhile (its idle timeout can be shorter than our
// interval: uvicorn's is 5s). Failing on it would count against a healthy
// backend, so when the probe went out on such a connection and found it
// closed, it is sent once more on a fresh one, within the same deadline.
// This is the retry net/http makes on a reused connection; the HostClient
// itself never retries.
func (p *prober) probe(req *fasthttp.Request, resp *fasthttp.Response) (ok bool, detail string) {
	deadline := time.Now().Add(p.timeout)
	reused := p.client.ConnsCount() > 0 // probes run one at a time: any connection is idle
	err := p.client.DoDeadline(req, resp, deadline)
	if err != nil && reused && staleConn(err) {
		err = p.client.DoDeadline(req, resp, deadline)
	}
	switch {
	case err == nil, errors.Is(err, fasthttp.ErrBodyTooLarge):
		// ErrBodyTooLarge comes after the status line was read, so the
		// status is the backend's.
		if code := resp.StatusCode(); code < 200 || code > 299 {
			return false, fmt.Sprintf("status %d", code)
		}
		return true, ""
	default:
		return false, p.describe(err)
	}
}

// staleConn reports whether err is what a connection the backend had
// already closed gives: EOF before any response byte, or a reset.
func staleConn(err error) bool {
	return errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// describe turns a transport error into a short detail for the report.
func (p *prober) describe(err error) string {
	var netErr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.As(err, &netErr) && netErr.Timeout():
		return "timeout after " + p.timeout.String()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF):
		return "connection closed before a response"
	default:
		return err.Error()
	}
}
