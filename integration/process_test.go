package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the rtmrec binary built once for the package's tests, or the
// one RTMREC_BIN names (to test a release build).
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func rtmrecBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binPath = os.Getenv("RTMREC_BIN"); binPath != "" {
			return
		}
		dir, err := os.MkdirTemp("", "rtmrec-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "rtmrec")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "github.com/rtmrec/rtmrec/cmd/rtmrec")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// rtmrecProcess is a running rtmrec with its log captured.
type rtmrecProcess struct {
	t       *testing.T
	cmd     *exec.Cmd
	addr    string
	admin   string
	dataDir string
	mu      sync.Mutex
	logs    strings.Builder
	exited  chan struct{}
	waitErr error
}

// runRTMRec starts the binary with the given flags (plus -listen on a free
// loopback port unless given) and waits until it listens.
func runRTMRec(t *testing.T, dataDir string, args ...string) *rtmrecProcess {
	t.Helper()
	p, err := tryRunRTMRec(t, dataDir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func tryRunRTMRec(t *testing.T, dataDir string, args ...string) (*rtmrecProcess, error) {
	t.Helper()
	full := []string{"-data-dir", dataDir, "-log-level", "debug"}
	if !hasFlag(args, "-listen") {
		full = append(full, "-listen", "127.0.0.1:0")
	}
	full = append(full, args...)
	cmd := exec.Command(rtmrecBinary(t), full...)
	cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1")
	// Die with the test binary, so a crashed test leaves no server behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &rtmrecProcess{t: t, cmd: cmd, dataDir: dataDir, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan [2]string, 1)
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			var rec struct {
				Msg   string `json:"msg"`
				Addr  string `json:"addr"`
				Admin string `json:"admin_addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "rtmrec listening" {
				ready <- [2]string{rec.Addr, rec.Admin}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		// Wait closes the pipe: only after everything was read from it, so
		// the log holds the process's last lines once it has exited.
		<-read
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("rtmrec log:\n%s", p.log())
		}
	})
	select {
	case a := <-ready:
		p.addr, p.admin = a[0], a[1]
		return p, nil
	case <-p.exited:
		return p, fmt.Errorf("rtmrec exited before listening (%v):\n%s", p.waitErr, p.log())
	case <-time.After(30 * time.Second):
		return p, fmt.Errorf("rtmrec did not start:\n%s", p.log())
	}
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

func (p *rtmrecProcess) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *rtmrecProcess) wsURL() string   { return "ws://" + p.addr + "/rtm" }
func (p *rtmrecProcess) httpURL() string { return "http://" + p.addr }

// kill sends SIGKILL, as a crash would.
func (p *rtmrecProcess) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// terminate sends SIGTERM and waits for the exit, returning its code.
func (p *rtmrecProcess) terminate(timeout time.Duration) int {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.t.Fatalf("rtmrec did not exit within %v of SIGTERM", timeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *rtmrecProcess) get(path string) (int, string) {
	return p.getFrom(p.httpURL(), path)
}

func (p *rtmrecProcess) getFrom(base, path string) (int, string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// requireTool finds a tool or skips (fails under RTMREC_REQUIRE_TOOLS=1).
func requireTool(t *testing.T, name, why string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not installed (%s): run scripts/install-tools.sh", name, why)
	if os.Getenv("RTMREC_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
