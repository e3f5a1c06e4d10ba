package main

import (
	"fmt"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"
)

// maxCPUProfile bounds a CPU profile request.
const maxCPUProfile = 60 * time.Second

// mountPprof serves Go's runtime profiles on the admin mux (-pprof), in the
// paths `go tool pprof` expects: /debug/pprof/heap, /goroutine, /allocs,
// ... (?debug=1 for text, ?gc=1 to collect garbage before a heap profile)
// and /debug/pprof/profile?seconds=N for CPU. Heap and goroutine profiles of
// a loaded server are how its memory per session is accounted for (task
// bench:load). It uses runtime/pprof rather than net/http/pprof, whose
// import registers handlers on http.DefaultServeMux as a side effect.
func mountPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/profile", func(w http.ResponseWriter, r *http.Request) {
		d := 30 * time.Second
		if s, err := strconv.Atoi(r.URL.Query().Get("seconds")); err == nil && s > 0 {
			d = min(time.Duration(s)*time.Second, maxCPUProfile)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if err := pprof.StartCPUProfile(w); err != nil {
			http.Error(w, "a CPU profile is already running", http.StatusConflict)
			return
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
		pprof.StopCPUProfile()
	})
	mux.HandleFunc("GET /debug/pprof/{name}", func(w http.ResponseWriter, r *http.Request) {
		p := pprof.Lookup(r.PathValue("name"))
		if p == nil {
			http.Error(w, "no such profile", http.StatusNotFound)
			return
		}
		debug, _ := strconv.Atoi(r.URL.Query().Get("debug"))
		if p.Name() == "heap" && r.URL.Query().Get("gc") != "" {
			runtime.GC()
		}
		if debug > 0 {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		} else {
			w.Header().Set("Content-Type", "application/octet-stream")
		}
		if err := p.WriteTo(w, debug); err != nil {
			http.Error(w, fmt.Sprintf("profile %s: %v", p.Name(), err), http.StatusInternalServerError)
		}
	})
}
