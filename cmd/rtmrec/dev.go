package main

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/rtmrec/rtmrec/session"
)

// mountDev serves the development console and its sinks (issue 6).
func mountDev(mux *http.ServeMux, cfg *config, srv *session.Server, a *authenticator, log *slog.Logger) error {
	mux.HandleFunc("GET /dev/sessions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, srv.Sessions())
	})
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
