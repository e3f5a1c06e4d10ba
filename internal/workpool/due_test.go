package workpool

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestDuePopsInDueOrder(t *testing.T) {
	var d Due[int]
	if _, ok := d.Next(); ok {
		t.Fatal("an empty heap has something due")
	}
	base := time.Unix(0, 0)
	rnd := rand.New(rand.NewPCG(3, 4))
	var want []int
	for range 200 {
		n := rnd.IntN(1000)
		want = append(want, n)
		d.Push(base.Add(time.Duration(n)*time.Second), n)
	}
	slices.Sort(want)
	for i, w := range want {
		at, ok := d.Next()
		if !ok || !at.Equal(base.Add(time.Duration(w)*time.Second)) {
			t.Fatalf("item %d due at %v, want %d s", i, at, w)
		}
		if got := d.Pop(); got != w {
			t.Fatalf("item %d = %d, want %d", i, got, w)
		}
	}
	if d.Len() != 0 {
		t.Fatalf("%d items left", d.Len())
	}
}
