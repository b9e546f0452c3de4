// Command pace is a paced HTTP load generator for the benchmark scripts.
//
// Unlike wrk, which sends as fast as the server answers, pace sends at a
// fixed rate: request i leaves at start + i/rate (a worker that falls
// behind sends at once), so a rate limit can be driven at a known speed.
// Request i goes to url[i % len(url)]. It prints the requests sent, the
// run's length from the first send to the last, the counts by status (0 is
// a transport error), the admitted (200) count, and latency percentiles;
// with -phases, the same per consecutive phase. It judges nothing: it
// exits 0 unless its flags are bad.
//
//	pace -url http://127.0.0.1:8080/a,http://127.0.0.1:8081/a -rate 1000 \
//	     -duration 10s -header 'X-API-Key: team-a' -phases 5s,5s
package main

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// headers is the repeatable -header flag.
type headers [][2]string

func (h *headers) String() string { return fmt.Sprint(*h) }

func (h *headers) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("%q is not \"Name: value\"", s)
	}
	*h = append(*h, [2]string{strings.TrimSpace(name), strings.TrimSpace(value)})
	return nil
}

// result is one request: when it was sent (since the start), how long its
// answer took, and its status (0: transport error).
type result struct {
	at, latency time.Duration
	status      int
}

func main() {
	var hdrs headers
	urls := flag.String("url", "", "target URLs, comma-separated; request i goes to url[i % len]")
	rate := flag.Float64("rate", 1000, "requests per second")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	method := flag.String("method", "GET", "request method")
	body := flag.String("body", "", "request body")
	workers := flag.Int("workers", 16, "concurrent senders")
	phasesFlag := flag.String("phases", "", "consecutive phase lengths for the per-phase table, e.g. 2s,2s,2s")
	flag.Var(&hdrs, "header", "request header \"Name: value\" (repeatable)")
	flag.Parse()

	targets := strings.Split(*urls, ",")
	if *urls == "" || *rate <= 0 || *duration <= 0 || *workers < 1 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "pace: need -url, and -rate, -duration, -workers above 0")
		flag.Usage()
		os.Exit(2)
	}
	var phases []time.Duration
	if *phasesFlag != "" {
		for _, s := range strings.Split(*phasesFlag, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(s))
			if err != nil || d <= 0 {
				fmt.Fprintf(os.Stderr, "pace: bad phase %q\n", s)
				os.Exit(2)
			}
			phases = append(phases, d)
		}
	}

	n := int(*rate * duration.Seconds())
	out := make([]result, n)
	client := &fasthttp.Client{
		MaxConnsPerHost: *workers * 2, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		NoDefaultUserAgentHeader: true,
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range *workers {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				time.Sleep(time.Until(start.Add(time.Duration(float64(i) * float64(time.Second) / *rate))))
				req.Reset()
				req.SetRequestURI(targets[i%len(targets)])
				req.Header.SetMethod(*method)
				for _, h := range hdrs {
					req.Header.Set(h[0], h[1])
				}
				if *body != "" {
					req.SetBodyString(*body)
				}
				sent := time.Now()
				status := 0
				if err := client.Do(req, resp); err == nil {
					status = resp.StatusCode()
				}
				out[i] = result{at: sent.Sub(start), latency: time.Since(sent), status: status}
			}
		})
	}
	wg.Wait()

	var first, last time.Duration
	if n > 0 {
		first = slices.MinFunc(out, func(a, b result) int { return int(a.at - b.at) }).at
		last = slices.MaxFunc(out, func(a, b result) int { return int(a.at - b.at) }).at
	}
	all := summarize(out, 0, 1<<62)
	fmt.Printf("sent        %d to %d URL(s) at %g/s for %v, %d workers\n", n, len(targets), *rate, *duration, *workers)
	fmt.Printf("run length  %v (first to last send)\n", (last - first).Round(time.Millisecond))
	fmt.Printf("by status   %s\n", all.codes)
	fmt.Printf("admitted    %d (status 200)\n", all.ok)
	fmt.Printf("latency     p50 %v  p99 %v\n", all.p50, all.p99)
	if len(phases) == 0 {
		return
	}
	fmt.Println()
	fmt.Printf("%-6s %-14s %7s  %-28s %10s %10s\n", "phase", "window", "sent", "by status", "p50", "p99")
	var from time.Duration
	row := func(name string, from, to time.Duration, s summary) {
		window := fmt.Sprintf("%v-%v", from, to)
		if to >= 1<<62 {
			window = fmt.Sprintf("%v-", from)
		}
		fmt.Printf("%-6s %-14s %7d  %-28s %10v %10v\n", name, window, s.sent, s.codes, s.p50, s.p99)
	}
	for k, d := range phases {
		row(fmt.Sprint(k+1), from, from+d, summarize(out, from, from+d))
		from += d
	}
	if rest := summarize(out, from, 1<<62); rest.sent > 0 {
		row("rest", from, 1<<62, rest)
	}
}

// summary is what the requests sent in one window got.
type summary struct {
	sent, ok int
	codes    string // "200=1020 429=8980"
	p50, p99 time.Duration
}

// summarize tallies the requests sent in [from, to).
func summarize(out []result, from, to time.Duration) summary {
	var s summary
	counts := map[int]int{}
	var lat []time.Duration
	for _, r := range out {
		if r.at >= from && r.at < to {
			counts[r.status]++
			lat = append(lat, r.latency)
		}
	}
	s.sent, s.ok = len(lat), counts[200]
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%d=%d", code, counts[code]))
	}
	s.codes = strings.Join(parts, " ")
	if s.codes == "" {
		s.codes = "-"
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		s.p50 = lat[len(lat)*50/100].Round(time.Microsecond)
		s.p99 = lat[len(lat)*99/100].Round(time.Microsecond)
	}
	return s
}
