package raftstore

import (
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/raftmail/raftmail/raftstore/command"
)

func queueEntryOf(t testing.TB, f *fsm, id uint64) (QueueEntry, bool) {
	t.Helper()
	var e QueueEntry
	var ok bool
	if err := f.view(func(tx *bolt.Tx) error { e, ok = (&txn{tx: tx}).queueEntry(id); return nil }); err != nil {
		t.Fatal(err)
	}
	return e, ok
}

func dueOf(t testing.TB, f *fsm, until int64) []QueueDue {
	t.Helper()
	var out []QueueDue
	_ = f.view(func(tx *bolt.Tx) error {
		(&ReadTx{tx: tx}).QueueDue(until, func(d QueueDue) bool { out = append(out, d); return true })
		return nil
	})
	return out
}

func queueSetup(t *testing.T) *script {
	s := newScript(t)
	s.ok("d", &command.AddDomain{Name: "example.org"})
	s.ok("a", &command.AddAccount{Address: "alice@example.org", PassHash: "h"})
	s.ok("b", &command.AddAccount{Address: "bob@example.org", PassHash: "h"})
	return s
}

// TestQueueLifecycle follows one submission with a local and two remote
// recipients in two domains: the body is stored once, claims are per
// domain, a 451 defers, a 550 owes a DSN, delivery of the rest and the DSN
// remove the entry and its body reference.
func TestQueueLifecycle(t *testing.T) {
	s := queueSetup(t)
	blob := s.blob("q1", 3000)
	res := s.ok("q1", &command.QueueAdd{From: "alice@example.org", Local: []string{"bob@example.org"}, Blob: blob,
		Rcpts: []command.QueueRcpt{{Addr: "X@Remote.test"}, {Addr: "y@other.test", Notify: []string{"SUCCESS", "FAILURE"}}}})
	if len(res.Rcpts) != 3 || res.Rcpts[0].Account != "bob@example.org" || res.Rcpts[1].Rcpt != "X@Remote.test" {
		t.Fatalf("results %+v", res.Rcpts)
	}
	e, ok := queueEntryOf(t, s.ref, 1)
	if !ok || len(e.Rcpts) != 2 || e.Rcpts[0].Addr != "x@remote.test" || e.Rcpts[0].Domain != "remote.test" {
		t.Fatalf("entry %+v", e)
	}
	if n := bucketLen(t, s.ref, bBlobs); n != 1 {
		t.Fatalf("%d bodies stored, want 1 shared", n)
	}
	if err := checkState(s.ref); err != nil {
		t.Fatal(err)
	}
	now := s.now
	if d := dueOf(t, s.ref, now); len(d) != 2 || d[0].Domain != "other.test" || d[1].Domain != "remote.test" {
		t.Fatalf("due %+v", d)
	}

	// Claim remote.test; a second claim by another holder gets nothing.
	att := &command.QueueAttempt{Items: []command.QueueItem{{ID: 1, Domain: "remote.test"}}, Holder: "n1/a", Attempt: "n1/a/1",
		Now: now, Until: now + int64(time.Minute)}
	if r := s.ok("att1", att); len(r.Rcpts) != 1 || r.Rcpts[0].Rcpt != "x@remote.test" {
		t.Fatalf("claim %+v", r.Rcpts)
	}
	if r := s.ok("att2", &command.QueueAttempt{Items: att.Items, Holder: "n2/b", Attempt: "n2/b/1", Now: now, Until: now + 1}); len(r.Rcpts) != 0 {
		t.Fatalf("claim of a held recipient: %+v", r.Rcpts)
	}
	// 451: deferred to next.
	next := now + int64(5*time.Minute)
	s.ok("r1", &command.QueueResult{ID: 1, Attempt: "n1/a/1", Now: now, NextAttempt: next,
		Rcpts: []command.QueueRcptResult{{Addr: "x@remote.test", Outcome: command.OutcomeTempFail, Code: 451, Reply: "later"}}})
	e, _ = queueEntryOf(t, s.ref, 1)
	if r := e.Rcpts[0]; r.Attempts != 1 || r.LastCode != 451 || r.NextAttempt != next || r.Holder != "" {
		t.Fatalf("after 451: %+v", r)
	}
	// A stale temporary result of another attempt changes nothing.
	s.ok("r-stale", &command.QueueResult{ID: 1, Attempt: "n2/b/1", Now: now, NextAttempt: now + 1e15,
		Rcpts: []command.QueueRcptResult{{Addr: "x@remote.test", Outcome: command.OutcomeTempFail}}})
	if e2, _ := queueEntryOf(t, s.ref, 1); e2.Rcpts[0].NextAttempt != next {
		t.Fatal("stale temporary result moved the schedule")
	}
	// Not due yet: no claim.
	if r := s.ok("att3", &command.QueueAttempt{Items: att.Items, Holder: "n1/a", Attempt: "n1/a/2", Now: next - 1, Until: next + 10}); len(r.Rcpts) != 0 {
		t.Fatal("claimed before the retry time")
	}
	s.ok("att4", &command.QueueAttempt{Items: att.Items, Holder: "n1/a", Attempt: "n1/a/3", Now: next, Until: next + int64(time.Minute)})
	s.ok("r2", &command.QueueResult{ID: 1, Attempt: "n1/a/3", Now: next,
		Rcpts: []command.QueueRcptResult{{Addr: "x@remote.test", Outcome: command.OutcomeDelivered, Code: 250}}})

	// other.test: 550, NOTIFY=SUCCESS,FAILURE: a DSN is owed.
	s.ok("att5", &command.QueueAttempt{Items: []command.QueueItem{{ID: 1, Domain: "other.test"}}, Holder: "n1/a", Attempt: "n1/a/4",
		Now: next, Until: next + int64(time.Minute)})
	s.ok("r3", &command.QueueResult{ID: 1, Attempt: "n1/a/4", Now: next,
		Rcpts: []command.QueueRcptResult{{Addr: "y@other.test", Outcome: command.OutcomePermFail, Code: 550, Status: "5.1.1", Reply: "no such user"}}})
	if d := dueOf(t, s.ref, next); len(d) != 1 || d[0].Domain != "" {
		t.Fatalf("due after failure %+v, want one owed report", d)
	}
	inbox := s.mbox("alice@example.org", "INBOX").Messages
	dsn := s.blob("dsn1", 500)
	s.ok("dsn", &command.QueueDSN{ID: 1, Rcpts: []string{"y@other.test"}, Blob: dsn})
	if got := s.mbox("alice@example.org", "INBOX").Messages; got != inbox+1 {
		t.Fatalf("sender INBOX has %d, want %d", got, inbox+1)
	}
	// A repeat delivers nothing (the entry is gone).
	if r := s.do("dsn-again", &command.QueueDSN{ID: 1, Rcpts: []string{"y@other.test"}, Blob: dsn}); r.Err() == nil {
		t.Fatal("repeat DSN on a removed entry succeeded")
	}
	if _, ok := queueEntryOf(t, s.ref, 1); ok {
		t.Fatal("entry not removed when done")
	}
	if n := bucketLen(t, s.ref, bQueueDue); n != 0 {
		t.Fatalf("%d due keys left", n)
	}
	if err := checkState(s.ref); err != nil {
		t.Fatal(err)
	}
	st := queueStats(t, s.ref)
	if st.Counters["delivered"] != 1 || st.Counters["failed"] != 1 || st.Counters["deferred"] != 1 || st.Counters["dsn"] != 1 {
		t.Fatalf("counters %v", st.Counters)
	}
	assertReplays(t, s)
}

func queueStats(t testing.TB, f *fsm) QueueStats {
	t.Helper()
	var st QueueStats
	_ = f.view(func(tx *bolt.Tx) (err error) { st, err = (&ReadTx{tx: tx}).QueueStats(); return })
	return st
}

// assertReplays replays the script into a fresh FSM and compares digests.
func assertReplays(t *testing.T, s *script) {
	t.Helper()
	f := newFSM(t)
	replay(t, f, s.logs, 5)
	if a, b := fsmDigest(t, f), fsmDigest(t, s.ref); a != b {
		t.Fatalf("replay digest %s, reference %s", a, b)
	}
}

// TestQueueTakeover: a new holder takes over a claim with Takeover (or
// after it expires), counting a possible duplicate; the old attempt's
// delivered result still counts.
func TestQueueTakeover(t *testing.T) {
	s := queueSetup(t)
	s.ok("q", &command.QueueAdd{From: "alice@example.org", Blob: s.blob("q", 100), Rcpts: []command.QueueRcpt{{Addr: "x@remote.test"}}})
	now := s.now
	items := []command.QueueItem{{ID: 1, Domain: "remote.test"}}
	s.ok("a1", &command.QueueAttempt{Items: items, Holder: "n1/a", Attempt: "n1/a/1", Now: now, Until: now + int64(time.Hour)})
	if r := s.ok("a2", &command.QueueAttempt{Items: items, Holder: "n2/b", Attempt: "n2/b/1", Now: now, Until: now + 5, Takeover: true}); len(r.Rcpts) != 1 {
		t.Fatal("takeover did not claim")
	}
	// Expired claim, no takeover flag.
	if r := s.ok("a3", &command.QueueAttempt{Items: items, Holder: "n3/c", Attempt: "n3/c/1", Now: now + 5, Until: now + 100}); len(r.Rcpts) != 1 {
		t.Fatal("expired claim not reclaimed")
	}
	e, _ := queueEntryOf(t, s.ref, 1)
	if e.Reclaimed != 2 || e.Attempts != 3 {
		t.Fatalf("reclaimed %d attempts %d", e.Reclaimed, e.Attempts)
	}
	// The first (stale) attempt reports delivery: a fact, accepted.
	s.ok("r", &command.QueueResult{ID: 1, Attempt: "n1/a/1", Now: now, Rcpts: []command.QueueRcptResult{{Addr: "x@remote.test", Outcome: command.OutcomeDelivered}}})
	if _, ok := queueEntryOf(t, s.ref, 1); ok {
		t.Fatal("delivered entry kept")
	}
	if st := queueStats(t, s.ref); st.Counters["reclaimed"] != 2 {
		t.Fatalf("counters %v", st.Counters)
	}
	assertReplays(t, s)
}

// TestQueueNeverBounceBounce: a null sender, NOTIFY=NEVER and an admin
// delete owe no report; admin bounce and retry work.
func TestQueueNeverBounceBounce(t *testing.T) {
	s := queueSetup(t)
	s.ok("q1", &command.QueueAdd{From: "", Blob: s.blob("q1", 100), Rcpts: []command.QueueRcpt{{Addr: "x@remote.test"}}})
	s.ok("q2", &command.QueueAdd{From: "alice@example.org", Blob: s.blob("q2", 100), Rcpts: []command.QueueRcpt{{Addr: "x@remote.test", Notify: []string{"NEVER"}}}})
	s.ok("q3", &command.QueueAdd{From: "alice@example.org", Blob: s.blob("q3", 100), Rcpts: []command.QueueRcpt{{Addr: "x@remote.test"}}})
	s.ok("q4", &command.QueueAdd{From: "alice@example.org", Blob: s.blob("q4", 100), Rcpts: []command.QueueRcpt{{Addr: "x@remote.test"}}})
	for _, id := range []uint64{1, 2} {
		s.ok("b"+string(rune('0'+id)), &command.QueueAdmin{ID: id, Op: command.QueueBounce, Now: s.now})
		if _, ok := queueEntryOf(t, s.ref, id); ok {
			t.Fatalf("entry %d kept: a report is owed where none may be", id)
		}
	}
	s.ok("del", &command.QueueAdmin{ID: 3, Op: command.QueueDelete, Now: s.now})
	if _, ok := queueEntryOf(t, s.ref, 3); ok {
		t.Fatal("deleted entry kept")
	}
	s.ok("bounce", &command.QueueAdmin{ID: 4, Op: command.QueueBounce, Now: s.now, Reason: "ops"})
	e, ok := queueEntryOf(t, s.ref, 4)
	if !ok || !e.Rcpts[0].Report || e.Rcpts[0].LastReply != "ops" {
		t.Fatalf("bounced entry %+v", e)
	}
	if s.do("x", &command.QueueAdmin{ID: 99, Op: command.QueueRetry}).Err() == nil {
		t.Fatal("retry of a missing entry succeeded")
	}
	s.ok("retry-all", &command.QueueAdmin{Op: command.QueueRetry, Now: s.now})
	if err := checkState(s.ref); err != nil {
		t.Fatal(err)
	}
	assertReplays(t, s)
}

func TestSetDKIMKey(t *testing.T) {
	s := newScript(t)
	for _, bad := range []*command.SetDKIMKey{
		{Domain: "example.org", Selector: "", Algo: "rsa", Key: []byte{1}},
		{Domain: "example.org", Selector: "s", Algo: "dsa", Key: []byte{1}},
		{Domain: "bad domain", Selector: "s", Algo: "rsa", Key: []byte{1}},
		{Domain: "example.org", Selector: "s;x", Algo: "rsa", Key: []byte{1}},
	} {
		if s.do("", bad).Err() == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
	s.ok("k", &command.SetDKIMKey{Domain: "Example.ORG", Selector: "s1", Algo: "ed25519", Key: []byte{1, 2}})
	var k DKIMKey
	_ = s.ref.view(func(tx *bolt.Tx) (err error) { k, err = (&ReadTx{tx: tx}).DKIMKey("example.org"); return })
	if k.Selector != "s1" || k.Algo != "ed25519" || len(k.Key) != 2 {
		t.Fatalf("key %+v", k)
	}
	s.ok("rm", &command.SetDKIMKey{Domain: "example.org", Remove: true})
	if s.do("rm2", &command.SetDKIMKey{Domain: "example.org", Remove: true}).Err() == nil {
		t.Fatal("second removal succeeded")
	}
}
