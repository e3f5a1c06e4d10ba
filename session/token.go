package session

import (
	"time"

	"github.com/rtmrec/rtmrec/rtm"
)

// Tokens keep meaning something after the upgrade (docs/protocol.md, Authentication). A
// connection's token is honoured until its exp (plus the verifier's
// clock-skew leeway); after that the connection can start nothing, and its
// supervisor sessions end with TERM_BY_TOKEN_EXPIRED. A client session
// goes on, recording included: the token admitted a call, and cutting the
// call or its recording mid-sentence would lose evidence that the customer
// was entitled to keep; the session ends as every call does. A client
// that wants to start more on the same connection sends token_refresh with
// a new token for the same sub, tenant and role.

// grant is a link's principal with the instant its token stops being
// honoured (zero: never).
type grant struct {
	p     Principal
	until time.Time
}

// principal is the link's current principal.
func (l *Link) principal() Principal { return l.grant.Load().p }

// unexpired refuses with unauthorized once the link's token has expired.
func (l *Link) unexpired(now time.Time) error {
	g := l.grant.Load()
	if g.until.IsZero() || now.Before(g.until) {
		return nil
	}
	return rtm.Errorf(rtm.CodeUnauthorized, "the connection's token expired at %s; send token_refresh with a new token to start anything more", g.until.UTC().Format(time.RFC3339))
}

// refresh takes token_refresh on the link's goroutine. The new token is
// verified as the upgrade's was and must be for the same sub, tenant and
// role; it then replaces the link's principal (for what the link starts
// from now on, and the URL prefixes of its next recordings) and extends
// the supervisor sessions it still allows.
func (l *Link) refresh(m rtm.Message) error {
	var d rtm.TokenRefresh
	if err := rtm.DecodeData(m, &d); err != nil {
		return err
	}
	if l.srv.deps.Tokens == nil {
		return rtm.Errorf(rtm.CodeNotSupported, "this server does not use tokens")
	}
	p, err := l.srv.deps.Tokens.VerifyToken(d.Token)
	if err != nil {
		l.srv.metrics.tokenRefreshes.WithLabelValues("refused").Inc()
		return rtm.Errorf(rtm.CodeUnauthorized, "the new token was refused: %v", err)
	}
	old := l.principal()
	if p.Identity() != old.Identity() || p.Tenant() != old.Tenant() || p.Role() != old.Role() {
		l.srv.metrics.tokenRefreshes.WithLabelValues("refused").Inc()
		return rtm.Errorf(rtm.CodeUnauthorized, "the new token must have the same sub, tenant and role as the connection's")
	}
	g := &grant{p: p, until: p.ExpiresAt()}
	l.grant.Store(g)
	l.srv.metrics.tokenRefreshes.WithLabelValues("accepted").Inc()
	if l.carry != nil {
		l.carry(d.Token)
	}

	l.mu.Lock()
	var sups []*Session
	for _, ss := range l.sessions {
		if ss.monitored != nil {
			sups = append(sups, ss)
		}
	}
	l.mu.Unlock()
	for _, ss := range sups {
		// A token that no longer lists the monitored session does not
		// extend its supervision: it ends when the old token expires.
		if p.MaySupervise(ss.monitored.id) {
			ss.notes.post(func() { ss.extendExpiry(g.until) })
		}
	}
	l.sendMessage(rtm.TypeTokenRefreshed, m.ClientID, m.SessionID, rtm.TokenRefreshed{ExpiresAt: g.until.UTC()})
	return nil
}

// startExpiry arms a supervisor session's end at its token's expiry; nil
// when there is nothing to arm. Runs on the session's goroutine before its
// loop.
func (ss *Session) startExpiry() <-chan time.Time {
	if ss.monitored == nil {
		return nil
	}
	until := ss.link.grant.Load().until
	if until.IsZero() {
		return nil
	}
	ss.expiry = time.NewTimer(time.Until(until))
	return ss.expiry.C
}

// extendExpiry moves a supervisor session's end to a refreshed token's
// expiry. Runs on the loop.
func (ss *Session) extendExpiry(until time.Time) {
	if ss.expiry != nil {
		ss.expiry.Reset(time.Until(until))
	}
}
