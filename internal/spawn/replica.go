package spawn

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-gw/sluice/internal/backend"
)

// replica is one worker process slot at one address.
type replica struct {
	pool, addr string
	spec       spec
	argv       []string
	backend    *backend.Backend
	lease      *backend.Lease

	ready     chan struct{} // closed the first time it answers /health
	readyOnce sync.Once
	stop      chan struct{} // closed to ask the loop to stop
	stopOnce  sync.Once
	done      chan struct{} // closed when the loop has ended and the process is gone
}

func (r *replica) requestStop() { r.stopOnce.Do(func() { close(r.stop) }) }
func (r *replica) markReady()   { r.readyOnce.Do(func() { close(r.ready) }) }

// run is the replica's loop; see the package comment for its states.
func (s *Supervisor) run(r *replica) {
	// In this order on the way out: the backend state and the address are
	// given back before done is closed, so whoever waits on done (a rollout
	// replacing the replica in place) may take the address at once.
	defer close(r.done)
	defer func() {
		s.mu.Lock()
		delete(s.used, r.addr)
		s.mu.Unlock()
	}()
	defer r.lease.Release()
	log := s.log.With("pool", r.pool, "addr", r.addr)
	backoff := initialBackoff
	for {
		started := time.Now()
		cmd, exited, err := s.launch(r)
		if err != nil {
			log.Error("cannot start worker", "command", r.argv, "err", err)
		} else {
			pid := cmd.Process.Pid
			r.backend.SetSpawnedPID(int64(pid))
			log.Info("worker started", "pid", pid)
			outcome, exitErr := s.serve(r, exited)
			if outcome != crashed {
				s.terminate(r, cmd, exited)
			}
			r.backend.SetSpawnedPID(0)
			// Connections kept alive to the old process are dead now.
			// They go before the address is given back or the next
			// process starts there, which would otherwise be handed
			// them and fail its first requests.
			s.registry.CloseIdle(r.addr)
			switch outcome {
			case stopped:
				log.Info("worker stopped", "pid", pid)
				return
			case crashed:
				log.Warn("worker exited; restarting", "pid", pid, "status", exitStatus(exitErr), "backoff", backoff.String())
			case unhealthy:
				log.Warn("worker did not answer "+healthPath+" in time; restarting", "pid", pid, "start_timeout", r.spec.startTimeout.String())
			}
		}
		r.backend.AddRestart()
		s.restarts(r.pool)
		if time.Since(started) >= stableAfter {
			backoff = initialBackoff
		}
		select {
		case <-r.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

type outcome int

const (
	stopped   outcome = iota // asked to stop
	crashed                  // the process exited on its own
	unhealthy                // it never answered /health within start_timeout
)

// serve waits for the process to become healthy (then puts it in
// rotation), to exit, or for a stop request. Whatever ends it, the
// backend is out of rotation when serve returns.
func (s *Supervisor) serve(r *replica, exited <-chan error) (outcome, error) {
	defer r.backend.SetDown(true)
	healthy := make(chan struct{})
	giveUp := make(chan struct{})
	defer close(giveUp)
	go s.probe(r, healthy, giveUp)
	timeout := time.NewTimer(r.spec.startTimeout)
	defer timeout.Stop()
	for {
		select {
		case <-healthy:
			r.backend.SetDown(false)
			r.markReady()
			healthy = nil
			timeout.Stop()
		case <-timeout.C:
			return unhealthy, nil
		case err := <-exited:
			return crashed, err
		case <-r.stop:
			return stopped, nil
		}
	}
}

// probe polls GET /health until it answers 200, then signals healthy.
func (s *Supervisor) probe(r *replica, healthy chan<- struct{}, giveUp <-chan struct{}) {
	client := &http.Client{Timeout: time.Second}
	url := "http://" + r.addr + healthPath
	tick := time.NewTicker(healthInterval)
	defer tick.Stop()
	for {
		select {
		case <-giveUp:
			return
		case <-tick.C:
		}
		resp, err := client.Get(url)
		if err != nil {
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			select {
			case healthy <- struct{}{}:
			case <-giveUp:
			}
			return
		}
	}
}

// launch starts the process in its own process group (so a terminal's
// Ctrl-C reaches the gateway alone, which then stops the workers in order)
// with SIGTERM as its parent-death signal (so workers do not outlive a
// gateway that was killed).
func (s *Supervisor) launch(r *replica) (*exec.Cmd, <-chan error, error) {
	cmd := exec.Command(r.argv[0], r.argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	out := s.out.prefixed(r.pool + " " + r.addr)
	cmd.Stdout, cmd.Stderr = out, out
	// A grandchild holding the output pipe must not keep Wait from returning.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		out.flush()
		exited <- err
	}()
	return cmd, exited, nil
}

// terminate drains and stops a running process: it waits (bounded) for the
// requests still running on it, sends SIGTERM to its process group, and
// SIGKILL after stop_timeout.
func (s *Supervisor) terminate(r *replica, cmd *exec.Cmd, exited <-chan error) {
	for deadline := time.Now().Add(maxDrain); r.backend.Pending() > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(r.spec.stopTimeout):
		s.log.Warn("worker ignored SIGTERM; killing it", "pool", r.pool, "addr", r.addr, "pid", pgid)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	}
}

func exitStatus(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// lineWriter writes whole lines from many replicas to one stream, each
// prefixed with where it came from, without interleaving them.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (lw *lineWriter) prefixed(prefix string) *prefixWriter {
	return &prefixWriter{lw: lw, prefix: []byte("[" + prefix + "] ")}
}

// prefixWriter buffers a replica's output up to each newline.
type prefixWriter struct {
	lw      *lineWriter
	prefix  []byte
	mu      sync.Mutex
	partial []byte
}

// maxLine bounds a line held while waiting for its newline.
const maxLine = 64 << 10

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.partial = append(p.partial, b...)
			if len(p.partial) >= maxLine {
				p.emit(nil)
			}
			break
		}
		p.emit(b[:i+1])
		b = b[i+1:]
	}
	return n, nil
}

// flush writes a last line that had no newline.
func (p *prefixWriter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.partial) > 0 {
		p.emit([]byte("\n"))
	}
}

func (p *prefixWriter) emit(tail []byte) {
	line := make([]byte, 0, len(p.prefix)+len(p.partial)+len(tail))
	line = append(append(append(line, p.prefix...), p.partial...), tail...)
	p.partial = p.partial[:0]
	p.lw.mu.Lock()
	_, _ = p.lw.w.Write(line)
	p.lw.mu.Unlock()
}
