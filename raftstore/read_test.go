package raftstore

import (
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/raftmail/raftmail/raftstore/command"
)

// TestMessageReader: one cursor answers like ReadTx.Message in ascending
// order (next key), across expunged UIDs (gaps), out of order (seeks),
// past the end, and for another mailbox's keys.
func TestMessageReader(t *testing.T) {
	s := newScript(t)
	s.ok("", &command.AddDomain{Name: "example.org"})
	s.ok("", &command.AddAccount{Address: "a@example.org", PassHash: "h"})
	s.ok("", &command.AddAccount{Address: "b@example.org", PassHash: "h"})
	for i := 0; i < 10; i++ {
		s.ok(fmt.Sprintf("k%d", i), &command.Deliver{Blob: s.blob(fmt.Sprint(i), 100), Rcpts: []string{"a@example.org", "b@example.org"}})
	}
	inbox := s.mbox("a@example.org", "INBOX")
	s.ok("", &command.Expunge{Account: "a@example.org", MailboxID: inbox.ID,
		UIDs: []command.UIDRange{{Start: 3, Stop: 3}, {Start: 7, Stop: 8}}})
	order := []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 2, 9, 1, 0, 10, 4, 4}
	err := s.ref.view(func(tx *bolt.Tx) error {
		r := &ReadTx{tx: tx}
		mr := r.MessageReader(inbox.ID)
		for _, uid := range order {
			want, werr := r.Message(inbox.ID, uid)
			got, gerr := mr.Message(uid)
			if (werr == nil) != (gerr == nil) || got.UID != want.UID || got.BlobID != want.BlobID || got.ModSeq != want.ModSeq {
				return fmt.Errorf("uid %d: reader %+v, %v; ReadTx %+v, %v", uid, got, gerr, want, werr)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
