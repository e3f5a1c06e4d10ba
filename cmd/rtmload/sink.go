package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// uploadSink is a local upload target answering 200 to every PUT, so that
// -record can run without an object store. With a directory it keeps each
// upload there, named by the last segment of its path, for -verify-files.
type uploadSink struct {
	url string
	srv *http.Server
	dir string // "" discards the bodies

	mu    sync.Mutex
	n     int
	bytes int64
	files map[string]bool
}

func startSink(dir string) (*uploadSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s := &uploadSink{url: "http://" + ln.Addr().String(), dir: dir, files: map[string]bool{}}
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(s.put)}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *uploadSink) put(w http.ResponseWriter, r *http.Request) {
	name := path.Base(r.URL.Path)
	var n int64
	var err error
	if s.dir == "" || name == "/" || name == "." {
		n, err = io.Copy(io.Discard, r.Body)
	} else {
		n, err = s.keep(name, r.Body)
	}
	if err != nil {
		http.Error(w, "short body", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.n++
	s.bytes += n
	if s.dir != "" {
		s.files[filepath.Join(s.dir, name)] = true
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// keep writes body to dir/name whole or not at all: an upload cut short
// (a retry follows) never leaves half a file to verify.
func (s *uploadSink) keep(name string, body io.Reader) (int64, error) {
	f, err := os.CreateTemp(s.dir, ".part-*")
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(s.dir, name))
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return n, err
}

func (s *uploadSink) stats() (int, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.bytes
}

// kept lists the files kept, in name order.
func (s *uploadSink) kept() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.files))
	for f := range s.files {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

func (s *uploadSink) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// verifyFiles decodes every file in full with ffmpeg, conc at a time, and
// returns how many decode without an error and, for the others, the first
// file's error. A file plays if `ffmpeg -v error -xerror` decodes all of it
// and prints nothing. A file that does not is copied into keepDir (when
// set), to be looked at after the run.
func verifyFiles(ctx context.Context, ffmpeg string, files []string, conc int, keepDir string) (valid int, invalid []string) {
	var mu sync.Mutex
	forEach(conc, len(files), func(i int) {
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, ffmpeg, "-nostdin", "-v", "error", "-xerror", "-i", files[i], "-enc_time_base", "-1", "-f", "null", "-")
		cmd.Stderr = &stderr
		err := cmd.Run()
		mu.Lock()
		defer mu.Unlock()
		if err != nil || stderr.Len() > 0 {
			msg := strings.TrimSpace(stderr.String())
			if msg == "" && err != nil {
				msg = err.Error()
			}
			invalid = append(invalid, filepath.Base(files[i])+": "+firstLine(msg))
			if keepDir != "" {
				if b, rerr := os.ReadFile(files[i]); rerr == nil {
					_ = os.WriteFile(filepath.Join(keepDir, "undecodable-"+filepath.Base(files[i])), b, 0o644)
				}
			}
			return
		}
		valid++
	})
	sort.Strings(invalid)
	return valid, invalid
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
