package imap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/raftstore"
)

// errStop ends a read iteration early.
var errStop = errors.New("stop")

// errMailboxGone answers commands on a selected mailbox that was deleted.
var errMailboxGone = errors.New("selected mailbox was deleted")

// registry holds, for every mailbox selected by at least one session on
// this node, the server view of its messages: the UIDs in sequence order and
// one imapserver.MailboxTracker. One goroutine (run) feeds it from the
// store's change feed in apply order; it is the only writer of uids and the
// only caller of the tracker's Queue* methods, so sequence numbers never
// race (DESIGN.md invariant 5).
//
// Locks: registry.mu guards the maps; mbox.mu guards one mailbox's uids and
// its tracker updates. Order: registry.mu before mbox.mu, never the reverse
// while waiting on anything else.
type registry struct {
	store  frontends.Store
	logger *slog.Logger

	mu       sync.Mutex
	boxes    map[uint64]*mbox
	sessions map[string]*session // by session id (change Origin)
}

// mbox is the shared server view of one selected mailbox.
type mbox struct {
	id      uint64
	account string

	mu      sync.Mutex
	refs    int      // sessions holding it; guarded by registry.mu
	uids    []uint32 // server sequence order (seq = index+1)
	uidNext uint32
	uidVal  uint32
	// applied is the highest log index reflected in uids: the index the
	// mailbox was loaded at, then each applied change's.
	applied uint64
	advance chan struct{} // closed and replaced when applied grows
	gone    bool
	tracker *imapserver.MailboxTracker
}

func newRegistry(store frontends.Store, logger *slog.Logger) *registry {
	return &registry{
		store:    store,
		logger:   logger,
		boxes:    make(map[uint64]*mbox),
		sessions: make(map[string]*session),
	}
}

func (r *registry) addSession(s *session) {
	r.mu.Lock()
	r.sessions[s.id] = s
	r.mu.Unlock()
}

func (r *registry) removeSession(s *session) {
	r.mu.Lock()
	delete(r.sessions, s.id)
	r.mu.Unlock()
}

// acquire returns the shared view of a mailbox, loading it from local state
// if no session has it yet, and a new session tracker on it. The load reads
// the mailbox once, in one read transaction, and remembers the applied
// index it saw; the feed then skips changes at or below it.
// selectInfo is what SELECT reports, read atomically with the creation of
// the session tracker so that the tracker's later updates apply on top of
// exactly this count.
type selectInfo struct {
	count       uint32
	uidNext     uint32
	uidValidity uint32
}

func (r *registry) acquire(account string, id uint64) (*mbox, *imapserver.SessionTracker, selectInfo, error) {
	r.mu.Lock()
	mb, ok := r.boxes[id]
	if !ok {
		mb = &mbox{id: id, account: account, advance: make(chan struct{})}
		r.boxes[id] = mb
	}
	mb.refs++
	mb.mu.Lock()
	r.mu.Unlock()
	var err error
	switch {
	case !ok:
		if err = r.load(mb); err != nil {
			mb.gone = true
		} else {
			mb.tracker = imapserver.NewMailboxTracker(uint32(len(mb.uids)))
		}
	case mb.gone || mb.account != account:
		err = fmt.Errorf("%w: mailbox %d", raftstore.ErrNoSuchMailbox, id)
	}
	var st *imapserver.SessionTracker
	var info selectInfo
	if err == nil {
		st = mb.tracker.NewSession()
		info = selectInfo{count: uint32(len(mb.uids)), uidNext: mb.uidNext, uidValidity: mb.uidVal}
	}
	mb.mu.Unlock()
	if err != nil {
		r.release(mb)
		return nil, nil, info, err
	}
	return mb, st, info, nil
}

func (r *registry) load(mb *mbox) error {
	return r.store.View(func(tx *raftstore.ReadTx) error {
		m, err := tx.Mailbox(mb.id)
		if err != nil {
			return err
		}
		if m.Account != mb.account {
			return fmt.Errorf("%w: mailbox %d", raftstore.ErrNoSuchMailbox, mb.id)
		}
		mb.uidVal, mb.uidNext = m.UIDValidity, m.UIDNext
		mb.applied = tx.AppliedIndex()
		mb.uids = tx.UIDs(mb.id, m.Messages)
		return nil
	})
}

// release drops one session's hold; the last one removes the mailbox.
func (r *registry) release(mb *mbox) {
	r.mu.Lock()
	defer r.mu.Unlock()
	mb.refs--
	if mb.refs <= 0 && r.boxes[mb.id] == mb {
		delete(r.boxes, mb.id)
	}
}

// run consumes the change feed until ctx ends or the feed closes.
func (r *registry) run(ctx context.Context, feed <-chan raftstore.Change) {
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-feed:
			if !ok {
				return
			}
			r.apply(c)
		}
	}
}

func (r *registry) apply(c raftstore.Change) {
	switch c := c.(type) {
	case raftstore.MessageAdded:
		r.withBox(c.MailboxID, c.ModSeq, func(mb *mbox) { mb.added(c.UID) })
	case raftstore.MessagesExpunged:
		r.withBox(c.MailboxID, c.ModSeq, func(mb *mbox) { mb.expunged(c.UIDs, r.logger) })
	case raftstore.FlagsChanged:
		src := r.origin(c.Origin, c.MailboxID)
		r.withBox(c.MailboxID, c.ModSeq, func(mb *mbox) { mb.flagsChanged(c, src) })
	case raftstore.MailboxChanged:
		if c.Deleted {
			r.mailboxDeleted(c.MailboxID)
		}
	case raftstore.StateReset:
		r.reset()
	}
}

// withBox runs fn on a mailbox's view if one is loaded and the change is
// newer than what it reflects, then records the change's index.
func (r *registry) withBox(id, index uint64, fn func(*mbox)) {
	r.mu.Lock()
	mb, ok := r.boxes[id]
	r.mu.Unlock()
	if !ok {
		return
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.gone || mb.tracker == nil || index <= mb.applied {
		return
	}
	fn(mb)
	mb.setApplied(index)
}

func (mb *mbox) setApplied(index uint64) {
	if index > mb.applied {
		mb.applied = index
		close(mb.advance)
		mb.advance = make(chan struct{})
	}
}

// added appends a UID; UIDs only grow, so the list stays sorted. One EXISTS
// per message keeps SessionTracker.EncodeSeqNum exact (it cannot hide an
// increment of more than one).
func (mb *mbox) added(uid uint32) {
	if n := len(mb.uids); n > 0 && uid <= mb.uids[n-1] {
		return // already known (cannot happen with ordered apply)
	}
	mb.uids = append(mb.uids, uid)
	if uid >= mb.uidNext {
		mb.uidNext = uid + 1
	}
	mb.tracker.QueueNumMessages(uint32(len(mb.uids)))
}

// expunged removes UIDs, queueing EXPUNGE with current server sequence
// numbers (RFC 9051 §7.5.1), highest first so earlier numbers stay valid.
func (mb *mbox) expunged(uids []uint32, logger *slog.Logger) {
	for i := len(uids) - 1; i >= 0; i-- {
		seq := mb.seqOf(uids[i])
		if seq == 0 {
			logger.Warn("expunge of a UID the tracker does not hold", "mailbox_id", mb.id, "uid", uids[i])
			continue
		}
		mb.uids = append(mb.uids[:seq-1], mb.uids[seq:]...)
		mb.tracker.QueueExpunge(seq)
	}
}

func (mb *mbox) flagsChanged(c raftstore.FlagsChanged, src *session) {
	seq := mb.seqOf(c.UID)
	if seq == 0 {
		return
	}
	var st *imapserver.SessionTracker
	if src != nil {
		st = src.trackerFor(mb)
	}
	mb.tracker.QueueMessageFlags(seq, imapUID(c.UID), toIMAPFlags(c.Flags), st)
}

// seqOf returns the server sequence number of a UID, 0 if absent. Caller
// holds mb.mu.
func (mb *mbox) seqOf(uid uint32) uint32 {
	i := sort.Search(len(mb.uids), func(i int) bool { return mb.uids[i] >= uid })
	if i < len(mb.uids) && mb.uids[i] == uid {
		return uint32(i + 1)
	}
	return 0
}

func (r *registry) origin(id string, mailboxID uint64) *session {
	if id == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sessions[id]
}

// mailboxDeleted marks a selected mailbox as gone and ends the sessions
// that have it selected (RFC 9051 §6.3.4 leaves this to the server; a BYE
// is what Dovecot does and what clients handle best).
func (r *registry) mailboxDeleted(id uint64) {
	r.mu.Lock()
	mb, ok := r.boxes[id]
	var victims []*session
	if ok {
		delete(r.boxes, id)
		for _, s := range r.sessions {
			if s.selectedBox() == mb {
				victims = append(victims, s)
			}
		}
	}
	r.mu.Unlock()
	if !ok {
		return
	}
	mb.mu.Lock()
	mb.gone = true
	mb.mu.Unlock()
	for _, s := range victims {
		s.bye("Selected mailbox was deleted")
	}
}

// reset drops every view and ends every session: after a snapshot restore
// the state may have changed in ways no change describes.
func (r *registry) reset() {
	r.mu.Lock()
	boxes := r.boxes
	r.boxes = make(map[uint64]*mbox)
	victims := make([]*session, 0, len(r.sessions))
	for _, s := range r.sessions {
		victims = append(victims, s)
	}
	r.mu.Unlock()
	for _, mb := range boxes {
		mb.mu.Lock()
		mb.gone = true
		mb.mu.Unlock()
	}
	r.logger.Warn("state reset by snapshot restore, closing IMAP sessions", "sessions", len(victims))
	for _, s := range victims {
		s.bye("Server state was restored, please reconnect")
	}
}

// waitApplied waits until the mailbox view reflects index (for a session
// that just wrote and must report its own EXISTS/EXPUNGE).
func (mb *mbox) waitApplied(ctx context.Context, index uint64) error {
	for {
		mb.mu.Lock()
		cur, ch, gone := mb.applied, mb.advance, mb.gone
		mb.mu.Unlock()
		if cur >= index || gone {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for mailbox view to reach %d (at %d): %w", index, cur, ctx.Err())
		}
	}
}

// snapshot returns the UIDs with their client sequence numbers (0 when the
// client has not been told about the message yet), under one lock.
func (mb *mbox) snapshot(st *imapserver.SessionTracker) (uids []uint32, seqs []uint32, uidNext uint32) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	uids = append([]uint32(nil), mb.uids...)
	seqs = make([]uint32, len(uids))
	for i := range uids {
		seqs[i] = st.EncodeSeqNum(uint32(i + 1))
	}
	return uids, seqs, mb.uidNext
}
