package raftstore

import "sync"

// Change is one event published by the FSM after a batch commits, in log
// order, on every node (DESIGN.md invariant 5). Frontends feed IMAP trackers
// and other sessions from it.
type Change interface{ change() }

// MessageAdded reports a new message (delivery, append, copy, move target).
type MessageAdded struct {
	Account   string
	MailboxID uint64
	UID       uint32
	ModSeq    uint64
	Flags     []string
}

// MessagesExpunged reports removed messages, UIDs ascending.
type MessagesExpunged struct {
	Account   string
	MailboxID uint64
	UIDs      []uint32
	ModSeq    uint64
}

// FlagsChanged reports a message's new flags. Origin is the session that
// proposed the change ("" if unknown).
type FlagsChanged struct {
	Account   string
	MailboxID uint64
	UID       uint32
	Flags     []string
	ModSeq    uint64
	Origin    string
}

// MailboxChanged reports a created, renamed, deleted or (un)subscribed
// mailbox. Deleted is true when it is gone.
type MailboxChanged struct {
	Account   string
	MailboxID uint64
	Name      string
	OldName   string
	Deleted   bool
}

// AccountChanged reports a created, removed or modified account (password,
// quota). Auth caches drop their entry on it.
type AccountChanged struct {
	Address string
	Removed bool
}

// StateReset means the whole state was replaced (snapshot restore):
// subscribers must drop everything they derived from it.
type StateReset struct{}

func (MessageAdded) change()     {}
func (MessagesExpunged) change() {}
func (FlagsChanged) change()     {}
func (MailboxChanged) change()   {}
func (AccountChanged) change()   {}
func (StateReset) change()       {}

// feed fans changes out to subscribers. Each subscriber has an unbounded
// queue, so the FSM never blocks on a slow reader and never drops an event
// (a dropped event would desynchronise an IMAP tracker).
type feed struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	mu     sync.Mutex
	queue  []Change
	wake   chan struct{}
	out    chan Change
	done   chan struct{}
	closed bool
}

func newFeed() *feed { return &feed{subs: make(map[*subscriber]struct{})} }

// subscribe returns a channel of changes and a cancel func.
func (f *feed) subscribe(buf int) (<-chan Change, func()) {
	s := &subscriber{
		wake: make(chan struct{}, 1),
		out:  make(chan Change, buf),
		done: make(chan struct{}),
	}
	f.mu.Lock()
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	go s.pump()
	var once sync.Once
	return s.out, func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.subs, s)
			f.mu.Unlock()
			close(s.done)
		})
	}
}

func (f *feed) publish(changes []Change) {
	if len(changes) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		s.mu.Lock()
		s.queue = append(s.queue, changes...)
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *subscriber) pump() {
	defer close(s.out)
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
		}
		s.mu.Lock()
		q := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, c := range q {
			select {
			case s.out <- c:
			case <-s.done:
				return
			}
		}
	}
}
