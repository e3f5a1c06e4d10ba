package evidence

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rtmrec/rtmrec/recorder"
)

// RedactRequest is a redaction to make and record in a new manifest.
type RedactRequest struct {
	In, Out  string        // media files; Out must not exist
	From, To time.Duration // the span, on the file's timeline
	By       string        // who redacts (required): an operator's name or identity
	// Manifest is In's signed manifest, if there is one: its facts carry over to the new
	// manifest, and it must describe In (same sha256), or nothing is written. When Key
	// is the key that signed it, its signature is checked too.
	Manifest []byte
	// Key signs the new manifest; without one the manifest is canonical JSON without a
	// signature, which verification refuses.
	Key ed25519.PrivateKey
	Now func() time.Time // default time.Now
}

// RedactResult is the redacted file's description.
type RedactResult struct {
	Redaction *recorder.Redaction
	Facts     Facts
	// Manifest is the new manifest of Out: signed when the request had a key.
	Manifest []byte
}

// Redact redacts In into Out (see recorder.Redact) and returns Out's manifest: the facts
// of In's manifest (when given) with Out's sha256 and size, and a redaction entry naming
// In's sha256, the span, when and by whom.
func Redact(req RedactRequest) (*RedactResult, error) {
	if strings.TrimSpace(req.By) == "" {
		return nil, errors.New("redact: say who redacts (-by)")
	}
	if req.Now == nil {
		req.Now = time.Now
	}
	inSum, _, err := hashFile(req.In)
	if err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	var facts Facts
	var manifestSum string
	if req.Manifest != nil {
		if facts, err = originalFacts(req.Manifest, req.In, req.Key); err != nil {
			return nil, fmt.Errorf("redact: the manifest given: %w", err)
		}
		if facts.SHA256 != inSum {
			return nil, fmt.Errorf("redact: the manifest given describes a file with sha256 %s, not %s (sha256 %s)", facts.SHA256, req.In, inSum)
		}
		s := sha256.Sum256(req.Manifest)
		manifestSum = hex.EncodeToString(s[:])
	}
	red, err := recorder.Redact(req.In, req.Out, req.From, req.To)
	if err != nil {
		return nil, err
	}
	outSum, outSize, err := hashFile(req.Out)
	if err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	if req.Manifest == nil {
		// Without a manifest only the file itself is known.
		name := filepath.Base(req.In)
		facts = Facts{
			RecordingID: strings.TrimSuffix(name, filepath.Ext(name)),
			Format:      red.Format.String(), ContentType: recorder.ContentType(red.Format),
			Evidence: Evidence{Clock: string(recorder.ClockServer), Tracks: []Track{}, Pauses: []Pause{}, Supervisors: []Supervisor{}},
		}
	}
	facts.Version = Version
	facts.SHA256, facts.SizeBytes = outSum, outSize
	facts.DurationMS = red.Duration.Milliseconds()
	facts.Redactions = append(facts.Redactions, Redaction{
		OriginalSHA256: inSum, OriginalManifestSHA256: manifestSum,
		FromMS: req.From.Milliseconds(), ToMS: req.To.Milliseconds(),
		At: req.Now().UTC().Truncate(time.Millisecond), By: req.By,
	})
	res := &RedactResult{Redaction: red, Facts: facts}
	if req.Key != nil {
		res.Manifest, err = Sign(facts, req.Key)
	} else {
		var b []byte
		if b, err = json.Marshal(facts); err == nil {
			res.Manifest, err = Canonicalize(b)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	return res, nil
}

// originalFacts reads a manifest's facts, checking its signature and file when key signed
// it.
func originalFacts(manifest []byte, media string, key ed25519.PrivateKey) (Facts, error) {
	var m Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return Facts{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if key == nil || m.Signature.KeyID != KeyID(key.Public().(ed25519.PublicKey)) {
		return m.Facts, nil
	}
	f, err := os.Open(media)
	if err != nil {
		return Facts{}, err
	}
	defer f.Close()
	v, err := Verify(f, manifest, key.Public().(ed25519.PublicKey))
	if err != nil {
		return Facts{}, err
	}
	return v.Facts, nil
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	return HashMedia(f)
}
