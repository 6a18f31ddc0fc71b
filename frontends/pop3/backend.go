package pop3

import (
	"context"
	"fmt"
	"sync"

	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// backend is what a session needs from the store, narrowed from
// frontends.Store so that protocol tests can fake it (a raftstore.ReadTx
// cannot be built outside raftstore).
type backend interface {
	Authenticate(user, pass string) (string, error)
	// Maildrop reads the account's INBOX in one consistent view.
	Maildrop(account string) (maildropInfo, error)
	// Body returns a message body, decompressed, through the store's body
	// cache: read-only, shared with other readers.
	Body(blobID [32]byte) ([]byte, error)
	Propose(ctx context.Context, c *command.Command) (raftstore.Result, error)
	NodeID() string
}

// maildropInfo is the INBOX at one applied index.
type maildropInfo struct {
	MailboxID   uint64
	UIDValidity uint32
	Msgs        []msgInfo
}

// msgInfo is what the session keeps of one message.
type msgInfo struct {
	UID    uint32
	Size   int64 // raw size as stored
	BlobID [32]byte
}

// storeBackend adapts a frontends.Store.
type storeBackend struct {
	s frontends.Store
}

func (b storeBackend) Authenticate(user, pass string) (string, error) {
	return b.s.Authenticate(user, pass)
}

func (b storeBackend) Propose(ctx context.Context, c *command.Command) (raftstore.Result, error) {
	return b.s.Propose(ctx, c)
}

func (b storeBackend) NodeID() string { return b.s.NodeID() }

func (b storeBackend) Maildrop(account string) (maildropInfo, error) {
	var md maildropInfo
	err := b.s.View(func(r *raftstore.ReadTx) error {
		mb, err := r.MailboxByName(account, "INBOX")
		if err != nil {
			return err
		}
		md = maildropInfo{MailboxID: mb.ID, UIDValidity: mb.UIDValidity, Msgs: make([]msgInfo, 0, mb.Messages)}
		return r.Messages(mb.ID, nil, func(m *raftstore.Message) error {
			md.Msgs = append(md.Msgs, msgInfo{UID: m.UID, Size: m.Size, BlobID: m.BlobID})
			return nil
		})
	})
	if err != nil {
		return maildropInfo{}, fmt.Errorf("read INBOX of %s: %w", account, err)
	}
	return md, nil
}

func (b storeBackend) Body(id [32]byte) ([]byte, error) {
	var body []byte
	err := b.s.View(func(r *raftstore.ReadTx) error {
		var err error
		body, err = r.SharedBody(id) // only read: no private copy per RETR
		return err
	})
	return body, err
}

// sizeCache remembers the on-the-wire size of bodies. Bodies are
// content-addressed and immutable, so an entry never goes stale; only the
// memory is bounded (FIFO eviction).
type sizeCache struct {
	mu    sync.Mutex
	max   int
	m     map[[32]byte]int64
	order [][32]byte
}

func newSizeCache(max int) *sizeCache {
	return &sizeCache{max: max, m: make(map[[32]byte]int64)}
}

func (c *sizeCache) get(id [32]byte) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.m[id]
	return n, ok
}

func (c *sizeCache) put(id [32]byte, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; ok {
		return
	}
	if len(c.order) >= c.max {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
	c.m[id] = n
	c.order = append(c.order, id)
}
