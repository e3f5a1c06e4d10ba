package console

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultMaxUploadBytes bounds one upload to the sink: far above any test
// recording, far below a full disk.
const DefaultMaxUploadBytes int64 = 2 << 30

// maxNameLen bounds an upload's name (one path element of the URL).
const maxNameLen = 200

// UploadSink stores recordings PUT by the server into one directory and
// serves them back, so the console can play what was recorded. It is the
// local stand-in for a bucket: only a 200 counts as success for rtmrec, so
// it answers 200 once the whole body is on disk.
type UploadSink struct {
	dir      string
	maxBytes int64
	log      *slog.Logger
}

// NewUploadSink creates dir if needed. maxBytes <= 0 means
// DefaultMaxUploadBytes.
func NewUploadSink(dir string, maxBytes int64, log *slog.Logger) (*UploadSink, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxUploadBytes
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("upload sink: %w", err)
	}
	return &UploadSink{dir: dir, maxBytes: maxBytes, log: log}, nil
}

// UploadInfo is one stored upload, as listed by the sink.
type UploadInfo struct {
	Name        string    `json:"name"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type"`
	ModTime     time.Time `json:"mod_time"`
	URL         string    `json:"url"`
}

// ValidName reports whether name may be used as an upload's file name: one
// path element of letters, digits, '.', '-' and '_', not starting with a
// dot (which also rules out "." and ".."). Anything else is refused rather
// than cleaned, so the name the client chose is the name on disk.
func ValidName(name string) bool {
	if name == "" || len(name) > maxNameLen || name[0] == '.' {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// Put handles PUT .../{name}: the body is streamed to a temporary file and
// renamed into place when complete, so a reader never sees half a file and a
// failed upload leaves nothing behind.
func (s *UploadSink) Put(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !ValidName(name) {
		http.Error(w, "invalid upload name: use letters, digits, '.', '-' and '_'", http.StatusBadRequest)
		return
	}
	if r.ContentLength > s.maxBytes {
		http.Error(w, fmt.Sprintf("upload larger than %d bytes", s.maxBytes), http.StatusRequestEntityTooLarge)
		return
	}
	tmp, err := os.CreateTemp(s.dir, ".upload-*")
	if err != nil {
		s.fail(w, name, fmt.Errorf("create temp file: %w", err))
		return
	}
	defer func() {
		if tmp != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	n, err := io.Copy(tmp, http.MaxBytesReader(w, r.Body, s.maxBytes))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			http.Error(w, fmt.Sprintf("upload larger than %d bytes", s.maxBytes), http.StatusRequestEntityTooLarge)
			return
		}
		// The client went away or the disk is full: a 5xx makes rtmrec retry.
		s.fail(w, name, fmt.Errorf("receive body: %w", err))
		return
	}
	if r.ContentLength >= 0 && n != r.ContentLength {
		http.Error(w, fmt.Sprintf("body has %d bytes, Content-Length said %d", n, r.ContentLength), http.StatusBadRequest)
		return
	}
	if err := tmp.Close(); err != nil {
		s.fail(w, name, fmt.Errorf("close: %w", err))
		return
	}
	if err := os.Rename(tmp.Name(), filepath.Join(s.dir, name)); err != nil {
		s.fail(w, name, fmt.Errorf("rename: %w", err))
		return
	}
	tmp = nil
	s.log.Info("dev upload stored", "name", name, "bytes", n, "content_type", r.Header.Get("Content-Type"))
	w.WriteHeader(http.StatusOK)
}

func (s *UploadSink) fail(w http.ResponseWriter, name string, err error) {
	s.log.Error("dev upload failed", "name", name, "err", err)
	http.Error(w, "upload failed", http.StatusInternalServerError)
}

// Get handles GET .../{name}: the file with its media type, with range
// requests so the browser can seek in it.
func (s *UploadSink) Get(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !ValidName(name) {
		http.Error(w, "invalid upload name", http.StatusBadRequest)
		return
	}
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", mediaType(f, name))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, name, st.ModTime(), f)
}

// List handles GET on the collection: every stored upload, newest first.
// urlPrefix is the path the uploads are served under (e.g. "/dev/uploads/").
func (s *UploadSink) List(urlPrefix string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		list, err := s.list(urlPrefix)
		if err != nil {
			s.log.Error("dev upload list", "err", err)
			http.Error(w, "cannot list uploads", http.StatusInternalServerError)
			return
		}
		writeJSON(w, list)
	}
}

func (s *UploadSink) list(urlPrefix string) ([]UploadInfo, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.dir, err)
	}
	out := []UploadInfo{}
	for _, e := range entries {
		if !e.Type().IsRegular() || !ValidName(e.Name()) {
			continue // temporary files of uploads in progress start with a dot
		}
		st, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		ct := "application/octet-stream"
		if f, err := os.Open(filepath.Join(s.dir, e.Name())); err == nil {
			ct = mediaType(f, e.Name())
			_ = f.Close()
		}
		out = append(out, UploadInfo{Name: e.Name(), Size: st.Size(), ContentType: ct, ModTime: st.ModTime().UTC(), URL: urlPrefix + e.Name()})
	}
	slices.SortFunc(out, func(a, b UploadInfo) int { return b.ModTime.Compare(a.ModTime) })
	return out, nil
}

// mediaType tells the recording formats rtmrec writes apart by their first
// bytes (an audio-only session may gain video later, so the extension the
// client picked is only a fallback), and leaves f at its start.
func mediaType(f io.ReadSeeker, name string) string {
	head := make([]byte, 64)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	_, _ = f.Seek(0, io.SeekStart)
	switch {
	case bytes.HasPrefix(head, []byte("OggS")):
		return "audio/ogg"
	case bytes.HasPrefix(head, []byte{0x1A, 0x45, 0xDF, 0xA3}): // EBML header
		// The DocType element (0x4282) follows within the header.
		if bytes.Contains(head, []byte("webm")) {
			return "video/webm"
		}
		return "video/x-matroska"
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".ogg", ".opus":
		return "audio/ogg"
	case ".webm":
		return "video/webm"
	case ".mkv":
		return "video/x-matroska"
	}
	return "application/octet-stream"
}
