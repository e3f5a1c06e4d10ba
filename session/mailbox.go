package session

import "sync"

// mailbox carries notes to a session's loop from goroutines that must
// never wait for it: pion's callbacks and other sessions (a supervisor and
// the session it monitors notify each other; with bounded channels both
// ways, two full queues would deadlock). Posting never blocks; the loop
// takes everything posted so far in one go. What is posted is bounded by
// its sources (tracks, candidates, supervisors), not by the queue.
type mailbox struct {
	mu     sync.Mutex
	notes  []func()
	closed bool
	ready  chan struct{} // has a value while notes is not empty
}

func newMailbox() *mailbox { return &mailbox{ready: make(chan struct{}, 1)} }

// post queues f for the loop; false once the session has ended.
func (m *mailbox) post(f func()) bool {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return false
	}
	m.notes = append(m.notes, f)
	m.mu.Unlock()
	select {
	case m.ready <- struct{}{}:
	default:
	}
	return true
}

// take returns the queued notes in posting order.
func (m *mailbox) take() []func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.notes
	m.notes = nil
	return n
}

// close refuses further notes and drops the queued ones.
func (m *mailbox) close() {
	m.mu.Lock()
	m.closed = true
	m.notes = nil
	m.mu.Unlock()
}
