package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// runner owns every process the benchmark starts and the directory that
// holds their configs, logs and wrk outputs.
type runner struct {
	s     settings
	dir   string // work directory
	keep  bool   // dir is BENCH_RAW_DIR: kept on exit
	ports portPicker
	http  *http.Client
	hz    float64 // clock ticks per second of /proc's CPU counters
	ncpu  int

	// bins are the resolved paths of the external programs.
	bins map[string]string

	mu       sync.Mutex
	stopping bool           // set by shutdown: nothing new starts
	running  map[*proc]bool // started and not yet stopped
}

func newRunner(s settings) (*runner, error) {
	r := &runner{
		s:       s,
		ports:   portPicker{base: s.PortBase},
		hz:      clockTicks(),
		ncpu:    onlineCPUs(),
		bins:    map[string]string{},
		running: map[*proc]bool{},
		// No keep-alive: a check's idle connection must not hold a
		// draining gateway up.
		http: &http.Client{
			Timeout:   5 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true},
		},
	}
	if s.RawDir != "" {
		if err := os.MkdirAll(s.RawDir, 0o755); err != nil {
			return nil, err
		}
		dir, err := filepath.Abs(s.RawDir)
		if err != nil {
			return nil, err
		}
		r.dir, r.keep = dir, true
	} else {
		dir, err := os.MkdirTemp("", "sluice-bench.")
		if err != nil {
			return nil, err
		}
		r.dir = dir
	}
	return r, nil
}

// isStopping says whether shutdown has begun: a wrk run that ended then
// was cut short, not measured.
func (r *runner) isStopping() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopping
}

// removeDir removes the work directory unless it is BENCH_RAW_DIR.
func (r *runner) removeDir() {
	if !r.keep {
		os.RemoveAll(r.dir)
	}
}

// shutdown stops every process still running, all at once (each gets
// SIGTERM, then SIGKILL after 5 s), and refuses to start new ones.
func (r *runner) shutdown() {
	r.mu.Lock()
	r.stopping = true
	var all []*proc
	for p := range r.running {
		all = append(all, p)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Add(1)
		go func() { defer wg.Done(); r.stop(p) }()
	}
	wg.Wait()
}

// proc is one started process, the leader of its own process group.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has been waited for
	waitErr error
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

var errStopping = errors.New("stopping: nothing new is started")

// start runs argv with stdout and stderr to logPath, in a process group
// of its own so that stop reaches its children too (nginx's workers).
// extraEnv is added to this process's environment.
func (r *runner) start(name, logPath string, extraEnv []string, argv ...string) (*proc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}

	// Started under the lock, so that shutdown either sees it or has
	// already refused it.
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return nil, errStopping
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	r.running[p] = true
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop ends p's process group: SIGTERM, up to 5 s to exit, then SIGKILL.
// Whatever is left of the group once the leader is gone (workers of a
// killed nginx master) is killed too.
func (r *runner) stop(p *proc) {
	if p == nil {
		return
	}
	pgid := p.pid()
	if !p.exited() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			logf("%s did not stop within 5s of SIGTERM: SIGKILL", p.name)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	}
	if syscall.Kill(-pgid, 0) == nil {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	r.mu.Lock()
	delete(r.running, p)
	r.mu.Unlock()
}

// waitReady polls probe every 100 ms until it succeeds, p exits, or 15 s
// pass.
func (r *runner) waitReady(p *proc, probe func() error) error {
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited during startup (%v); last lines of %s:\n%s", p.name, p.waitErr, p.logPath, tail(p.logPath))
		}
		if last = probe(); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within 15s: %v; last lines of %s:\n%s", p.name, last, p.logPath, tail(p.logPath))
}

// tail is the end of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// runCheck runs a short command (a config check, a version) and returns
// its combined output.
func runCheck(argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// portSpan is how many ports from BENCH_PORT_BASE up are used, round robin.
const portSpan = 2000

// portPicker hands out free loopback ports from base upward, never the
// same one twice in a row of portSpan picks, so a proxy of the next cell
// never binds a port the last one just left.
type portPicker struct {
	base, next int
}

func (pp *portPicker) pick() (int, error) {
	for range portSpan {
		port := pp.base + pp.next%portSpan
		pp.next++
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port in 127.0.0.1:%d-%d", pp.base, pp.base+portSpan-1)
}

// answer is what one check request got back.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// predictBody is the request body of every bench request: one iris row,
// which the model worker answers at POST /predict (README, "The model
// worker"), and which the trivial backend ignores.
const predictBody = `{"input":[5.1,3.5,1.4,0.2]}`

// post sends the bench request once, as wrk's script does.
func (r *runner) post(url string) (answer, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(predictBody))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-User-Id", "user-1")
	return r.do(req)
}

func (r *runner) get(url string) (answer, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return answer{}, err
	}
	return r.do(req)
}

func (r *runner) do(req *http.Request) (answer, error) {
	resp, err := r.http.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// ok2xx turns a non-2xx answer into an error.
func ok2xx(a answer, err error) error {
	if err != nil {
		return err
	}
	if a.status/100 != 2 {
		return fmt.Errorf("status %d: %s", a.status, clip(a.body))
	}
	return nil
}

func clip(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
