// A webhook receiver that checks rtmrec's signatures with the standard library only:
//
//	WEBHOOK_SECRET=whsec_... go run ./docs/examples/webhook-receiver 8000
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	secret := os.Getenv("WEBHOOK_SECRET")
	key := []byte(secret) // a raw secret is the key itself
	if b64, ok := strings.CutPrefix(secret, "whsec_"); ok {
		var err error // a whsec_ secret is the key in base64
		if key, err = base64.StdEncoding.DecodeString(b64); err != nil {
			panic("WEBHOOK_SECRET: whsec_ must be followed by base64")
		}
	}
	http.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
		sent, _ := strconv.ParseInt(ts, 10, 64)
		mac := hmac.New(sha256.New, key)
		fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
		want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
		for _, sig := range strings.Fields(r.Header.Get("webhook-signature")) { // one per secret while they rotate
			if hmac.Equal([]byte(sig), []byte(want)) && math.Abs(time.Since(time.Unix(sent, 0)).Minutes()) < 5 {
				fmt.Printf("verified %s %s\n", id, body)
				return // 200: rtmrec stops retrying
			}
		}
		fmt.Fprintf(os.Stderr, "rejected %s: no matching signature from the last 5 minutes\n", id)
		http.Error(w, "bad signature", http.StatusBadRequest)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1]) // behind your HTTPS proxy
	if err != nil {
		panic(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	panic(http.Serve(ln, nil))
}
