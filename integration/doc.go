// Package integration holds end-to-end tests: they build the real rtmrec
// binary, run it on 127.0.0.1 with a temporary data directory, and drive it
// with real clients (pion peers, headless Chromium) against real upload
// targets, webhook receivers and S3-compatible stores. Recorded files are
// checked with ffprobe and a full ffmpeg decode.
package integration
