// Package recorder writes the media of a session into one file per recording, with a JSON
// manifest beside it.
//
// # Formats
//
// Audio-only recordings are Ogg Opus (RFC 7845); recordings with video are WebM (VP8/VP9 +
// Opus) or Matroska (.mkv) when a track is H264, which WebM does not allow. Every track is
// recorded: in Ogg each audio track is one Opus logical stream and the streams are grouped
// in one physical stream (RFC 3533 §4, "grouping"); in Matroska each is a TrackEntry.
//
// Tracks added during a recording (renegotiation) are recorded too. Matroska reserves a
// fixed 4 KiB region for Tracks (the entries plus a Void filler) and rewrites it in place.
// Ogg requires all BOS pages of a group first, so its headers are written only when the
// first audio frame leaves the interleaving queue, which holds Ogg audio for two seconds
// (tracks added within the first two seconds join the first group); a track added after
// that starts a new chained link (RFC 3533 §4, "chaining"): every stream of the current link
// ends with an EOS page, then a new link repeats the headers of all tracks with new serial
// numbers, and granule positions continue the absolute timeline. Chaining is valid Ogg, but
// ffmpeg stops reading at a link with more streams than the first, so prefer to add all
// tracks at the start.
//
// # Timeline
//
// See timeline.go: RTP timestamps are unwrapped per track and mapped to wall-clock time via
// RTCP Sender Reports (arrival time before the first SR), so audio and video share one
// clock; loss, DTX and late starts keep their real length (Ogg gaps are filled with
// TOC-only Opus packets, Matroska block times come from RTP). Re-sent, duplicate and
// stray packets are dropped by sequence number before their timestamps are used, and
// reordering is undone in a 64-packet / 150 ms window; a new SSRC re-anchors the track, and
// so does a timestamp jump that a run of packets confirms (one stray packet never does). Audio is recorded from the start of the recording, video from its
// first keyframe. A track carries one SSRC at a time: a new SSRC replaces the old stream.
//
// # Video
//
// VP8, VP9 and H264 (single NAL, STAP-A, FU-A) are depacketized by a small frame assembler
// (marker bit / timestamp change, sequence-gap check); only complete frames are written, a
// track starts on a keyframe, and after loss or resume frames are dropped until the next
// keyframe, which is requested through Config.RequestKeyframe. Matroska's PixelWidth and
// PixelHeight come from the first keyframe; players follow later size changes in the
// bitstream. VP9 spatial layers (SVC) are not combined into superframes. A sender's CVO
// (TrackInfo.OrientationExtID) at the first keyframe becomes the track's Projection
// (ProjectionPoseRoll), which ffmpeg, VLC and mpv apply; later turns are listed in the
// manifest (orientation.go).
//
// # Pauses
//
// Nothing received while paused is written. PauseSilence (default) keeps the span in the
// timeline (Ogg: TOC-only packets, WebM: no blocks); PauseSkip subtracts it from all later
// timestamps. Spans are listed in the manifest and marked in the file itself (marks.go:
// Matroska chapters, Ogg comments). A recording takes at most Config.MaxPauses pauses
// (ErrTooManyPauses), and PauseSkip maps a packet to the file timeline with a binary search
// over the pauses' running totals (pauses.go).
//
// # Evidence
//
// The manifest's TrackQuality figures (loss, longest gap, silence, first keyframe, A/V
// offset, jitter; quality.go) and its times on the sender's clock are measured on the
// writer goroutine without allocating. Redact (redact.go) copies a finished file with a
// span silenced and its video dropped, without re-encoding or moving anything else.
//
// # Durability and resources
//
// WriteRTP copies the packet into a pooled buffer (of the packet's size class) and queues it
// for the recording's writer, a worker of the Writers the recording shares with others (one at
// a time); a full queue drops and counts the packet, so disk I/O never blocks the RTP path.
// Writes are buffered, written out every sync interval and made durable then: with one
// syncfs for all the recordings of a Writers (Linux), or an fsync per file. Memory is bounded by
// the queue, the reorder windows, the interleaving queue (in frames and in Config.MuxBytes)
// with its free-list of frame buffers (in bytes), and one frame buffer per video track,
// independent of the recording's length (except the Matroska cue list, one entry per
// cluster). A recording holds at most MaxTracks tracks. After a crash, Repair turns the partial files into finalized ones.
package recorder
