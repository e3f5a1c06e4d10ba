// Package testminio runs a real MinIO server for tests of s3:// uploads.
// scripts/minio.sh builds the binary once into a tool cache; without it the
// test skips with the reason (and fails under RTMREC_REQUIRE_TOOLS=1).
package testminio

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Find looks for the MinIO server: $RTMREC_MINIO, the cache that
// scripts/minio.sh fills, then PATH.
func Find(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RTMREC_MINIO"); p != "" {
		return p
	}
	tools := os.Getenv("RTMREC_TOOLS")
	if tools == "" {
		if home, err := os.UserHomeDir(); err == nil {
			tools = filepath.Join(home, ".cache", "rtmrec-tools")
		}
	}
	if p := filepath.Join(tools, "bin", "minio"); tools != "" && exists(p) {
		return p
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	if os.Getenv("RTMREC_REQUIRE_TOOLS") == "1" {
		t.Fatal("minio not installed: run scripts/minio.sh")
	}
	t.Skip("minio not installed: run scripts/minio.sh")
	return ""
}

// Start runs MinIO on a free loopback port with a temp data dir and
// returns its endpoint; it is killed when the test ends.
func Start(t *testing.T, user, pass string) string {
	t.Helper()
	bin := Find(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	console, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	consoleAddr := console.Addr().String()
	console.Close()

	cmd := exec.Command(bin, "server", "--quiet", "--address", addr, "--console-address", consoleAddr, t.TempDir())
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+user, "MINIO_ROOT_PASSWORD="+pass,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Die with the test binary, so a panicking test leaves no server behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	endpoint := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("minio not ready after 30s:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	http.DefaultClient.CloseIdleConnections()
	return endpoint
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
