package limits

import (
	"net/netip"
	"time"
)

// ipv6GroupBits is how much of an IPv6 address identifies one source. A
// single subscriber is routinely given a whole /64 (RFC 6177), so limiting
// per /128 would let one client open 2^64 "different" sources.
const ipv6GroupBits = 64

// sourceKey returns the table key for a client address: the IPv4 address
// (IPv4-mapped IPv6 included), or the IPv6 /64. An invalid address (a
// listener without IP peers) maps to the zero Addr, one shared source.
func sourceKey(ip netip.Addr) netip.Addr {
	if !ip.IsValid() {
		return netip.Addr{}
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip
	}
	p, err := ip.Prefix(ipv6GroupBits)
	if err != nil {
		return netip.Addr{}
	}
	return p.Addr()
}

// ipEntry is the admission state of one source.
type ipEntry struct {
	key netip.Addr
	// conns and authConns count the open unauthenticated and authenticated
	// connections.
	conns, authConns int
	// bucket is spent by unauthenticated connections and failed attempts.
	bucket bucket

	// While the source holds no connection the entry sits on the table's
	// idle list, oldest first, so pruning and eviction are O(1) per entry.
	idle       bool
	idleSince  time.Time
	prev, next *ipEntry
}

// ipTable holds per-source state, bounded in size: a flood from many source
// addresses must not grow memory without limit.
type ipTable struct {
	entries map[netip.Addr]*ipEntry
	max     int
	// refill is how long an idle entry takes to be indistinguishable from a
	// new one (its bucket full again); after that it is dropped. Zero when
	// there is no rate limit, so idle entries go at once.
	refill time.Duration

	idleHead, idleTail *ipEntry
}

func newIPTable(maxEntries int, refill time.Duration) ipTable {
	return ipTable{entries: make(map[netip.Addr]*ipEntry), max: maxEntries, refill: refill}
}

// lookup returns the entry for key, creating it with a full bucket. It
// returns nil when the table is full of sources with open connections.
func (t *ipTable) lookup(key netip.Addr, now time.Time, burst float64) *ipEntry {
	t.prune(now)
	if e, ok := t.entries[key]; ok {
		return e
	}
	if len(t.entries) >= t.max {
		// Evict the longest-idle source even if its bucket has not refilled:
		// this only happens to an attacker who already controls max
		// sources, for whom the per-source rate is moot anyway.
		if t.idleHead == nil {
			return nil
		}
		t.remove(t.idleHead)
	}
	e := &ipEntry{key: key, bucket: fullBucket(burst, now)}
	t.entries[key] = e
	return e
}

// settle files e as idle or busy after its connection counts changed.
func (t *ipTable) settle(e *ipEntry, now time.Time) {
	busy := e.conns+e.authConns > 0
	switch {
	case busy && e.idle:
		t.unlinkIdle(e)
	case !busy && !e.idle:
		e.idle, e.idleSince = true, now
		e.prev, e.next = t.idleTail, nil
		if t.idleTail != nil {
			t.idleTail.next = e
		} else {
			t.idleHead = e
		}
		t.idleTail = e
	}
	t.prune(now)
}

// prune drops the sources that have been idle long enough for their bucket
// to be full again, so forgetting them changes no decision.
func (t *ipTable) prune(now time.Time) {
	for t.idleHead != nil && now.Sub(t.idleHead.idleSince) >= t.refill {
		t.remove(t.idleHead)
	}
}

func (t *ipTable) remove(e *ipEntry) {
	if e.idle {
		t.unlinkIdle(e)
	}
	delete(t.entries, e.key)
}

func (t *ipTable) unlinkIdle(e *ipEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		t.idleHead = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		t.idleTail = e.prev
	}
	e.idle, e.prev, e.next = false, nil, nil
}
