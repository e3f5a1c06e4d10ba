package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ownCPU is the CPU time rtmload has used so far, user and system.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startCPUProfile profiles rtmload itself into path until the returned
// function is called: where the generator's share of the machine goes.
func startCPUProfile(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpu-profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// machineCPU is how the CPUs of rtmload's machine spent the hold, in
// cores (CPU-seconds per second): when the server runs on the same
// machine, the part neither process is charged for shows whether the
// machine, not the server, ran out. Work the kernel does for packets in
// softirq context (all of loopback's receive path) is charged to no
// process; steal is time the hypervisor gave elsewhere.
type machineCPU struct {
	CPUs    int     `json:"cpus"`
	Process float64 `json:"process_cores"` // user, nice and system
	Softirq float64 `json:"irq_softirq_cores"`
	Steal   float64 `json:"steal_cores"`
	Idle    float64 `json:"idle_cores"` // idle and iowait
}

// cpuTicks is /proc/stat's first line: user nice system idle iowait irq
// softirq steal, in clock ticks.
type cpuTicks [8]float64

// readCPUTicks reads /proc/stat; ok is false where there is none (not Linux).
func readCPUTicks() (t cpuTicks, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return t, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < len(t)+1 || f[0] != "cpu" {
		return t, false
	}
	for i := range t {
		if t[i], err = strconv.ParseFloat(f[i+1], 64); err != nil {
			return t, false
		}
	}
	return t, true
}

// split turns the ticks from a to b, over window, into cores.
func split(a, b cpuTicks, window time.Duration, cpus int) *machineCPU {
	// Linux's USER_HZ is 100 on every architecture Go supports.
	const hz = 100
	cores := func(idx ...int) float64 {
		var d float64
		for _, i := range idx {
			d += b[i] - a[i]
		}
		return d / hz / window.Seconds()
	}
	return &machineCPU{CPUs: cpus, Process: cores(0, 1, 2), Softirq: cores(5, 6), Steal: cores(7), Idle: cores(3, 4)}
}
