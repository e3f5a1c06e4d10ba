// Package console is rtmrec's development console: a reference browser
// client for the RTM protocol (an agent page that records, a supervisor page
// that monitors) and the local sinks it records into (an upload sink that
// takes the server's PUT of a finished recording, a webhook sink that shows
// the server's events live).
//
// The pages are plain HTML, CSS and JavaScript modules embedded in the
// binary: no build step, no CDN, so `rtmrec -dev` works offline and the
// JavaScript can be read and copied as it is served. None of it is meant for
// production: the sinks take anything from anyone who can reach them.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// Pages serves the console's files. Mount it with the prefix stripped, e.g.
// mux.Handle("GET /dev/", http.StripPrefix("/dev", console.Pages())); the
// root serves the agent page.
func Pages() http.Handler {
	root, err := fs.Sub(static, "static")
	if err != nil {
		// The directory is embedded at build time; a failure here is a
		// broken build, not a runtime condition.
		panic("console: embedded static files missing: " + err.Error())
	}
	files := http.FileServerFS(root)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Pages change with every build while their modification time is
		// the zero time of embed.FS: make the browser revalidate.
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.URL.Path == "/" || r.URL.Path == "" {
			r = r.Clone(r.Context())
			r.URL.Path = "/agent.html"
		}
		if strings.HasSuffix(r.URL.Path, "/index.html") {
			// FileServer would redirect index.html to the directory.
			r = r.Clone(r.Context())
			r.URL.Path = "/agent.html"
		}
		files.ServeHTTP(w, r)
	})
}
