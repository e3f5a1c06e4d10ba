// Package memlimit derives a Go memory limit from the container's: a
// process that knows its ceiling collects garbage harder as it nears it,
// instead of growing past it and being killed by the kernel mid-recording.
package memlimit

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
)

// Fraction of the container's limit given to the Go heap and runtime: the
// rest is left to what the Go runtime does not count (the page cache of
// the files being written is the kernel's, but thread stacks and
// fragmentation are the process's).
const Fraction = 0.9

// Container returns the memory limit of the cgroup the process runs in
// (cgroup v2, else v1), read under root ("/" in production; tests pass a
// directory that mimics it). It returns 0 when there is none (no cgroup,
// or "max").
func Container(root string) (int64, error) {
	cg, v2, err := ownCgroup(root)
	if err != nil {
		return 0, err
	}
	var file string
	if v2 {
		file = path.Join(root, "sys/fs/cgroup", cg, "memory.max")
	} else {
		file = path.Join(root, "sys/fs/cgroup/memory", cg, "memory.limit_in_bytes")
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		// In a container the cgroup is usually mounted as its own root.
		if v2 {
			file = path.Join(root, "sys/fs/cgroup/memory.max")
		} else {
			file = path.Join(root, "sys/fs/cgroup/memory/memory.limit_in_bytes")
		}
		b, err = os.ReadFile(file)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read memory limit: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("memory limit %q in %s: %w", s, file, err)
	}
	// cgroup v1 reports "no limit" as a huge page-aligned number.
	if n <= 0 || n >= 1<<62 {
		return 0, nil
	}
	return n, nil
}

// ownCgroup reads /proc/self/cgroup: the unified (v2) line "0::/path", or
// the v1 memory controller's line.
func ownCgroup(root string) (cg string, v2 bool, err error) {
	f, err := os.Open(path.Join(root, "proc/self/cgroup"))
	if errors.Is(err, fs.ErrNotExist) {
		return "/", true, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read cgroup: %w", err)
	}
	defer f.Close()
	var unified string
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			unified, found = parts[2], true
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				return parts[2], false, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", false, fmt.Errorf("read cgroup: %w", err)
	}
	if !found {
		unified = "/"
	}
	return unified, true, nil
}

// Default returns the limit to give the Go runtime for a container limit
// (0: none).
func Default(container int64) int64 {
	return int64(float64(container) * Fraction)
}
