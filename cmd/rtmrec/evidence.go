package main

import (
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/rtmrec/rtmrec/evidence"
	"github.com/rtmrec/rtmrec/internal/durable"
)

// Exit codes of the evidence subcommands.
const (
	exitOK       = 0
	exitMismatch = 1 // verification failed: the file or manifest is not what was signed
	exitUsage    = 2 // bad arguments, or a file that cannot be read
)

// subcommands run instead of the server when named first on the command line.
var subcommands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"verify": runVerify,
	"redact": runRedact,
}

// runVerify is `rtmrec verify FILE MANIFEST -key PUBKEY`: it prints the verified facts as
// JSON on stdout, and on stderr what was checked or what did not match.
func runVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rtmrec verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyPath := fs.String("key", "", "PEM file with the Ed25519 public key (PKIX) that signed the manifest")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: rtmrec verify FILE MANIFEST -key PUBKEY.pem")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(pos) != 2 || *keyPath == "" {
		fs.Usage()
		return exitUsage
	}
	pub, err := evidence.LoadPublicKey(*keyPath)
	if err != nil {
		fmt.Fprintln(stderr, "rtmrec verify:", err)
		return exitUsage
	}
	manifest, err := os.ReadFile(pos[1])
	if err != nil {
		fmt.Fprintln(stderr, "rtmrec verify:", err)
		return exitUsage
	}
	media, err := os.Open(pos[0])
	if err != nil {
		fmt.Fprintln(stderr, "rtmrec verify:", err)
		return exitUsage
	}
	defer media.Close()
	m, err := evidence.Verify(media, manifest, pub)
	if err != nil {
		fmt.Fprintf(stderr, "rtmrec verify: FAILED: %s: %v\n", pos[0], err)
		return exitMismatch
	}
	out, _ := json.MarshalIndent(m.Facts, "", "  ")
	fmt.Fprintf(stdout, "%s\n", out)
	fmt.Fprintf(stderr, "rtmrec verify: OK: %s is the file the manifest describes (sha256 %s), signed with key %s\n", pos[0], m.SHA256, m.Signature.KeyID)
	return exitOK
}

// runRedact is `rtmrec redact -in FILE -from 1m20s -to 1m45s -out FILE2 [-by NAME]
// [-key PRIVKEY] [-manifest IN] [-manifest-out PATH]`.
func runRedact(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rtmrec redact", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "the recording to redact (Ogg, WebM or Matroska from rtmrec)")
	out := fs.String("out", "", "the redacted copy to write (must not exist)")
	from := fs.String("from", "", "start of the span, on the file's timeline (1m20s, 80s or 1:20)")
	to := fs.String("to", "", "end of the span (1m45s, 105s or 1:45)")
	by := fs.String("by", "", "who redacts, recorded in the manifest (default: the current user)")
	keyPath := fs.String("key", "", "PEM file with the Ed25519 private key (PKCS#8) that signs the new manifest")
	manifestIn := fs.String("manifest", "", "the signed manifest of -in, whose facts the new manifest keeps")
	manifestOut := fs.String("manifest-out", "", "where to write the new manifest (default: OUT.manifest.json)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: rtmrec redact -in FILE -from START -to END -out FILE2 [-by NAME] [-key PRIVKEY.pem] [-manifest MANIFEST]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "rtmrec redact:", err)
		return exitUsage
	}
	if *in == "" || *out == "" || *from == "" || *to == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	req := evidence.RedactRequest{In: *in, Out: *out, By: *by}
	var err error
	if req.From, err = parseOffset(*from); err != nil {
		return fail(fmt.Errorf("-from: %w", err))
	}
	if req.To, err = parseOffset(*to); err != nil {
		return fail(fmt.Errorf("-to: %w", err))
	}
	if req.By == "" {
		if u, err := user.Current(); err == nil {
			req.By = u.Username
		}
	}
	if *keyPath != "" {
		if req.Key, err = evidence.LoadPrivateKey(*keyPath); err != nil {
			return fail(err)
		}
	}
	if *manifestIn != "" {
		if req.Manifest, err = os.ReadFile(*manifestIn); err != nil {
			return fail(err)
		}
	}
	mpath := *manifestOut
	if mpath == "" {
		mpath = *out + ".manifest.json"
	}
	res, err := evidence.Redact(req)
	if err != nil {
		return fail(err)
	}
	if err := durable.WriteFile(mpath, res.Manifest); err != nil {
		return fail(err)
	}
	r := res.Redaction
	fmt.Fprintf(stdout, "%s: %v to %v redacted: %d audio packets silenced (%v to %v), %d video frames dropped\n",
		*out, r.From, r.To, r.AudioPackets, r.SilencedFrom, r.SilencedTo, r.VideoFrames)
	if req.Key == nil {
		fmt.Fprintf(stdout, "%s: manifest written WITHOUT a signature (no -key): it records the redaction but cannot be verified\n", mpath)
	} else {
		fmt.Fprintf(stdout, "%s: signed manifest (key %s)\n", mpath, evidence.KeyID(req.Key.Public().(ed25519.PublicKey)))
	}
	return exitOK
}

// parseOffset reads a time on the file's timeline: a Go duration (1m20s, 80s, 1500ms),
// or [[h:]m:]s[.fff] as players show it.
func parseOffset(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	parts := strings.Split(s, ":")
	if len(parts) > 3 {
		return 0, fmt.Errorf("%q is not a time like 1m20s or 1:20", s)
	}
	var d time.Duration
	for i, p := range parts {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v < 0 || (i > 0 && v >= 60) {
			return 0, fmt.Errorf("%q is not a time like 1m20s or 1:20", s)
		}
		d = d*60 + time.Duration(v*float64(time.Second))
	}
	return d, nil
}

// parseInterspersed parses flags given before, between or after the positional
// arguments (rtmrec verify FILE MANIFEST -key PUBKEY) and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
