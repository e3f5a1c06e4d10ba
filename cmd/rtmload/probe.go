package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// serverSummary is what the server itself reported during the run.
type serverSummary struct {
	WindowSeconds float64 `json:"window_seconds"`
	// CPUSeconds is the server's user+system CPU time during the hold.
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	// HeapBefore/HeapAfter are the lowest go_memstats_heap_alloc_bytes seen
	// before the run and during the hold: the low points follow a GC, so
	// they approximate the live heap rather than live heap plus garbage.
	HeapBefore        float64 `json:"heap_before_bytes,omitempty"`
	HeapAfter         float64 `json:"heap_after_bytes,omitempty"`
	HeapPerSessionKiB float64 `json:"heap_per_session_kib,omitempty"`
	GCs               float64 `json:"gcs_during_hold,omitempty"`
	GoroutinesBefore  float64 `json:"goroutines_before,omitempty"`
	GoroutinesAfter   float64 `json:"goroutines_after,omitempty"`
	// GoroutinesPerSession counts supervisor sessions as sessions.
	GoroutinesPerSession float64 `json:"goroutines_per_session,omitempty"`
	DroppedDelta         float64 `json:"supervisor_packets_dropped,omitempty"`
	RTPReceivedDelta     float64 `json:"rtp_packets_received,omitempty"`
	// RecorderDropped is what the recordings' own queues dropped over the
	// whole run (rtmrec_recorder_packets_dropped_total): it must stay 0.
	RecorderDropped float64 `json:"recorder_packets_dropped"`
	// CPUPerSessionMinute is CPUSeconds per session and minute of hold.
	CPUPerSessionMinute float64 `json:"cpu_seconds_per_session_minute,omitempty"`
	// RSSBefore is the idle server's resident memory (VmRSS) before the
	// run, RSSPeak the highest seen during the hold. RSSPerSessionKiB is
	// RSSPeak over the sessions: what a node sized by sessions needs;
	// RSSGrowthPerSessionKiB leaves the idle server out.
	RSSBefore              float64 `json:"rss_before_bytes,omitempty"`
	RSSPeak                float64 `json:"rss_peak_bytes,omitempty"`
	RSSPerSessionKiB       float64 `json:"rss_per_session_kib,omitempty"`
	RSSGrowthPerSessionKiB float64 `json:"rss_growth_per_session_kib,omitempty"`
	// Setup is the server's own timing of session setups, request to
	// answer (rtmrec_session_setup_seconds): the part of rtmload's answer
	// latency that is not the generator's.
	Setup *histSummary `json:"server_setup,omitempty"`
}

// histSummary summarises a Prometheus histogram: quantiles interpolated
// within buckets (as histogram_quantile does), so only as fine as the
// bucket bounds, and the share of observations at or under 50 ms (a bucket
// bound, so exact).
type histSummary struct {
	N          float64 `json:"n"`
	P50MS      float64 `json:"p50_ms"`
	P99MS      float64 `json:"p99_ms"`
	Within50MS float64 `json:"within_50ms"`
}

// serverProbe reads the server's /metrics and /proc/<pid>/stat; with
// neither configured it does nothing.
type serverProbe struct {
	url string
	pid int

	heapBefore, heapMin float64
	gorBefore, gorAfter float64
	gcStart, gcEnd      float64
	dropStart, dropEnd  float64
	rtpStart, rtpEnd    float64
	recDropStart        float64
	recDropEnd          float64
	setupStart, setup   map[float64]float64 // setup histogram buckets by upper bound
	setupHold, setupEnd map[float64]float64 // the same at the hold's start and end
	cpuStart, cpuEnd    float64
	rssBefore, rssPeak  float64
	windowStart         time.Time
	window              time.Duration
	samples             int
}

func newServerProbe(url string, pid int) *serverProbe { return &serverProbe{url: url, pid: pid} }

func (p *serverProbe) enabled() bool { return p.url != "" || p.pid != 0 }

// before samples the idle server for a second.
func (p *serverProbe) before(ctx context.Context) error {
	if p.pid != 0 {
		rss, err := procRSS(p.pid)
		if err != nil {
			return err
		}
		p.rssBefore = rss
	}
	if p.url == "" {
		return nil
	}
	p.heapBefore = -1
	for range 5 {
		m, err := scrape(ctx, p.url)
		if err != nil {
			return err
		}
		if h := m["go_memstats_heap_alloc_bytes"]; p.heapBefore < 0 || h < p.heapBefore {
			p.heapBefore = h
		}
		p.gorBefore = m["go_goroutines"]
		p.recDropStart = m["rtmrec_recorder_packets_dropped_total"]
		p.setupStart = buckets(m, setupMetric)
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

func (p *serverProbe) startWindow(ctx context.Context) {
	p.windowStart = time.Now()
	p.heapMin = -1
	if p.pid != 0 {
		p.cpuStart, _ = procCPU(p.pid)
	}
	if m, err := scrape(ctx, p.url); err == nil && p.url != "" {
		p.gcStart, p.dropStart, p.rtpStart = m["go_gc_duration_seconds_count"], m["rtmrec_supervisor_packets_dropped_total"], m["rtmrec_rtp_packets_received_total"]
		p.setupHold = buckets(m, setupMetric)
	}
}

// sample notes the heap's low point, the resident memory's high point and
// the goroutines during the hold.
func (p *serverProbe) sample(ctx context.Context) {
	if p.pid != 0 {
		if rss, err := procRSS(p.pid); err == nil {
			p.rssPeak = max(p.rssPeak, rss)
		}
	}
	if p.url == "" {
		return
	}
	m, err := scrape(ctx, p.url)
	if err != nil {
		return
	}
	if h := m["go_memstats_heap_alloc_bytes"]; p.heapMin < 0 || h < p.heapMin {
		p.heapMin = h
	}
	p.gorAfter = max(p.gorAfter, m["go_goroutines"])
	p.samples++
}

func (p *serverProbe) endWindow(ctx context.Context) {
	p.window = time.Since(p.windowStart)
	if p.pid != 0 {
		p.cpuEnd, _ = procCPU(p.pid)
	}
	if p.url == "" {
		return
	}
	p.sample(ctx)
	if m, err := scrape(ctx, p.url); err == nil {
		p.gcEnd, p.dropEnd, p.rtpEnd = m["go_gc_duration_seconds_count"], m["rtmrec_supervisor_packets_dropped_total"], m["rtmrec_rtp_packets_received_total"]
		p.setupEnd = buckets(m, setupMetric)
	}
}

// holdSetups is the server's timing of the setups during the hold (the
// probes'), nil without -metrics-url.
func (p *serverProbe) holdSetups() *histSummary { return summarise(p.setupHold, p.setupEnd) }

// after reads what is counted over the whole run, once the recordings
// have stopped.
func (p *serverProbe) after(ctx context.Context) {
	if m, err := scrape(ctx, p.url); err == nil && p.url != "" {
		p.recDropEnd = m["rtmrec_recorder_packets_dropped_total"]
		p.setup = buckets(m, setupMetric)
	}
}

const setupMetric = "rtmrec_session_setup_seconds"

// buckets returns the cumulative counts of a histogram's buckets by upper
// bound, summed over its other labels, as parseMetrics keeps them.
func buckets(m map[string]float64, name string) map[float64]float64 {
	out := map[float64]float64{}
	prefix := name + "_bucket{le="
	for k, v := range m {
		if le, ok := strings.CutPrefix(k, prefix); ok {
			if b, err := strconv.ParseFloat(strings.TrimSuffix(le, "}"), 64); err == nil {
				out[b] = v
			}
		}
	}
	return out
}

// summarise turns the difference of two snapshots of cumulative buckets
// into a histSummary; nil when nothing was observed in between.
func summarise(before, after map[float64]float64) *histSummary {
	bounds := make([]float64, 0, len(after))
	for b := range after {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	if len(bounds) == 0 {
		return nil
	}
	count := func(b float64) float64 { return after[b] - before[b] }
	total := count(bounds[len(bounds)-1]) // +Inf
	if total <= 0 {
		return nil
	}
	quantile := func(q float64) float64 {
		rank := q * total
		lower, below := 0.0, 0.0
		for _, b := range bounds {
			c := count(b)
			if c >= rank {
				if math.IsInf(b, 1) {
					return lower // beyond the last bound: say the bound
				}
				if c == below {
					return b
				}
				return lower + (b-lower)*(rank-below)/(c-below)
			}
			lower, below = b, c
		}
		return lower
	}
	h := &histSummary{N: total, P50MS: 1000 * quantile(0.5), P99MS: 1000 * quantile(0.99)}
	if c, ok := after[0.05]; ok {
		h.Within50MS = (c - before[0.05]) / total
	}
	return h
}

func (p *serverProbe) summary(sessions int) *serverSummary {
	if !p.enabled() {
		return nil
	}
	s := &serverSummary{WindowSeconds: p.window.Seconds(), CPUSeconds: p.cpuEnd - p.cpuStart, RSSBefore: p.rssBefore, RSSPeak: p.rssPeak}
	if sessions > 0 && s.WindowSeconds > 0 {
		s.CPUPerSessionMinute = s.CPUSeconds / float64(sessions) / (s.WindowSeconds / 60)
	}
	if sessions > 0 && p.rssPeak > 0 {
		s.RSSPerSessionKiB = p.rssPeak / 1024 / float64(sessions)
		s.RSSGrowthPerSessionKiB = (p.rssPeak - p.rssBefore) / 1024 / float64(sessions)
	}
	if p.url != "" && p.samples > 0 {
		s.HeapBefore, s.HeapAfter = p.heapBefore, p.heapMin
		s.GoroutinesBefore, s.GoroutinesAfter = p.gorBefore, p.gorAfter
		s.GCs = p.gcEnd - p.gcStart
		s.DroppedDelta, s.RTPReceivedDelta = p.dropEnd-p.dropStart, p.rtpEnd-p.rtpStart
		s.RecorderDropped = p.recDropEnd - p.recDropStart
		s.Setup = summarise(p.setupStart, p.setup)
		if sessions > 0 {
			s.HeapPerSessionKiB = (s.HeapAfter - s.HeapBefore) / 1024 / float64(sessions)
			s.GoroutinesPerSession = (s.GoroutinesAfter - s.GoroutinesBefore) / float64(sessions)
		}
	}
	return s
}

// scrape reads a Prometheus text exposition and sums every series of a
// metric name over its labels (histograms appear as name_count, _sum).
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	if url == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// label returns the value of the label name in one exposition line.
func label(line, name string) (string, bool) {
	i := strings.Index(line, "{")
	j := strings.LastIndex(line, "}")
	if i < 0 || j < i {
		return "", false
	}
	for _, kv := range strings.Split(line[i+1:j], ",") {
		if v, ok := strings.CutPrefix(kv, name+`="`); ok {
			return strings.TrimSuffix(v, `"`), true
		}
	}
	return "", false
}

func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			j := strings.LastIndex(rest, "}")
			if j < 0 {
				continue
			}
			rest = rest[j+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
		if le, ok := label(line, "le"); ok && strings.HasSuffix(name, "_bucket") {
			out[name+"{le="+le+"}"] += v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return out, nil
}

// procCPU is a process's user+system CPU time in seconds (Linux).
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	// The command name may hold spaces and parentheses; fields are counted
	// after its closing parenthesis (field 3 is the state).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu of %d: unexpected stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu of %d: unexpected stat", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cpu of %d: unexpected stat", pid)
	}
	// USER_HZ is 100 on every Linux architecture Go supports.
	return (utime + stime) / 100, nil
}

// procRSS is a process's resident memory in bytes, VmRSS of
// /proc/<pid>/status (Linux).
func procRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss of %d: %w", pid, err)
	}
	return parseRSS(string(b))
}

func parseRSS(status string) (float64, error) {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
					return kb * 1024, nil
				}
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// saveProfiles fetches the server's heap profile (after a GC, so it holds
// only live objects) and its goroutine profile into dir.
func saveProfiles(ctx context.Context, base, dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("profile dir: %w", err)
	}
	for name, query := range map[string]string{"heap": "?gc=1", "goroutine": ""} {
		if err := fetchTo(ctx, base+name+query, filepath.Join(dir, name+".pprof")); err != nil {
			return err
		}
	}
	return nil
}

func fetchTo(ctx context.Context, url, file string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s (is the server run with -pprof?)", file, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}
