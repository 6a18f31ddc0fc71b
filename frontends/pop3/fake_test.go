package pop3

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// fakeBackend is an in-memory backend for protocol tests: accounts,
// one INBOX each, leases judged by the local clock, and injectable write
// failures.
type fakeBackend struct {
	mu          sync.Mutex
	node        string
	passwords   map[string]string
	inbox       map[string][]fakeMsg
	bodies      map[[32]byte][]byte
	leases      map[string]fakeLease
	expungeErr  error // returned by Propose for Expunge
	proposals   []command.Command
	bodyReads   int
	uidValidity uint32
	nextUID     uint32
}

type fakeMsg struct {
	uid  uint32
	blob [32]byte
	size int64
}

type fakeLease struct {
	holder  string
	expires time.Time
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		node:        "n1",
		passwords:   map[string]string{},
		inbox:       map[string][]fakeMsg{},
		bodies:      map[[32]byte][]byte{},
		leases:      map[string]fakeLease{},
		uidValidity: 1234,
		nextUID:     1,
	}
}

func (f *fakeBackend) addUser(user, pass string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.passwords[user] = pass
	f.inbox[user] = nil
}

// deliver appends a message and returns its UID.
func (f *fakeBackend) deliver(user string, body string) uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := sha256.Sum256([]byte(body))
	f.bodies[id] = []byte(body)
	uid := f.nextUID
	f.nextUID++
	f.inbox[user] = append(f.inbox[user], fakeMsg{uid: uid, blob: id, size: int64(len(body))})
	return uid
}

func (f *fakeBackend) uids(user string) []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []uint32
	for _, m := range f.inbox[user] {
		out = append(out, m.uid)
	}
	return out
}

func (f *fakeBackend) setExpungeErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expungeErr = err
}

func (f *fakeBackend) leaseHolder(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.leases[name]
	if time.Now().After(l.expires) {
		return ""
	}
	return l.holder
}

func (f *fakeBackend) stealLease(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leases[name] = fakeLease{holder: "thief", expires: time.Now().Add(time.Hour)}
}

func (f *fakeBackend) expunges() []command.Expunge {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []command.Expunge
	for _, c := range f.proposals {
		if e, ok := c.Payload.(*command.Expunge); ok {
			out = append(out, *e)
		}
	}
	return out
}

func (f *fakeBackend) Authenticate(user, pass string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.passwords[user]; ok && p == pass && pass != "" {
		return user, nil
	}
	return "", raftstore.ErrAuthFailed
}

func (f *fakeBackend) Maildrop(account string) (maildropInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	msgs, ok := f.inbox[account]
	if !ok {
		return maildropInfo{}, raftstore.ErrNoSuchMailbox
	}
	md := maildropInfo{MailboxID: 7, UIDValidity: f.uidValidity}
	for _, m := range msgs {
		md.Msgs = append(md.Msgs, msgInfo{UID: m.uid, Size: m.size, BlobID: m.blob})
	}
	return md, nil
}

func (f *fakeBackend) Body(id [32]byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bodyReads++
	b, ok := f.bodies[id]
	if !ok {
		return nil, raftstore.ErrNoSuchMessage
	}
	return append([]byte(nil), b...), nil
}

func (f *fakeBackend) NodeID() string { return f.node }

func (f *fakeBackend) Propose(ctx context.Context, c *command.Command) (raftstore.Result, error) {
	if err := ctx.Err(); err != nil {
		return raftstore.Result{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.proposals = append(f.proposals, *c)
	switch p := c.Payload.(type) {
	case *command.Lease:
		cur := f.leases[p.Name]
		held := cur.holder != "" && cur.holder != p.Holder && time.Now().Before(cur.expires)
		switch p.Op {
		case command.LeaseAcquire:
			if held {
				return raftstore.Result{Status: raftstore.Status{Code: "lease_held", Msg: "in use"}}, nil
			}
			f.leases[p.Name] = fakeLease{holder: p.Holder, expires: time.Now().Add(time.Duration(p.TTL))}
		case command.LeaseRelease:
			if cur.holder == p.Holder {
				delete(f.leases, p.Name)
			}
		}
		return raftstore.Result{}, nil
	case *command.Expunge:
		if f.expungeErr != nil {
			return raftstore.Result{}, f.expungeErr
		}
		if len(p.UIDs) == 0 {
			return raftstore.Result{}, errors.New("fake: refusing an expunge of the whole mailbox")
		}
		in := func(uid uint32) bool {
			for _, r := range p.UIDs {
				if uid >= r.Start && uid <= r.Stop {
					return true
				}
			}
			return false
		}
		var keep []fakeMsg
		var gone []uint32
		for _, m := range f.inbox[p.Account] {
			if in(m.uid) {
				gone = append(gone, m.uid)
			} else {
				keep = append(keep, m)
			}
		}
		f.inbox[p.Account] = keep
		sort.Slice(gone, func(i, j int) bool { return gone[i] < gone[j] })
		return raftstore.Result{UIDs: gone}, nil
	}
	return raftstore.Result{}, fmt.Errorf("fake: unexpected command %T", c.Payload)
}
