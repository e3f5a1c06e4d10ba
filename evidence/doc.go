// Package evidence makes a recording something a compliance officer can check: the
// facts of a recording (its media file's SHA-256, when it was recorded and on whose
// clock, the quality of each track, the pauses, the supervisors who listened, and any
// redaction since) in a manifest signed with Ed25519, which anyone can verify with the
// public key, with or without rtmrec.
//
// # Signed manifest
//
// A signed manifest is one JSON object: the Facts (field names as docs/evidence.md
// documents them) and a "signature" member:
//
//	{"evidence_version":1, "recording_id":…, "sha256":…, "size_bytes":…, …,
//	 "signature":{"alg":"Ed25519","key_id":"<hex>","value":"<base64>"}}
//
// The signature is Ed25519 (RFC 8032) over the RFC 8785 canonical form (canonical.go) of
// the object without its "signature" member; key_id is the hex SHA-256 of the public
// key's PKIX DER. The manifest is written in canonical form itself, but a verifier must
// canonicalize what it receives (JSON re-encoded on the way still verifies). Keys are
// PEM: PKCS#8 "PRIVATE KEY" to sign (openssl genpkey -algorithm ed25519), PKIX "PUBLIC
// KEY" to verify (openssl pkey -pubout).
//
// # Redaction
//
// Redact redacts a file (recorder.Redact: the audio of a span becomes silence, its video
// is dropped, nothing else moves) and signs a new manifest for the new file: the original
// manifest's facts, the new file's hash, and a "redactions" entry naming the original
// file's SHA-256 (and its manifest's), the span, when and by whom. RedactHandler offers
// the same to operators over HTTP.
package evidence
