package main

import (
	"math"
	"runtime"
	"testing"
	"time"
)

func TestMachineSplit(t *testing.T) {
	tests := []struct {
		name   string
		a, b   cpuTicks
		window time.Duration
		want   machineCPU
	}{
		{
			name:   "two busy cores",
			b:      cpuTicks{150, 10, 40, 0, 0, 0, 0, 0},
			window: time.Second,
			want:   machineCPU{CPUs: 2, Process: 2},
		},
		{
			name:   "softirq, steal and idle over 10 s",
			a:      cpuTicks{1000, 0, 500, 7000, 100, 5, 50, 20},
			b:      cpuTicks{2000, 0, 1000, 7150, 150, 5, 250, 120},
			window: 10 * time.Second,
			want:   machineCPU{CPUs: 2, Process: 1.5, Softirq: 0.2, Steal: 0.1, Idle: 0.2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := split(tt.a, tt.b, tt.window, 2)
			for _, f := range []struct {
				name      string
				got, want float64
			}{
				{"process", got.Process, tt.want.Process},
				{"softirq", got.Softirq, tt.want.Softirq},
				{"steal", got.Steal, tt.want.Steal},
				{"idle", got.Idle, tt.want.Idle},
			} {
				if math.Abs(f.got-f.want) > 1e-9 {
					t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
				}
			}
		})
	}
}

func TestReadCPUTicks(t *testing.T) {
	a, ok := readCPUTicks()
	if runtime.GOOS != "linux" {
		if ok {
			t.Fatal("read /proc/stat where there is none")
		}
		return
	}
	if !ok {
		t.Fatal("could not read /proc/stat")
	}
	// Spin, so that time passes in the process column.
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	b, _ := readCPUTicks()
	if b[0]+b[2] <= a[0]+a[2] {
		t.Fatalf("no user or system time counted while spinning: %v → %v", a, b)
	}
}
