// Package audit writes the auth audit log: one JSON line per refused
// request and per sampled allowed one, saying who asked for what and what
// the gateway decided. A line never holds the credential itself.
//
// Requests never wait on the log: Write hands the entry to a buffered
// channel and a single goroutine encodes and writes; when the writer falls
// behind (a slow disk, a flood of refusals), entries are dropped and
// counted rather than slowing the gateway down.
package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"time"
)

// Entry is one line of the log.
type Entry struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	// Identity is the API key's name or the token's sub; empty when the
	// request proved no identity.
	Identity string `json:"identity,omitempty"`
	// Kind is api_key or jwt for an identified request.
	Kind     string `json:"kind,omitempty"`
	Route    string `json:"route"`
	Method   string `json:"method"`
	Path     string `json:"path"`
	Decision string `json:"decision"` // allowed, unauthorized or forbidden
	Status   int    `json:"status"`
	ClientIP string `json:"client_ip"`
	// Reason says why a request was refused ("unknown API key", "token
	// expired"); empty when allowed.
	Reason string `json:"reason,omitempty"`
}

// Stdout is the file name that writes to the process's standard output.
const Stdout = "stdout"

// queueLen is how many entries may wait for the writer.
const queueLen = 4096

// Log is an open audit log.
type Log struct {
	// Target is the file path, or Stdout.
	Target  string
	sample  float64
	queue   chan Entry
	dropped func()
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once

	mu   sync.Mutex // guards out between writes and Reopen
	out  io.Writer
	file *os.File // nil for stdout
}

// Open starts a log writing to target (a path, appended to and created
// with mode 0600, or Stdout). sampleAllowed is the share of allowed
// requests to write; dropped is called for each entry not written.
func Open(target string, sampleAllowed float64, dropped func()) (*Log, error) {
	l := &Log{Target: target, sample: sampleAllowed, queue: make(chan Entry, queueLen), dropped: dropped,
		done: make(chan struct{}), stopped: make(chan struct{})}
	if err := l.open(); err != nil {
		return nil, err
	}
	go l.run()
	return l, nil
}

func (l *Log) open() error {
	if l.Target == Stdout {
		l.out, l.file = os.Stdout, nil
		return nil
	}
	f, err := os.OpenFile(l.Target, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	l.out, l.file = f, f
	return nil
}

// Reopen opens the file again under its name, for log rotation: after
// logrotate has moved the file away, new lines go to a new one (as nginx
// does on USR1). On failure the old file stays in use.
func (l *Log) Reopen() error {
	if l.Target == Stdout {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.file
	if err := l.open(); err != nil {
		l.out, l.file = old, old
		return err
	}
	old.Close()
	return nil
}

// Sample is the share of allowed requests written.
func (l *Log) Sample() float64 { return l.sample }

// SampleAllowed reports whether an allowed request should be written.
func (l *Log) SampleAllowed() bool {
	return l.sample > 0 && (l.sample >= 1 || rand.Float64() < l.sample)
}

// Write queues an entry; it never blocks. After Close, entries are
// dropped.
func (l *Log) Write(e Entry) {
	select {
	case <-l.done:
		l.dropped()
		return
	default:
	}
	select {
	case l.queue <- e:
	default:
		l.dropped()
	}
}

func (l *Log) run() {
	defer close(l.stopped)
	var buf []byte
	for {
		select {
		case e := <-l.queue:
			buf = l.appendEntry(buf[:0], e)
			// Write what else is waiting in the same system call.
			for more := true; more && len(buf) < 64<<10; {
				select {
				case e := <-l.queue:
					buf = l.appendEntry(buf, e)
				default:
					more = false
				}
			}
			l.flush(buf)
		case <-l.done:
			for {
				select {
				case e := <-l.queue:
					l.flush(l.appendEntry(buf[:0], e))
				default:
					l.closeFile()
					return
				}
			}
		}
	}
}

func (l *Log) appendEntry(buf []byte, e Entry) []byte {
	line, err := json.Marshal(e)
	if err != nil { // strings and numbers only: cannot happen
		l.dropped()
		return buf
	}
	buf = append(buf, line...)
	return append(buf, '\n')
}

func (l *Log) flush(buf []byte) {
	if len(buf) == 0 {
		return
	}
	l.mu.Lock()
	_, err := l.out.Write(buf)
	l.mu.Unlock()
	if err != nil {
		// The lines are lost; count each one.
		for _, c := range buf {
			if c == '\n' {
				l.dropped()
			}
		}
	}
}

func (l *Log) closeFile() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		l.file.Close()
	}
}

// Close writes what is queued and closes the file. Writes after Close
// are dropped; Close may be called more than once.
func (l *Log) Close() {
	l.once.Do(func() { close(l.done) })
	<-l.stopped
}
