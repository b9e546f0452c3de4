// Package testutil holds helpers the gateway's tests share: real fasthttp
// backends on loopback ports, raw HTTP over a socket, and config files.
package testutil

import (
	"bufio"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Backend serves h on a fresh loopback port until the test ends and
// returns its address.
func Backend(t testing.TB, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: h, CloseOnShutdown: true}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown() })
	return ln.Addr().String()
}

// Named is a backend that answers 200 with its name as the body and in
// the X-Backend header.
func Named(t testing.TB, name string) string {
	return Backend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("X-Backend", name)
		ctx.SetBodyString(name)
	})
}

// ClosedAddr returns a loopback address nothing listens on.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// WriteFile writes data to dir/name and returns the path.
func WriteFile(t testing.TB, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Raw sends raw bytes on a new connection and reads one response. The
// response is the caller's; release it with fasthttp.ReleaseResponse or
// let it be collected.
func Raw(t testing.TB, addr, raw string, wait time.Duration) (*fasthttp.Response, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if wait > 0 {
		_ = conn.SetDeadline(time.Now().Add(wait))
	}
	if _, err := conn.Write([]byte(raw)); err != nil {
		return nil, err
	}
	resp := &fasthttp.Response{}
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		return nil, err
	}
	return resp, nil
}

// Client is a fasthttp client with short timeouts for tests.
func Client() *fasthttp.Client {
	return &fasthttp.Client{ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, MaxIdemponentCallAttempts: 1}
}

// RestartableAddr returns a free loopback address for a server a test
// stops and starts again on the same port. The port comes from below the
// kernel's ephemeral range (32768 and up on Linux), from which ClosedAddr
// and every client connection's local port are drawn: a stopped server's
// ephemeral port can be taken by any connection of a test running
// alongside, and the restart then fails to bind.
func RestartableAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(12000+rand.IntN(8000)))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port in 12000-19999")
	return ""
}

// Eventually polls cond every 5ms until it holds, failing the test once
// timeout has passed without it.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// HeapAlloc is the live heap after a full collection, for tests that bound
// what a structure keeps.
func HeapAlloc() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
