// Package deploy holds the deployment files (Dockerfile, systemd unit,
// environment example); its tests check them with the tools an operator's
// CI would use.
package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// requireTool finds a tool or skips with the reason (a failure under
// RTMREC_REQUIRE_TOOLS=1, as in CI).
func requireTool(t *testing.T, name, why string) string {
	t.Helper()
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not installed (%s): run scripts/install-deploy-lint.sh", name, why)
	if os.Getenv("RTMREC_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestDockerfileLints runs hadolint when one is installed, and otherwise
// the pinned dockerlinter of deploy/lint (hadolint's rules in JavaScript,
// with shellcheck on RUN lines): no finding of any level is accepted.
func TestDockerfileLints(t *testing.T) {
	if hadolint, err := exec.LookPath("hadolint"); err == nil {
		if out, err := run(t, hadolint, "Dockerfile"); err != nil || out != "" {
			t.Fatalf("hadolint: %v\n%s", err, out)
		}
		return
	}
	linter, _ := filepath.Abs(filepath.Join("lint", "node_modules", ".bin", "dockerlinter"))
	if _, err := os.Stat(linter); err != nil {
		linter = requireTool(t, "dockerlinter", "Dockerfile linter from deploy/lint; hadolint is not installable here either")
	}
	requireTool(t, "shellcheck", "dockerlinter checks RUN lines with it")
	out, err := run(t, linter, "-f", "Dockerfile", "-e", "info")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("dockerlinter: %v\n%s", err, out)
	}
	// The linter must be able to fail: the same checks on a Dockerfile
	// with the mistakes this one avoids.
	bad := filepath.Join(t.TempDir(), "Dockerfile")
	if err := os.WriteFile(bad, []byte("FROM golang\nUSER nonroot\nWORKDIR data\nRUN cd /src && go build\nCMD rtmrec\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, linter, "-f", bad, "-e", "info"); err == nil || !strings.Contains(out, "EF0004") {
		t.Fatalf("the linter passed a Dockerfile with an untagged image: %v\n%s", err, out)
	}
}

// instructions returns the Dockerfile's final stage, one instruction per
// element with continuation lines joined.
func finalStage(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	cur := ""
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if next, ok := strings.CutSuffix(line, "\\"); ok {
			cur += next + " "
			continue
		}
		all = append(all, cur+line)
		cur = ""
	}
	last := 0
	for i, ins := range all {
		if strings.HasPrefix(ins, "FROM ") {
			last = i
		}
	}
	return all[last:]
}

// TestDockerfileDataDirBelongsToTheRuntimeUser checks what no linter does:
// the data directory is created owned by the user rtmrec runs as, under
// any builder (COPY --chown, WORKDIR before USER), and the environment
// points rtmrec at it.
func TestDockerfileDataDirBelongsToTheRuntimeUser(t *testing.T) {
	stage := finalStage(t)
	index := func(re string) (int, []string) {
		r := regexp.MustCompile(re)
		for i, ins := range stage {
			if m := r.FindStringSubmatch(ins); m != nil {
				return i, m
			}
		}
		t.Fatalf("final stage has no instruction matching %s:\n%s", re, strings.Join(stage, "\n"))
		return 0, nil
	}
	workdirAt, workdir := index(`^WORKDIR (\S+)$`)
	userAt, user := index(`^USER (\S+)$`)
	copyAt, chown := index(`^COPY --from=\S+ --chown=(\S+) \S+ ` + regexp.QuoteMeta(workdir[1]) + `$`)
	if !(copyAt < workdirAt && workdirAt < userAt) {
		t.Fatalf("want COPY --chown of %s, then WORKDIR, then USER; got them at %d, %d, %d", workdir[1], copyAt, workdirAt, userAt)
	}
	if chown[1] != user[1] || strings.HasPrefix(user[1], "0") || strings.HasPrefix(user[1], "root") {
		t.Fatalf("data directory owned by %s, rtmrec runs as %s", chown[1], user[1])
	}
	index(`RTMREC_DATA_DIR=` + regexp.QuoteMeta(workdir[1]) + `\b`)
	index(`^VOLUME \["` + regexp.QuoteMeta(workdir[1]) + `"\]$`)
	index(`^EXPOSE .*\b50000/udp\b`)
}

// TestDockerignoreKeepsOutWhatMustNotShip checks the build context's
// exclusions: real recordings (data), history, build output and test
// artifacts.
func TestDockerignoreKeepsOutWhatMustNotShip(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", ".dockerignore"))
	if err != nil {
		t.Fatalf("no .dockerignore at the build context's root: %v", err)
	}
	var patterns []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, strings.TrimSuffix(line, "/"))
		}
	}
	for _, want := range []string{"data", ".git", "bin", "**/node_modules", "integration/screenshots"} {
		if !slices.Contains(patterns, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
	for _, p := range patterns {
		if strings.HasPrefix(p, "!") {
			t.Errorf(".dockerignore re-includes %s", p)
		}
	}
}

// unitCopy writes the unit with ExecStart pointing at a file that exists
// here (verify checks that it does).
func unitCopy(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("rtmrec.service")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("ExecStart=/usr/local/bin/rtmrec\n")) {
		t.Fatal("ExecStart is not /usr/local/bin/rtmrec, which docs/deploy.md installs")
	}
	unit := filepath.Join(t.TempDir(), "rtmrec.service")
	b = bytes.Replace(b, []byte("ExecStart=/usr/local/bin/rtmrec"), []byte("ExecStart="+exe), 1)
	if err := os.WriteFile(unit, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return unit
}

func TestSystemdUnitVerifies(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze", "checks the systemd unit")
	unit := unitCopy(t)
	b, _ := os.ReadFile(unit)
	// A User= that nothing creates fails with 217/USER; systemd allocates
	// a DynamicUser and its StateDirectory itself.
	for _, want := range []string{"DynamicUser=yes", "StateDirectory=rtmrec"} {
		if !regexp.MustCompile(`(?m)^` + want + `$`).Match(b) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	if regexp.MustCompile(`(?m)^(User|Group)=`).Match(b) {
		t.Error("the unit names a User or Group that no sysusers.d file creates")
	}
	out, err := run(t, analyze, "verify", unit)
	// verify exits 0 on unknown keys and misspelt values, but says so.
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdUnitIsHardened asks systemd-analyze's security review (offline,
// from the file) for an exposure of at most 2.0 out of 10, a transient
// non-root user and the sandbox the unit claims.
func TestSystemdUnitIsHardened(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze", "reviews the systemd unit's sandbox")
	unit := unitCopy(t)
	out, err := run(t, analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", unit)
	t.Log(lastLine(out))
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	for _, want := range []string{"User=/DynamicUser=", "NoNewPrivileges=", "ProtectSystem=", "ProtectHome=", "PrivateTmp=", "SystemCallFilter=~@privileged", "CapabilityBoundingSet=~CAP_SYS_ADMIN"} {
		if !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool {
			return strings.Contains(l, "✓ "+want)
		}) {
			t.Errorf("security review does not pass %s", want)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
