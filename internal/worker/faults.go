package worker

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// fault is what the fault injector decided for one prediction request.
type fault uint8

const (
	faultNone fault = iota
	faultFail       // answer Config.FailStatus
	faultHang       // accept, never answer
)

// faults decides, per prediction request, whether it hangs, fails or is
// answered, and how long it waits first. One uniform draw decides the
// outcome, so HangRate and FailRate are exact fractions of all requests
// (which is why their sum may not pass 1). It also adds the -perturb
// noise to the answers (perturb.go).
type faults struct {
	latency, jitter    time.Duration
	hangRate, failRate float64
	random             func() float64 // uniform in [0,1); math/rand/v2 unless a test sets it

	// perturbing says whether -perturb adds any noise; confNoise is the
	// most added to each confidence, classNoise the most added to each
	// probability, by class index (nil when no class is perturbed).
	perturbing bool
	confNoise  float64
	classNoise []float64
}

func (f *faults) decide() fault {
	if f.hangRate == 0 && f.failRate == 0 {
		return faultNone
	}
	r := f.random()
	switch {
	case r < f.hangRate:
		return faultHang
	case r < f.hangRate+f.failRate:
		return faultFail
	}
	return faultNone
}

// delay is latency ± a uniform jitter, never below zero.
func (f *faults) delay() time.Duration {
	d := f.latency
	if f.jitter > 0 {
		d += time.Duration((2*f.random() - 1) * float64(f.jitter))
	}
	return max(d, 0)
}

// newFaults builds the fault injector of a model of these classes. A
// -perturb field that names none of them is ignored: ValidateFor rejects
// it first.
func newFaults(cfg Config, classes []string) *faults {
	f := &faults{latency: cfg.Latency, jitter: cfg.Jitter, hangRate: cfg.HangRate, failRate: cfg.FailRate, random: rand.Float64}
	for _, p := range cfg.Perturb {
		if p.Amount <= 0 {
			continue
		}
		if p.Field == perturbConfidence {
			f.confNoise = p.Amount
		} else if class, ok := strings.CutPrefix(p.Field, perturbClass); ok {
			if i := slices.Index(classes, class); i >= 0 {
				if f.classNoise == nil {
					f.classNoise = make([]float64, len(classes))
				}
				f.classNoise[i] = p.Amount
			}
		}
	}
	f.perturbing = f.confNoise > 0 || f.classNoise != nil
	return f
}

// validateFaults returns every problem with the fault settings at once.
func (c Config) validateFaults() error {
	var errs []error
	rate := func(name string, v float64) {
		if !(v >= 0 && v <= 1) { // NaN fails both
			errs = append(errs, fmt.Errorf("-%s must be a fraction from 0 to 1, got %v", name, v))
		}
	}
	rate("fail-rate", c.FailRate)
	rate("hang-rate", c.HangRate)
	if c.FailRate >= 0 && c.HangRate >= 0 && c.FailRate+c.HangRate > 1 {
		errs = append(errs, fmt.Errorf("-fail-rate + -hang-rate must not pass 1, got %v + %v: they are fractions of the same requests", c.FailRate, c.HangRate))
	}
	if c.FailStatus != 0 && (c.FailStatus < 100 || c.FailStatus > 599) {
		errs = append(errs, fmt.Errorf("-fail-status must be an HTTP status from 100 to 599, got %d", c.FailStatus))
	}
	if c.Latency < 0 {
		errs = append(errs, fmt.Errorf("-latency must not be negative, got %v", c.Latency))
	}
	if c.Jitter < 0 {
		errs = append(errs, fmt.Errorf("-jitter must not be negative, got %v", c.Jitter))
	}
	// The fields name the model's classes: ValidateFor checks them.
	seen := make(map[string]int, len(c.Perturb))
	for _, p := range c.Perturb {
		// Noise past 1 would not be "slightly different" for a
		// probability, and could overflow an FP32 output to infinity.
		if !(p.Amount >= 0 && p.Amount <= 1) { // NaN fails both
			errs = append(errs, fmt.Errorf("-perturb %s: the amount must be a finite number from 0 to 1, got %v", quoteShort(p.Field), p.Amount))
		}
		if seen[p.Field]++; seen[p.Field] == 2 {
			errs = append(errs, fmt.Errorf("-perturb names %s more than once: give each field once", quoteShort(p.Field)))
		}
	}
	return errors.Join(errs...)
}

// hangs holds the connections of hung requests. A hung request is taken
// out of the HTTP server (fasthttp's Hijack, with no response), so it
// costs no handler and the server's drain does not wait for it; what
// holds it is one goroutine here reading the connection until the client
// closes it. release wakes and waits for all of them, so none outlives
// Shutdown.
type hangs struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// hold keeps c unanswered until the client closes it or release is
// called. It is a fasthttp.HijackHandler: fasthttp closes c after it.
func (h *hangs) hold(c net.Conn) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	if h.conns == nil {
		h.conns = make(map[net.Conn]struct{})
	}
	h.conns[c] = struct{}{}
	h.wg.Add(1)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.conns, c)
		h.mu.Unlock()
		h.wg.Done()
	}()
	// Whatever the client sends more (a pipelined request) is read and
	// dropped: the connection is dead to it, as with a stuck server.
	var buf [512]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			return
		}
	}
}

// release ends every held connection and waits for their goroutines; a
// request that rolls a hang afterwards is closed at once.
func (h *hangs) release() {
	h.mu.Lock()
	h.closed = true
	for c := range h.conns {
		// fasthttp's hijacked conn ignores Close (it closes the socket
		// itself when hold returns); a past deadline ends the Read.
		_ = c.SetReadDeadline(time.Unix(1, 0))
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// count says how many connections are held now.
func (h *hangs) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}
