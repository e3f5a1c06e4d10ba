package recorder

import (
	"bufio"
	"fmt"
	"os"
)

// fileWriter buffers writes to the media file and knows the current offset, which the
// Matroska writer needs for SeekHead, Cues and in-place patches.
type fileWriter struct {
	f     *os.File
	bw    *bufio.Writer
	off   int64 // logical end of the file (buffered bytes included)
	bytes func(n int)
}

// Write buffers batch small writes into fewer system calls; the periodic
// sync bounds what a crash can lose, not these. Matroska writes a block per
// frame (50 audio and 30 video a second): 8 KiB turns them into a few
// writes a second. The Ogg writer already assembles a page of up to a
// second before it writes it, so a buffer only joins the page's header to
// its data; a larger one would hold a thousand recordings' kilobytes for
// nothing.
const (
	writeBuffer    = 8 << 10
	oggWriteBuffer = 1 << 10
)

func newFileWriter(f *os.File, size int, bytes func(int)) *fileWriter {
	return &fileWriter{f: f, bw: bufio.NewWriterSize(f, size), bytes: bytes}
}

// Write appends p. It never keeps p.
func (w *fileWriter) Write(p []byte) (int, error) {
	n, err := w.bw.Write(p)
	w.off += int64(n)
	if w.bytes != nil {
		w.bytes(n)
	}
	return n, err
}

// writeAt patches bytes already written; the buffer is flushed first so the patch is not
// overwritten by older buffered data.
func (w *fileWriter) writeAt(p []byte, off int64) error {
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if _, err := w.f.WriteAt(p, off); err != nil {
		return fmt.Errorf("patch at %d: %w", off, err)
	}
	return nil
}

func (w *fileWriter) flush() error { return w.bw.Flush() }

// sync makes everything written so far durable.
func (w *fileWriter) sync() error {
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	return nil
}
