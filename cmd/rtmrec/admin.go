package main

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/rtmrec/rtmrec/evidence"
	"github.com/rtmrec/rtmrec/webhook"
)

// mountAdmin serves the operators' API on the admin mux. Every call needs
// an operator (a token with the operator role, or a caller on this machine
// when the server runs without authentication):
//
//	POST /admin/redact                           redact a recording kept on the server (with -evidence-key)
//	GET  /admin/dead-letters                     the webhook events given up
//	POST /admin/dead-letters/{seq}/replay        queue one again, under its own id
func mountAdmin(mux *http.ServeMux, st *state, a *authenticator, log *slog.Logger) {
	if st.evidenceKey != nil {
		mux.Handle("POST /admin/redact", &evidence.RedactHandler{
			Recordings: st.journeys, Key: st.evidenceKey, Identity: a.operator,
			Logger: log.With("component", "redact"),
		})
	}
	operator := func(next func(w http.ResponseWriter, r *http.Request, who string)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			who, err := a.operator(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusForbidden)
				return
			}
			next(w, r, who)
		}
	}
	mux.HandleFunc("GET /admin/dead-letters", operator(func(w http.ResponseWriter, _ *http.Request, _ string) {
		list, err := st.outbox.DeadLetters()
		if err != nil {
			log.Error("list dead letters", "err", err)
			http.Error(w, "the dead letters cannot be read", http.StatusInternalServerError)
			return
		}
		if list == nil {
			list = []webhook.DeadLetter{}
		}
		writeJSON(w, list)
	}))
	mux.HandleFunc("POST /admin/dead-letters/{seq}/replay", operator(func(w http.ResponseWriter, r *http.Request, who string) {
		seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
		if err == nil {
			err = st.outbox.Replay(seq)
		}
		switch {
		case errors.Is(err, webhook.ErrNoDeadLetter) || err != nil && seq == 0:
			http.Error(w, "no such dead letter that can be delivered", http.StatusNotFound)
			return
		case err != nil:
			log.Error("replay dead letter", "seq", seq, "err", err)
			http.Error(w, "the dead letter could not be queued", http.StatusInternalServerError)
			return
		}
		log.Info("dead letter queued again by an operator", "seq", seq, "operator", who)
		w.WriteHeader(http.StatusNoContent)
	}))
}
