package testutil

import (
	"bufio"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RedisServer is a redis-server child process on a loopback port.
type RedisServer struct {
	// Addr is 127.0.0.1:PORT.
	Addr string
	cmd  *exec.Cmd
}

// Redis starts a throwaway redis-server on a free loopback port, without
// persistence, killed when the test ends, and returns its address. Without
// redis-server installed the test is skipped (`make test` installs it).
func Redis(t testing.TB) string {
	return StartRedis(t, ClosedAddr(t)).Addr
}

// StartRedis starts redis-server on addr (127.0.0.1:PORT), e.g. again on the
// address of one that was stopped, and waits until it answers PING.
func StartRedis(t testing.TB, addr string) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed: `make test` installs it (Debian package redis-server)")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--port", port, "--bind", host, "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	s := &RedisServer{Addr: addr, cmd: cmd}
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for !ping(addr) {
		if time.Now().After(deadline) {
			s.Stop()
			t.Fatalf("redis-server on %s did not answer PING within 10s", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s
}

// Stop kills the server and waits for it to exit; stopping twice is fine.
func (s *RedisServer) Stop() {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Kill() // a paused process dies of SIGKILL too
	_ = s.cmd.Wait()
}

// Pause stops the server (SIGSTOP) without closing its port: clients time
// out, as with a Redis that is alive but too slow.
func (s *RedisServer) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume lets a paused server go on (SIGCONT).
func (s *RedisServer) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

func ping(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}
