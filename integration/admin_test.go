package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/internal/testclient"
)

// TestDeadLettersThroughTheAdminAPI: webhook events a receiver refused for
// the whole retry period become dead letters an operator lists and, once
// the receiver is fixed, queues again; the events arrive under their ids.
func TestDeadLettersThroughTheAdminAPI(t *testing.T) {
	mu := make(chan struct{}, 1) // guards got and failing
	var got []string
	failing := true
	receiver := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu <- struct{}{}
		defer func() { <-mu }()
		if failing {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		got = append(got, r.Header.Get("webhook-id"))
	})
	hs := httptest.NewServer(receiver)
	t.Cleanup(hs.Close)
	hooks := hs.URL
	srv := runRTMRec(t, t.TempDir(), "-allow-private-urls", "-auth-hs256-secret", jwtSecret,
		"-webhook-retry-period", "1s", "-admin-listen", "127.0.0.1:0")
	c := startCall(t, srv.wsURL(), "dl-1", hooks+"/h", bearer(token(t, auth.Claims{Subject: "agent@acme", Role: auth.RoleClient})), testclient.Tone)
	c.c.Close()

	operator := "Bearer " + token(t, auth.Claims{Subject: "ops@acme", Role: auth.RoleOperator})
	call := func(method, path, authz string) (int, []byte) {
		req, _ := http.NewRequest(method, "http://"+srv.admin+path, nil)
		req.Header.Set("Authorization", authz)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	var dead []struct {
		Seq       uint64 `json:"seq"`
		ID        string `json:"id"`
		LastError string `json:"last_error"`
	}
	for deadline := time.Now().Add(20 * time.Second); len(dead) < 3; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("dead letters: %+v", dead)
		}
		code, body := call(http.MethodGet, "/admin/dead-letters", operator)
		if code != http.StatusOK {
			t.Fatalf("list: %d %s", code, body)
		}
		_ = json.Unmarshal(body, &dead)
	}
	if code, _ := call(http.MethodGet, "/admin/dead-letters", "Bearer "+token(t, auth.Claims{Subject: "a", Role: auth.RoleClient})); code != http.StatusForbidden {
		t.Fatalf("a client token listed the dead letters: %d", code)
	}
	mu <- struct{}{}
	failing = false
	<-mu
	for _, d := range dead {
		if code, body := call(http.MethodPost, fmt.Sprintf("/admin/dead-letters/%d/replay", d.Seq), operator); code != http.StatusNoContent {
			t.Fatalf("replay %d: %d %s", d.Seq, code, body)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu <- struct{}{}
		n := len(got)
		<-mu
		if n == len(dead) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d replayed events delivered", n, len(dead))
		}
	}
	for i, d := range dead {
		if got[i] != d.ID {
			t.Errorf("replayed event %d arrived as %s, want %s (its own id, in order)", i, got[i], d.ID)
		}
	}
}
