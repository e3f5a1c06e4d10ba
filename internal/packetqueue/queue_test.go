package packetqueue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v4/packetio"
)

func packet(i, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, uint32(i))
	for k := 4; k < size; k++ {
		b[k] = byte(i + k)
	}
	return b
}

// TestQueue runs scripted writes and reads: packets come out whole, in order, and the
// byte limit, short buffers and oversized packets behave as pion's buffer does.
func TestQueue(t *testing.T) {
	type op struct {
		write   int // size of a packet to write (0: read instead)
		readBuf int // size of the read buffer
		wantErr error
		wantN   int
	}
	tests := []struct {
		name  string
		limit int
		ops   []op
	}{
		{name: "in order", limit: 10000, ops: []op{
			{write: 100, wantN: 100}, {write: 1200, wantN: 1200}, {write: 3000, wantN: 3000},
			{readBuf: 1500, wantN: 100}, {readBuf: 1500, wantN: 1200}, {readBuf: 4000, wantN: 3000},
		}},
		{name: "full drops until read", limit: 2500, ops: []op{
			{write: 1200, wantN: 1200}, {write: 1200, wantN: 1200}, {write: 1200, wantErr: packetio.ErrFull},
			{readBuf: 1500, wantN: 1200}, {write: 1200, wantN: 1200},
			{readBuf: 1500, wantN: 1200}, {readBuf: 1500, wantN: 1200},
		}},
		{name: "short buffer cuts and moves on", limit: 10000, ops: []op{
			{write: 1000, wantN: 1000}, {write: 10, wantN: 10},
			{readBuf: 600, wantN: 600, wantErr: io.ErrShortBuffer}, {readBuf: 600, wantN: 10},
		}},
		{name: "too big", limit: 1 << 20, ops: []op{
			{write: maxPacket + 1, wantErr: errTooBig}, {write: maxPacket, wantN: maxPacket}, {readBuf: maxPacket, wantN: maxPacket},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := New(NewPool(), tc.limit)
			var sent [][]byte
			for i, o := range tc.ops {
				if o.write > 0 {
					p := packet(i, o.write)
					n, err := q.Write(p)
					if n != o.wantN || !errors.Is(err, o.wantErr) {
						t.Fatalf("op %d: Write(%d bytes) = %d, %v; want %d, %v", i, o.write, n, err, o.wantN, o.wantErr)
					}
					if err == nil {
						sent = append(sent, p)
					}
					continue
				}
				buf := make([]byte, o.readBuf)
				n, err := q.Read(buf)
				if n != o.wantN || !errors.Is(err, o.wantErr) {
					t.Fatalf("op %d: Read = %d, %v; want %d, %v", i, n, err, o.wantN, o.wantErr)
				}
				if want := sent[0][:n]; !bytes.Equal(buf[:n], want) {
					t.Fatalf("op %d: read the wrong bytes", i)
				}
				sent = sent[1:]
			}
			if q.bytes != 0 || len(sent) != 0 {
				t.Errorf("%d bytes still held, %d packets unread", q.bytes, len(sent))
			}
		})
	}
}

// TestBurstLeavesNothingHeld: once a burst is read, the queue holds no packet and no
// slots for them.
func TestBurstLeavesNothingHeld(t *testing.T) {
	q := New(NewPool(), 1<<20)
	for i := range 500 {
		if _, err := q.Write(packet(i, 1200)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1500)
	for range 500 {
		if _, err := q.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if q.pkts != nil || q.bytes != 0 {
		t.Errorf("after the burst: %d slots, %d bytes held", cap(q.pkts), q.bytes)
	}
}

// TestDeadlineAndClose: a Read waits until a packet comes, the read deadline passes (a
// timeout, after which reads go on) or the queue closes (what waits is still read first).
func TestDeadlineAndClose(t *testing.T) {
	q := New(NewPool(), 1<<20)
	buf := make([]byte, 1500)
	_ = q.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	start := time.Now()
	_, err := q.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past the deadline: %v, want a timeout", err)
	}
	if waited := time.Since(start); waited < 25*time.Millisecond {
		t.Errorf("gave up after %v, before the deadline", waited)
	}
	_ = q.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(10 * time.Millisecond)
		_, _ = q.Write(packet(1, 100))
	}()
	if n, err := q.Read(buf); n != 100 || err != nil {
		t.Fatalf("Read after the deadline was lifted = %d, %v", n, err)
	}
	_, _ = q.Write(packet(2, 50))
	_ = q.Close()
	if _, err := q.Write(packet(3, 50)); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Write after Close: %v", err)
	}
	if n, err := q.Read(buf); n != 50 || err != nil {
		t.Errorf("Read of what waited at Close = %d, %v", n, err)
	}
	if _, err := q.Read(buf); !errors.Is(err, io.EOF) {
		t.Errorf("Read after Close: %v, want EOF", err)
	}
	// A Read waiting when the queue closes ends too.
	q2 := New(NewPool(), 1<<20)
	done := make(chan error, 1)
	go func() { _, err := q2.Read(buf); done <- err }()
	time.Sleep(10 * time.Millisecond)
	_ = q2.Close()
	if err := <-done; !errors.Is(err, io.EOF) {
		t.Errorf("waiting Read at Close: %v, want EOF", err)
	}
}

// TestConcurrentOrder: a writer and a reader on their own goroutines; every packet
// arrives once, in order (run with -race).
func TestConcurrentOrder(t *testing.T) {
	q := New(NewPool(), 1<<20)
	const n = 20000
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			for {
				if _, err := q.Write(packet(i, 100+i%1400)); !errors.Is(err, packetio.ErrFull) {
					break
				}
				time.Sleep(time.Microsecond)
			}
		}
		_ = q.Close()
	})
	buf := make([]byte, 1500)
	for i := 0; ; i++ {
		k, err := q.Read(buf)
		if errors.Is(err, io.EOF) {
			if i != n {
				t.Errorf("%d packets read, want %d", i, n)
			}
			break
		}
		if err != nil || k != 100+i%1400 || binary.BigEndian.Uint32(buf) != uint32(i) {
			t.Fatalf("packet %d: %d bytes, %v, number %d", i, k, err, binary.BigEndian.Uint32(buf))
		}
	}
	wg.Wait()
}

// TestDivert: a writer goes on writing while its reader diverts the queue midway. Every
// packet reaches the reader or the diverted function exactly once, in order, the waiting
// ones first; Read then says the queue is diverted, and after Close nothing more is
// delivered (run with -race).
func TestDivert(t *testing.T) {
	for _, divertAt := range []int{0, 1, 500, 4999} {
		t.Run(fmt.Sprint("after ", divertAt), func(t *testing.T) {
			q := New(NewPool(), 1<<20)
			const n = 10000
			var got []uint32 // the reader's, then the diverted function's
			var mu sync.Mutex
			record := func(pkt []byte) {
				mu.Lock()
				got = append(got, binary.BigEndian.Uint32(pkt))
				mu.Unlock()
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := range n {
					for {
						if _, err := q.Write(packet(i, 100)); !errors.Is(err, packetio.ErrFull) {
							break
						}
						time.Sleep(time.Microsecond)
					}
				}
			})
			buf := make([]byte, 1500)
			for range divertAt {
				k, err := q.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				record(buf[:k])
			}
			q.Divert(record)
			for {
				k, err := q.Read(buf)
				if errors.Is(err, ErrDiverted) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				record(buf[:k])
			}
			if _, err := q.Read(buf); !errors.Is(err, ErrDiverted) {
				t.Errorf("Read after the switch: %v, want ErrDiverted", err)
			}
			wg.Wait()
			_ = q.Close()
			if _, err := q.Write(packet(n, 100)); !errors.Is(err, io.ErrClosedPipe) {
				t.Errorf("Write after Close: %v, want ErrClosedPipe", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != n {
				t.Fatalf("%d packets arrived, want %d", len(got), n)
			}
			for i, v := range got {
				if v != uint32(i) {
					t.Fatalf("packet %d is number %d: out of order or twice", i, v)
				}
			}
		})
	}
}

// TestDivertWakesAWaitingRead: a Read waiting on an empty queue returns ErrDiverted as
// soon as the queue is diverted, so the reader can go.
func TestDivertWakesAWaitingRead(t *testing.T) {
	q := New(NewPool(), 1<<20)
	done := make(chan error, 1)
	go func() {
		_, err := q.Read(make([]byte, 1500))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	q.Divert(func([]byte) {})
	select {
	case err := <-done:
		if !errors.Is(err, ErrDiverted) {
			t.Errorf("waiting Read: %v, want ErrDiverted", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting Read did not see the queue diverted")
	}
}
