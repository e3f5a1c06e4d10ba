package wsconn

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair is a server Conn and the client's raw WebSocket.
func pair(t *testing.T, cfg Config) (*Conn, *websocket.Conn) {
	t.Helper()
	got := make(chan *Conn, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		got <- New(ws, cfg)
	}))
	t.Cleanup(hs.Close)
	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := <-got
	t.Cleanup(func() {
		_ = client.Close()
		c.Shut()
	})
	return c, client
}

func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

func TestOversizedFrame(t *testing.T) {
	c, client := pair(t, Config{MaxFrame: 16})
	_ = client.WriteMessage(websocket.TextMessage, []byte(`{"small":1}`))
	if _, b, err := c.Read(); err != nil || string(b) != `{"small":1}` {
		t.Fatalf("Read = %q, %v", b, err)
	}
	_ = client.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 17))
	if _, _, err := c.Read(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Read of 17 bytes = %v, want ErrTooLarge", err)
	}
	c.Send([]byte("why"))
	c.CloseWith(websocket.CloseMessageTooBig, "frame too large")
	if _, b, err := client.ReadMessage(); err != nil || string(b) != "why" {
		t.Fatalf("the client did not get what was queued before the close: %q, %v", b, err)
	}
	if _, _, err := client.ReadMessage(); closeCode(err) != websocket.CloseMessageTooBig {
		t.Fatalf("client read %v, want close %d", err, websocket.CloseMessageTooBig)
	}
}

// A client that does not read is cut off; Send never waits for it.
func TestSendNeverBlocksOnASlowClient(t *testing.T) {
	c, _ := pair(t, Config{Queue: 4, WriteTimeout: 200 * time.Millisecond})
	frame := bytes.Repeat([]byte("x"), 64<<10)
	start := time.Now()
	refused := false
	for i := 0; i < 2000 && !refused; i++ {
		refused = !c.Send(frame)
	}
	if !refused {
		t.Fatal("128 MB queued for a client that reads nothing")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Send took %v in all", d)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the writer did not give up on the client")
	}
}

func TestKeepalive(t *testing.T) {
	_, client := pair(t, Config{Keepalive: []byte(`{"message":"ping","data":[]}`), KeepaliveInterval: 20 * time.Millisecond})
	_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, b, err := client.ReadMessage(); err != nil || string(b) != `{"message":"ping","data":[]}` {
		t.Fatalf("read %q, %v; want the keepalive", b, err)
	}
}
