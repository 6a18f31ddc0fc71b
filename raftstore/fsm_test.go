package raftstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/raftmail/raftmail/raftstore/command"
)

const (
	alice = "alice@example.org"
	bob   = "bob@example.org"
	carol = "carol@example.org"
	dave  = "dave@other.org"
)

// scenario builds a long sequence touching every command type and the
// awkward cases: aliases (catch-all, +tag), unknown and over-quota
// recipients, duplicate keys, every flag op, copies, moves, expunges with
// and without OnlyDeleted, mailbox hierarchy renames (INBOX too), leases,
// chunked bodies (one incomplete and garbage-collected after an hour), and
// dedupe expiry after 24 hours, all by command time. It also interleaves
// non-command entries and a skippable unknown type.
func scenario(t testing.TB) *script {
	s := newScript(t)
	s.raw(raft.LogConfiguration, nil)
	s.ok("", &command.AddDomain{Name: "Example.org."})
	s.ok("", &command.AddDomain{Name: "other.org"})
	for _, a := range []struct {
		addr  string
		quota int64
	}{{alice, 0}, {bob, 0}, {carol, 30_000}, {dave, 0}} {
		s.ok("acct-"+a.addr, &command.AddAccount{Address: a.addr, PassHash: "$argon2id$fake$" + a.addr, Quota: a.quota})
	}
	if r := s.do("", &command.AddAccount{Address: alice, PassHash: "x"}); !errors.Is(r.Err(), ErrAccountExists) {
		t.Fatalf("duplicate account: %v", r.Err())
	}
	s.ok("", &command.AddAlias{Address: "postmaster@example.org", Target: alice})
	s.ok("", &command.AddAlias{Address: "@other.org", Target: dave})
	s.raw(raft.LogNoop, nil)

	// One delivery to many recipients, some refused.
	b1 := s.blob("first", 20_000)
	r := s.ok("deliver-1", &command.Deliver{From: "x@remote.net", Blob: b1, Rcpts: []string{
		alice, "Bob+lists@Example.org", "postmaster@example.org", "nobody@example.org",
		"someone@other.org", "x@remote.net", carol, alice, "not an address"}})
	wantCodes := []string{"", "", "", "no_user", "", "no_domain", "", "", "invalid"}
	for i, rr := range r.Rcpts {
		if rr.Status.Code != wantCodes[i] {
			t.Fatalf("rcpt %s: code %q, want %q", rr.Rcpt, rr.Status.Code, wantCodes[i])
		}
	}
	if r.Rcpts[2].UID != r.Rcpts[0].UID || r.Rcpts[2].Account != alice {
		t.Fatalf("alias to the same account stored twice: %+v", r.Rcpts)
	}
	// Same key again: the remembered result, nothing stored.
	if dup := s.do("deliver-1", &command.Deliver{From: "x@remote.net", Blob: b1, Rcpts: []string{alice}}); !dup.Duplicate || len(dup.Rcpts) != len(r.Rcpts) {
		t.Fatalf("duplicate key not deduplicated: %+v", dup)
	}
	// Carol's quota (30 kB) is now full for another 20 kB body.
	r = s.ok("deliver-2", &command.Deliver{Blob: s.blob("second", 20_000), Rcpts: []string{carol, bob}, Junk: true, Flags: []string{`\seen`}})
	if !errors.Is(r.Rcpts[0].Status.Err(), ErrQuotaExceeded) || r.Rcpts[1].Status.Code != "" {
		t.Fatalf("quota: %+v", r.Rcpts)
	}
	if r.Rcpts[1].MailboxID != s.mbox(bob, "Junk").ID {
		t.Fatal("junk delivery not in Junk")
	}
	for i := range 30 {
		rcpts := []string{alice, bob, "bob+" + fmt.Sprint(i) + "@example.org"}
		s.ok(fmt.Sprintf("bulk-%d", i), &command.Deliver{Blob: s.blob(fmt.Sprint("bulk", i%7), 3000+i*10), Rcpts: rcpts})
	}

	inbox := s.mbox(alice, "INBOX")
	sent := s.mbox(alice, "Sent")
	s.ok("append-1", &command.Append{Account: alice, MailboxID: sent.ID, Blob: s.blob("sent-1", 4000), Flags: []string{`\Seen`, "$Draft"}, InternalDate: t0 - 5})
	if r := s.do("", &command.Append{Account: bob, MailboxID: sent.ID, Blob: s.blob("x", 10)}); !errors.Is(r.Err(), ErrNoSuchMailbox) {
		t.Fatalf("append into another account's mailbox: %v", r.Err())
	}

	// Flags: every op, UnchangedSince.
	all := []command.UIDRange{{Start: 1}}
	s.ok("f1", &command.SetFlags{Account: alice, MailboxID: inbox.ID, UIDs: []command.UIDRange{{Start: 1, Stop: 10}}, Op: command.FlagsAdd, Flags: []string{`\seen`, "$Work"}})
	s.ok("f2", &command.SetFlags{Account: alice, MailboxID: inbox.ID, UIDs: []command.UIDRange{{Start: 5, Stop: 20}, {Start: 3, Stop: 4}}, Op: command.FlagsAdd, Flags: []string{`\Deleted`}})
	s.ok("f3", &command.SetFlags{Account: alice, MailboxID: inbox.ID, UIDs: []command.UIDRange{{Start: 8, Stop: 9}}, Op: command.FlagsRemove, Flags: []string{`\DELETED`, "$work"}})
	s.ok("f4", &command.SetFlags{Account: alice, MailboxID: inbox.ID, UIDs: []command.UIDRange{{Start: 25}}, Op: command.FlagsReplace, Flags: []string{`\Flagged`, `\Recent`, `\Flagged`}})
	r = s.ok("f5", &command.SetFlags{Account: alice, MailboxID: inbox.ID, UIDs: all, Op: command.FlagsAdd, Flags: []string{`\Answered`}, UnchangedSince: s.index - 2})
	if len(r.Failed) == 0 || len(r.UIDs) == 0 {
		t.Fatalf("UnchangedSince split nothing: %+v", r)
	}

	// Copy, move, expunge.
	s.ok("mk-lists", &command.CreateMailbox{Account: alice, Name: "Lists/go/nuts", SpecialUse: `\flagged`})
	lists := s.mbox(alice, "Lists/go/nuts")
	s.ok("copy-1", &command.Copy{Account: alice, SrcID: inbox.ID, DstID: lists.ID, UIDs: []command.UIDRange{{Start: 1, Stop: 6}}, AddFlags: []string{"$Copied"}, DelFlags: []string{`\Seen`}})
	s.ok("copy-self", &command.Copy{Account: alice, SrcID: lists.ID, DstID: lists.ID, UIDs: []command.UIDRange{{Start: 1, Stop: 2}}})
	s.ok("move-1", &command.Copy{Account: alice, SrcID: inbox.ID, DstID: s.mbox(alice, "Archive").ID, UIDs: []command.UIDRange{{Start: 10, Stop: 14}}, Move: true})
	if r := s.do("", &command.Copy{Account: alice, SrcID: inbox.ID, DstID: inbox.ID, UIDs: all, Move: true}); !errors.Is(r.Err(), ErrInvalid) {
		t.Fatalf("move into itself: %v", r.Err())
	}
	s.ok("exp-del", &command.Expunge{Account: alice, MailboxID: inbox.ID, OnlyDeleted: true})
	s.ok("exp-uids", &command.Expunge{Account: alice, MailboxID: inbox.ID, UIDs: []command.UIDRange{{Start: 20, Stop: 22}, {Start: 30}}})
	s.ok("exp-none", &command.Expunge{Account: alice, MailboxID: inbox.ID, UIDs: []command.UIDRange{{Start: 1000}}})
	checkUIDs(t, s.ref, inbox.ID, lists.ID, s.mbox(alice, "Archive").ID)

	// Mailbox hierarchy.
	s.ok("", &command.RenameMailbox{Account: alice, Name: "Lists", NewName: "Groups"})
	if r := s.do("", &command.RenameMailbox{Account: alice, Name: "Groups", NewName: "Groups/sub"}); !errors.Is(r.Err(), ErrInvalid) {
		t.Fatalf("rename into itself: %v", r.Err())
	}
	s.ok("", &command.RenameMailbox{Account: alice, Name: "inbox", NewName: "Old INBOX"})
	s.ok("", &command.Subscribe{Account: alice, Name: "Groups/go", Subscribed: true})
	s.ok("", &command.DeleteMailbox{Account: alice, Name: "Groups/go/nuts"})
	s.ok("", &command.CreateMailbox{Account: alice, Name: "Groups/go/nuts"})
	if r := s.do("", &command.DeleteMailbox{Account: alice, Name: "INBOX"}); !errors.Is(r.Err(), ErrMailboxProtect) {
		t.Fatalf("delete INBOX: %v", r.Err())
	}
	s.ok("after-rename", &command.Deliver{Blob: s.blob("after-rename", 2000), Rcpts: []string{alice}})

	// Leases, judged by command time.
	lease := func(holder string, op command.LeaseOp, ttl time.Duration) Result {
		return s.do("", &command.Lease{Name: "pop3:" + bob, Holder: holder, Op: op, TTL: int64(ttl)})
	}
	if r := lease("n1/1", command.LeaseAcquire, time.Minute); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if r := lease("n1/1", command.LeaseAcquire, time.Minute); r.Err() != nil {
		t.Fatalf("renew: %v", r.Err())
	}
	if r := lease("n2/7", command.LeaseAcquire, time.Minute); !errors.Is(r.Err(), ErrLeaseHeld) {
		t.Fatalf("second holder: %v", r.Err())
	}
	s.advance(2 * time.Minute)
	if r := lease("n2/7", command.LeaseAcquire, time.Minute); r.Err() != nil {
		t.Fatalf("acquire after expiry: %v", r.Err())
	}
	lease("n1/1", command.LeaseRelease, 0) // not the holder: no effect
	if r := lease("n3/1", command.LeaseAcquire, time.Minute); !errors.Is(r.Err(), ErrLeaseHeld) {
		t.Fatalf("release by a non-holder freed the lease: %v", r.Err())
	}
	lease("n2/7", command.LeaseRelease, 0)
	if r := lease("n3/1", command.LeaseAcquire, 0); !errors.Is(r.Err(), ErrInvalid) {
		t.Fatalf("zero TTL: %v", r.Err())
	}

	// Chunked bodies: one complete, one incomplete.
	big := s.blob("big", 60_000)
	pieces := split(big.Data, 3)
	for i, p := range pieces {
		s.ok(fmt.Sprintf("chunk-big-%d", i), &command.BlobChunk{ID: big.ID, Seq: uint32(i), Data: p})
	}
	chunked := big
	chunked.Data, chunked.Chunks = nil, uint32(len(pieces))
	s.ok("deliver-big", &command.Deliver{Blob: chunked, Rcpts: []string{bob, alice}})
	lost := s.blob("lost", 50_000)
	lostPieces := split(lost.Data, 3)
	s.ok("chunk-lost-0", &command.BlobChunk{ID: lost.ID, Seq: 0, Data: lostPieces[0]})
	s.ok("chunk-lost-2", &command.BlobChunk{ID: lost.ID, Seq: 2, Data: lostPieces[2]})
	lostRef := lost
	lostRef.Data, lostRef.Chunks = nil, 3
	if r := s.do("deliver-lost", &command.Deliver{Blob: lostRef, Rcpts: []string{bob}}); !errors.Is(r.Err(), ErrInvalid) {
		t.Fatalf("incomplete body accepted: %v", r.Err())
	}
	s.advance(61 * time.Minute)
	s.ok("", &command.Noop{})

	// Directory changes.
	s.ok("", &command.SetPassword{Address: bob, PassHash: "$argon2id$fake$new"})
	s.ok("", &command.SetQuota{Address: carol, Quota: 0})
	s.ok("", &command.RemoveAlias{Address: "postmaster@example.org"})
	s.ok("", &command.SetNode{ID: "n1", RaftAddr: "127.0.0.1:7001", APIAddr: "http://127.0.0.1:8001"})
	s.ok("", &command.SetNode{ID: "n2", RaftAddr: "127.0.0.1:7002", APIAddr: "http://127.0.0.1:8002"})
	s.ok("", &command.SetNode{ID: "n2", Remove: true})
	if r := s.do("", &command.RemoveDomain{Name: "other.org"}); !errors.Is(r.Err(), ErrDomainInUse) {
		t.Fatalf("remove domain in use: %v", r.Err())
	}
	s.ok("", &command.RemoveAccount{Address: dave})
	s.ok("", &command.RemoveDomain{Name: "other.org"})
	// A skippable command of a type from the future.
	s.raw(raft.LogCommand, []byte{0x80 | 77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80})

	// A day later the dedupe table forgets deliver-1: the key applies again.
	s.advance(25 * time.Hour)
	s.ok("", &command.Noop{})
	if r := s.ok("deliver-1", &command.Deliver{Blob: b1, Rcpts: []string{bob}}); r.Duplicate {
		t.Fatal("dedupe key still remembered after 25 hours")
	}
	return s
}

func split(b []byte, n int) [][]byte {
	var out [][]byte
	size := (len(b) + n - 1) / n
	for len(b) > 0 {
		k := min(size, len(b))
		out = append(out, b[:k])
		b = b[k:]
	}
	return out
}

// TestFSMDeterminism drives fresh FSMs through the same entries, batched
// differently, and expects byte-identical state and identical results.
func TestFSMDeterminism(t *testing.T) {
	s := scenario(t)
	if err := checkState(s.ref); err != nil {
		t.Fatal(err)
	}
	want := fsmDigest(t, s.ref)
	for _, batch := range []int{1, 7, 32, len(s.logs)} {
		t.Run(fmt.Sprintf("batch %d", batch), func(t *testing.T) {
			f := newFSM(t)
			res := replay(t, f, s.logs, batch)
			if got := fsmDigest(t, f); got != want {
				t.Fatalf("digest %s, reference %s", got, want)
			}
			if !reflect.DeepEqual(res, s.results) {
				for i := range res {
					if !reflect.DeepEqual(res[i], s.results[i]) {
						t.Fatalf("entry %d: result %+v, reference %+v", s.logs[i].Index, res[i], s.results[i])
					}
				}
			}
			if idx, _ := f.appliedIndex(); idx != s.index {
				t.Fatalf("applied index %d, want %d", idx, s.index)
			}
		})
	}
}

// TestFSMByteBound makes every entry its own transaction through the byte
// bound and still expects the same state.
func TestFSMByteBound(t *testing.T) {
	s := scenario(t)
	f := newFSM(t)
	f.maxBatchBytes = 1
	replay(t, f, s.logs, len(s.logs))
	if got, want := fsmDigest(t, f), fsmDigest(t, s.ref); got != want {
		t.Fatalf("digest %s, reference %s", got, want)
	}
}

// TestFSMReplaySkipsApplied replays entries at or below the applied index,
// as raft does after a restart, and expects no change and no results.
func TestFSMReplaySkipsApplied(t *testing.T) {
	s := scenario(t)
	want := fsmDigest(t, s.ref)
	feed, cancel := s.ref.feed.subscribe(16)
	defer cancel()
	for _, batch := range []int{1, 16, len(s.logs)} {
		res := replay(t, s.ref, s.logs, batch)
		for i, r := range res {
			if r != nil {
				t.Fatalf("batch %d: replayed entry %d produced %+v", batch, s.logs[i].Index, r)
			}
		}
		if got := fsmDigest(t, s.ref); got != want {
			t.Fatalf("batch %d: replay changed the state", batch)
		}
	}
	// A batch that straddles the applied index applies only the new part.
	half := s.logs[len(s.logs)/2:]
	next := &raft.Log{Index: s.index + 1, Term: 2, Type: raft.LogCommand, Data: mustMarshal(t, s.now, "straddle",
		&command.Deliver{Blob: s.blob("straddle", 100), Rcpts: []string{bob}})}
	res := s.ref.ApplyBatch(append(append([]*raft.Log(nil), half...), next))
	last, ok := res[len(res)-1].(Result)
	if !ok || last.Err() != nil || last.Index != next.Index {
		t.Fatalf("new entry after replayed ones: %+v", res[len(res)-1])
	}
	for _, r := range res[:len(res)-1] {
		if r != nil {
			t.Fatalf("replayed entry produced %+v", r)
		}
	}
	select {
	case c := <-feed:
		if a, ok := c.(MessageAdded); !ok || a.Account != bob || a.ModSeq != next.Index {
			t.Fatalf("first change after replay: %#v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no change for the new entry")
	}
}

func mustMarshal(t testing.TB, now int64, key string, p command.Payload) []byte {
	t.Helper()
	b, err := command.Marshal(&command.Command{Time: now, Key: key, Payload: p})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFSMFatalOnUndecodable: a committed entry that does not decode stops
// the node (panics) rather than letting the replica diverge, and nothing of
// its batch is committed.
func TestFSMFatalOnUndecodable(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"truncated envelope", []byte{1, 2}},
		{"unknown type without skip bit", []byte{0x7e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80}},
		{"bad payload", []byte{byte(command.TypeDeliver), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := openFSM(t.TempDir()+"/state.db", true, discardLogger())
			if err != nil {
				t.Fatal(err)
			}
			// No close: a fatal apply leaves the FSM unusable by design.
			good := &raft.Log{Index: 3, Type: raft.LogCommand, Data: mustMarshal(t, t0, "", &command.AddDomain{Name: "example.org"})}
			bad := &raft.Log{Index: 4, Type: raft.LogCommand, Data: tt.data}
			panicked := func() (p any) {
				defer func() { p = recover() }()
				f.ApplyBatch([]*raft.Log{good, bad})
				return nil
			}()
			if panicked == nil || !strings.Contains(fmt.Sprint(panicked), "entry 4") {
				t.Fatalf("recovered %v, want a fatal stop naming entry 4", panicked)
			}
			if idx, _ := f.appliedIndex(); idx != 0 {
				t.Fatalf("applied index advanced to %d", idx)
			}
			if n := bucketLen(t, f, bDomains); n != 0 {
				t.Fatalf("the failed batch left %d domains", n)
			}
		})
	}
}

// TestInvariantsRandomized runs a random but seeded workload and checks
// after every step: counters equal a recount, UIDs only grow and are never
// reused, UIDVALIDITY never changes, MODSEQ is the log index.
func TestInvariantsRandomized(t *testing.T) {
	steps := 600
	if testing.Short() {
		steps = 150
	}
	rng := rand.New(rand.NewPCG(1, 2))
	s := newScript(t)
	type mboxState struct {
		uidValidity uint32
		maxUID      uint32 // highest UID ever assigned
	}
	seen := map[uint64]*mboxState{}
	s.check = func(l *raft.Log, res interface{}) {
		if err := checkState(s.ref); err != nil {
			t.Fatalf("after entry %d: %v", l.Index, err)
		}
		r, _ := res.(Result)
		if r.ModSeq != 0 && r.ModSeq != l.Index {
			t.Fatalf("entry %d: MODSEQ %d", l.Index, r.ModSeq)
		}
		err := s.ref.view(func(tx *bolt.Tx) error {
			return tx.Bucket(bMailboxes).ForEach(func(k, v []byte) error {
				var m Mailbox
				if err := decode(v, &m); err != nil {
					return err
				}
				st, ok := seen[m.ID]
				if !ok {
					st = &mboxState{uidValidity: m.UIDValidity}
					seen[m.ID] = st
				}
				if m.UIDValidity != st.uidValidity {
					return fmt.Errorf("mailbox %d: UIDVALIDITY %d became %d", m.ID, st.uidValidity, m.UIDValidity)
				}
				var err error
				(&txn{tx: tx}).eachMessage(m.ID, nil, func(msg *Message) {
					if msg.UID > st.maxUID {
						// A new UID: it must be newer than every earlier one
						// and carry this entry's index as MODSEQ.
						if msg.ModSeq != l.Index {
							err = fmt.Errorf("mailbox %d: new uid %d has MODSEQ %d at entry %d", m.ID, msg.UID, msg.ModSeq, l.Index)
						}
					}
				})
				if err != nil {
					return err
				}
				if m.UIDNext-1 < st.maxUID {
					return fmt.Errorf("mailbox %d: UIDNEXT went back to %d", m.ID, m.UIDNext)
				}
				st.maxUID = m.UIDNext - 1
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	s.ok("", &command.AddDomain{Name: "example.org"})
	accts := []string{alice, bob, carol}
	for i, a := range accts {
		s.ok("", &command.AddAccount{Address: a, PassHash: "h", Quota: int64(i) * 200_000})
	}
	names := []string{"INBOX", "Archive", "Work", "Work/a", "Trash"}
	pickMbox := func() (string, Mailbox, bool) {
		a := accts[rng.IntN(len(accts))]
		var m Mailbox
		err := s.ref.view(func(tx *bolt.Tx) error {
			var ok bool
			m, ok = (&txn{tx: tx}).mailboxByName(a, names[rng.IntN(len(names))])
			if !ok {
				return errors.New("none")
			}
			return nil
		})
		return a, m, err == nil
	}
	ranges := func() []command.UIDRange {
		if rng.IntN(4) == 0 {
			return nil
		}
		a := uint32(rng.IntN(40) + 1)
		rs := []command.UIDRange{{Start: a, Stop: a + uint32(rng.IntN(10))}}
		if rng.IntN(3) == 0 {
			rs = append(rs, command.UIDRange{Start: uint32(rng.IntN(40) + 1)})
		}
		return rs
	}
	flagSets := [][]string{{`\Seen`}, {`\Deleted`}, {`\Seen`, `\Deleted`}, {"$X"}, nil}
	for i := 0; i < steps; i++ {
		switch op := rng.IntN(10); op {
		case 0, 1, 2:
			n := rng.IntN(3) + 1
			var rcpts []string
			for range n {
				rcpts = append(rcpts, accts[rng.IntN(len(accts))])
			}
			s.do(fmt.Sprint("d", i), &command.Deliver{Blob: s.blob(fmt.Sprint("b", rng.IntN(20)), 500+rng.IntN(3000)), Rcpts: rcpts,
				Flags: flagSets[rng.IntN(len(flagSets))]})
		case 3:
			if a, m, ok := pickMbox(); ok {
				s.do("", &command.Append{Account: a, MailboxID: m.ID, Blob: s.blob(fmt.Sprint("a", rng.IntN(20)), 800), Flags: flagSets[rng.IntN(len(flagSets))]})
			}
		case 4, 5:
			if a, m, ok := pickMbox(); ok {
				s.do("", &command.SetFlags{Account: a, MailboxID: m.ID, UIDs: ranges(), Op: command.FlagOp(rng.IntN(3)), Flags: flagSets[rng.IntN(len(flagSets))]})
			}
		case 6:
			if a, m, ok := pickMbox(); ok {
				s.do("", &command.Expunge{Account: a, MailboxID: m.ID, UIDs: ranges(), OnlyDeleted: rng.IntN(2) == 0})
			}
		case 7:
			a, m, ok := pickMbox()
			if !ok {
				continue
			}
			var dst Mailbox
			_ = s.ref.view(func(tx *bolt.Tx) error {
				dst, _ = (&txn{tx: tx}).mailboxByName(a, names[rng.IntN(len(names))])
				return nil
			})
			s.do("", &command.Copy{Account: a, SrcID: m.ID, DstID: dst.ID, UIDs: ranges(), Move: rng.IntN(2) == 0, AddFlags: flagSets[rng.IntN(len(flagSets))]})
		case 8:
			a := accts[rng.IntN(len(accts))]
			name := names[1+rng.IntN(len(names)-1)]
			if rng.IntN(2) == 0 {
				s.do("", &command.DeleteMailbox{Account: a, Name: name})
			} else {
				s.do("", &command.CreateMailbox{Account: a, Name: name})
			}
		case 9:
			a := accts[rng.IntN(len(accts))]
			s.do("", &command.RenameMailbox{Account: a, Name: names[rng.IntN(len(names))], NewName: names[1+rng.IntN(len(names)-1)]})
		}
	}
	// The same entries on a fresh FSM give the same state.
	f := newFSM(t)
	replay(t, f, s.logs, 16)
	if fsmDigest(t, f) != fsmDigest(t, s.ref) {
		t.Fatal("randomized sequence is not deterministic")
	}
}

// TestUIDValidityOnRecreate: a deleted and re-created mailbox gets a new
// UIDVALIDITY and starts at UID 1; UIDs are not reused after expunge.
func TestUIDValidityOnRecreate(t *testing.T) {
	s := newScript(t)
	s.ok("", &command.AddDomain{Name: "example.org"})
	s.ok("", &command.AddAccount{Address: alice, PassHash: "h"})
	r := s.ok("", &command.CreateMailbox{Account: alice, Name: "Work"})
	first := r.UIDValidity
	a1 := s.ok("", &command.Append{Account: alice, MailboxID: r.MailboxID, Blob: s.blob("1", 100)})
	s.ok("", &command.Expunge{Account: alice, MailboxID: r.MailboxID})
	a2 := s.ok("", &command.Append{Account: alice, MailboxID: r.MailboxID, Blob: s.blob("1", 100)})
	if a2.UIDs[0] <= a1.UIDs[0] {
		t.Fatalf("UID %d reused after expunge (was %d)", a2.UIDs[0], a1.UIDs[0])
	}
	if a2.ModSeq != s.index || s.mbox(alice, "Work").HighestModSeq != s.index {
		t.Fatalf("MODSEQ %d, HIGHESTMODSEQ %d, want index %d", a2.ModSeq, s.mbox(alice, "Work").HighestModSeq, s.index)
	}
	s.ok("", &command.DeleteMailbox{Account: alice, Name: "Work"})
	r2 := s.ok("", &command.CreateMailbox{Account: alice, Name: "work"}) // names are case-sensitive except INBOX
	if r2.UIDValidity == first || r2.MailboxID == r.MailboxID {
		t.Fatalf("re-created mailbox kept UIDVALIDITY %d / id %d", r2.UIDValidity, r2.MailboxID)
	}
	a3 := s.ok("", &command.Append{Account: alice, MailboxID: r2.MailboxID, Blob: s.blob("1", 100)})
	if a3.UIDs[0] != 1 || a3.UIDValidity != r2.UIDValidity {
		t.Fatalf("new mailbox: uid %d uidvalidity %d", a3.UIDs[0], a3.UIDValidity)
	}
	// Renaming keeps UIDVALIDITY (the mailbox ID and its UIDs survive).
	s.ok("", &command.RenameMailbox{Account: alice, Name: "work", NewName: "Job"})
	if m := s.mbox(alice, "Job"); m.UIDValidity != r2.UIDValidity || m.ID != r2.MailboxID {
		t.Fatalf("rename changed the mailbox: %+v", m)
	}
	// Renaming INBOX creates a new mailbox and leaves INBOX, with its
	// UIDVALIDITY, in place and empty.
	in := s.mbox(alice, "INBOX")
	s.ok("", &command.Deliver{Blob: s.blob("in", 100), Rcpts: []string{alice}})
	s.ok("", &command.RenameMailbox{Account: alice, Name: "INBOX", NewName: "Saved"})
	after := s.mbox(alice, "INBOX")
	saved := s.mbox(alice, "Saved")
	if after.ID != in.ID || after.UIDValidity != in.UIDValidity || after.Messages != 0 || saved.Messages != 1 || saved.UIDValidity == in.UIDValidity {
		t.Fatalf("INBOX rename: inbox %+v saved %+v", after, saved)
	}
	if err := checkState(s.ref); err != nil {
		t.Fatal(err)
	}
}

// checkUIDs: ReadTx.UIDs (keys only) lists exactly the UIDs that
// ReadTx.Messages yields, mailbox by mailbox, with gaps from expunges and
// neighbouring mailboxes' keys on either side.
func checkUIDs(t testing.TB, f *fsm, mailboxIDs ...uint64) {
	t.Helper()
	err := f.view(func(tx *bolt.Tx) error {
		r := &ReadTx{tx: tx}
		for _, id := range mailboxIDs {
			var want []uint32
			if err := r.Messages(id, nil, func(m *Message) error { want = append(want, m.UID); return nil }); err != nil {
				return err
			}
			if got := r.UIDs(id, 0); !slices.Equal(got, want) {
				t.Errorf("mailbox %d: UIDs %v, messages %v", id, got, want)
			}
			if len(want) == 0 {
				t.Errorf("mailbox %d is empty: the check proves nothing", id)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
