package integration

import (
	"encoding/json"
	"math"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// probe is what ffprobe reports about a file.
type probe struct {
	Format struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
	} `json:"format"`
	Streams []struct {
		CodecType string `json:"codec_type"`
		CodecName string `json:"codec_name"`
		Width     int    `json:"width"`
		Height    int    `json:"height"`
		StartTime string `json:"start_time"`
		Packets   string `json:"nb_read_packets"`
		SideData  []struct {
			Type     string  `json:"side_data_type"`
			Rotation float64 `json:"rotation"`
		} `json:"side_data_list"`
	} `json:"streams"`
	Chapters []struct {
		StartTime string `json:"start_time"`
		EndTime   string `json:"end_time"`
		Tags      struct {
			Title string `json:"title"`
		} `json:"tags"`
	} `json:"chapters"`
}

func (p probe) duration() float64 {
	d, _ := strconv.ParseFloat(p.Format.Duration, 64)
	return d
}

// chapter returns the start and end (s) of the chapters titled title: the file's marks
// (pauses, redactions).
func (p probe) chapter(title string) (spans [][2]float64) {
	for _, c := range p.Chapters {
		if c.Tags.Title == title {
			s, _ := strconv.ParseFloat(c.StartTime, 64)
			e, _ := strconv.ParseFloat(c.EndTime, 64)
			spans = append(spans, [2]float64{s, e})
		}
	}
	return spans
}

// rotation is the display rotation of the first video stream, counter-clockwise degrees as
// ffprobe reads it from the file (its Display Matrix), 0 without one.
func (p probe) rotation() float64 {
	for _, s := range p.Streams {
		if s.CodecType != "video" {
			continue
		}
		for _, sd := range s.SideData {
			if sd.Type == "Display Matrix" {
				return sd.Rotation
			}
		}
		return 0
	}
	return 0
}

// codecs lists the streams' codecs, sorted: a track that sends its first
// packet after recording_start is numbered in arrival order.
func (p probe) codecs() string {
	var c []string
	for _, s := range p.Streams {
		c = append(c, s.CodecType+"/"+s.CodecName)
	}
	slices.Sort(c)
	return strings.Join(c, ",")
}

// ffprobe reads a file's format and streams, and fails the test if ffmpeg
// cannot decode every frame of it.
func ffprobe(t *testing.T, file string) probe {
	t.Helper()
	bin := requireTool(t, "ffprobe", "checks that recordings play")
	out, err := exec.Command(bin, "-v", "error", "-show_format", "-show_streams", "-show_chapters", "-count_packets", "-of", "json", file).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", file, err)
	}
	var p probe
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	ffmpeg := requireTool(t, "ffmpeg", "decodes recordings")
	dec, err := exec.Command(ffmpeg, "-v", "error", "-xerror", "-i", file, "-enc_time_base", "-1", "-f", "null", "-").CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(dec))) > 0 {
		t.Fatalf("ffmpeg decode of %s: %v\n%s", file, err, dec)
	}
	return p
}

// firstPackets reports, per stream index, the first packet's pts and
// whether it is a keyframe, and whether timestamps ever went backwards.
func firstPackets(t *testing.T, file string) (first map[string]float64, firstKey map[string]bool, monotonic bool) {
	t.Helper()
	first, firstKey, monotonic = map[string]float64{}, map[string]bool{}, true
	for idx, s := range packetTimes(t, file) {
		first[idx], firstKey[idx] = s.first, s.firstKey
		monotonic = monotonic && s.monotonic
	}
	return first, firstKey, monotonic
}

// streamTimes is what the packet timestamps of one stream say.
type streamTimes struct {
	first, last float64 // pts of the first and the last packet
	firstKey    bool    // the first packet is a keyframe
	monotonic   bool    // timestamps never go backwards
}

// packetTimes reads every packet's pts, by stream index (as ffprobe prints it).
func packetTimes(t *testing.T, file string) map[string]*streamTimes {
	t.Helper()
	bin := requireTool(t, "ffprobe", "reads packet timestamps")
	out, err := exec.Command(bin, "-v", "error", "-show_entries", "packet=stream_index,pts_time,flags", "-of", "csv=p=0", file).Output()
	if err != nil {
		t.Fatalf("ffprobe packets: %v", err)
	}
	streams := map[string]*streamTimes{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		pts, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		s := streams[f[0]]
		if s == nil {
			s = &streamTimes{first: pts, last: pts, firstKey: strings.Contains(f[2], "K"), monotonic: true}
			streams[f[0]] = s
		}
		if pts < s.last {
			s.monotonic = false
		}
		s.last = pts
	}
	return streams
}

func (p probe) wantCodecs(t *testing.T, want string) {
	t.Helper()
	if got := p.codecs(); got != want {
		t.Errorf("streams: %s, want %s", got, want)
	}
}

func (p probe) wantDuration(t *testing.T, want, tolerance float64) {
	t.Helper()
	if d := p.duration(); math.Abs(d-want) > tolerance {
		t.Errorf("duration %.3f s, want %.3f ±%.1f", d, want, tolerance)
	}
}

// streamIndex is the index (as ffprobe prints it) of the first stream of a
// kind.
func (p probe) streamIndex(kind string) string {
	for i, s := range p.Streams {
		if s.CodecType == kind {
			return strconv.Itoa(i)
		}
	}
	return "-1"
}
