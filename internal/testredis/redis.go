// Package testredis runs a real redis-server (the Debian package, which
// scripts/install-tools.sh installs) on a free loopback port with its data
// in a temp dir, for tests of the cluster. Without the binary the test
// skips with the reason (and fails under RTMREC_REQUIRE_TOOLS=1).
package testredis

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is one redis-server process, restartable on the same port and
// data directory.
type Server struct {
	// Addr is host:port; URL is the -redis-url form.
	Addr, URL string
	t         testing.TB
	bin, dir  string
	port      int
	durable   bool

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Options choose how the server keeps its data.
type Options struct {
	// Durable turns on the append-only file with an fsync per write, so
	// that a kill -9 loses nothing that was acknowledged: the configuration
	// the cluster documentation recommends.
	Durable bool
}

// Find looks for redis-server: $RTMREC_REDIS_SERVER, then PATH.
func Find(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("RTMREC_REDIS_SERVER"); p != "" {
		return p
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	msg := "redis-server not installed (the cluster tests need a real Redis): run scripts/install-tools.sh"
	if os.Getenv("RTMREC_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Start runs a redis-server for the test; it is killed when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{t: t, bin: Find(t), dir: t.TempDir(), durable: opts.Durable}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	s.URL = "redis://" + s.Addr
	t.Cleanup(s.Kill)
	s.start()
	return s
}

func (s *Server) start() {
	s.t.Helper()
	args := []string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(s.port), "--dir", s.dir,
		"--save", "", "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
	}
	if s.durable {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	s.run(args)
}

// run starts the binary with args and waits until it answers PING.
func (s *Server) run(args []string) {
	s.t.Helper()
	// A restart may find the port still held by the killed process's
	// sockets for a moment.
	deadline := time.Now().Add(15 * time.Second)
	for {
		cmd := exec.Command(s.bin, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		// Die with the test binary, so a panicking test leaves no server behind.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			s.t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		if s.waitReady(exited, deadline) {
			s.mu.Lock()
			s.cmd, s.exited = cmd, exited
			s.mu.Unlock()
			return
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server did not start on %s:\n%s", s.Addr, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitReady polls PING until the server answers, it exits, or the deadline.
func (s *Server) waitReady(exited <-chan struct{}, deadline time.Time) bool {
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			fmt.Fprint(c, "PING\r\n")
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if line == "+PONG\r\n" {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Kill stops the server with SIGKILL (no chance to save anything) and
// waits for it to exit. Killing a stopped server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// Restart starts the server again on the same port and data directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// StartSentinel runs a Sentinel that monitors s as master "name", and
// returns its address; it is killed when the test ends.
func (s *Server) StartSentinel(name string) string {
	s.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := s.t.TempDir()
	// Sentinel rewrites its configuration file, so it gets one of its own.
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\n", port, dir, name, s.port)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		s.t.Fatal(err)
	}
	sentinel := &Server{t: s.t, bin: s.bin, dir: dir, port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	s.t.Cleanup(sentinel.Kill)
	sentinel.run([]string{conf, "--sentinel"})
	return sentinel.Addr
}
