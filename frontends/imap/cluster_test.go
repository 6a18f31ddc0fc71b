package imap

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/frontends"
)

// waitFor polls cond every 5ms until it holds or d passes; it returns how
// long it took.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	clustertest.Eventually(t, d, what, cond)
	return time.Since(start)
}

// TestIdleAcrossNodes: a session IDLE on node 1 learns, within 1 s and
// without polling, of mail delivered through node 2, of a flag change made
// by a session on node 3 and of that session's expunge.
func TestIdleAcrossNodes(t *testing.T) {
	e := newEnv(t, 3)
	e.deliver(0, testMail(1))
	var ua, ub updates
	a := e.login(0, ua.handler())
	b := e.login(2, ub.handler())
	mustSelect(t, a, "INBOX")
	mustSelect(t, b, "INBOX")
	idle, err := a.Idle()
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	e.deliver(1, testMail(2))
	took := waitFor(t, time.Second, "EXISTS 2 on the IDLE session", func() bool { return ua.lastExists() == 2 })
	t.Logf("EXISTS reached the IDLE session on another node %v after commit (%v after delivery start)", took, time.Since(start))

	msgs, err := b.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("store on node 3: %v", err)
	}
	waitFor(t, time.Second, "FETCH FLAGS on the IDLE session", func() bool {
		_, _, f := ua.snapshot()
		return slices.ContainsFunc(f, func(s string) bool { return strings.HasPrefix(s, "1:") && strings.Contains(s, `\Flagged`) })
	})

	if err := b.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if seqs, err := b.Expunge().Collect(); err != nil || !slices.Equal(seqs, []uint32{1}) {
		t.Fatalf("expunge on node 3: %v %v", seqs, err)
	}
	waitFor(t, time.Second, "EXPUNGE on the IDLE session", func() bool {
		_, x, _ := ua.snapshot()
		return slices.Equal(x, []uint32{1})
	})
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	// Both sessions now agree on the mailbox.
	ma, err := a.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil || len(ma) != 1 || ma[0].UID != 2 {
		t.Fatalf("node 1 after expunge: %+v %v", ma, err)
	}
	// The session that stored got its own change once, in its STORE answer,
	// never again as an unsolicited FETCH.
	if err := b.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if _, _, f := ub.snapshot(); len(f) != 0 {
		t.Errorf("originating session got its own flag change echoed: %v", f)
	}
}

// TestNoopSeesRemoteChanges: without IDLE, NOOP reports what other nodes
// did (RFC 9051 §6.1.2).
func TestNoopSeesRemoteChanges(t *testing.T) {
	e := newEnv(t, 3)
	var u updates
	a := e.login(1, u.handler())
	mustSelect(t, a, "INBOX")
	e.deliver(0, testMail(1))
	e.deliver(2, testMail(2))
	waitFor(t, 2*time.Second, "EXISTS 2 via NOOP", func() bool {
		if err := a.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		return u.lastExists() == 2
	})
	msgs, err := a.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil || len(msgs) != 2 || msgs[1].Envelope.Subject != "message 2" {
		t.Fatalf("fetch after NOOP: %v", err)
	}
}

// TestFollowerReadsAndWriteFailover: sessions on the surviving nodes keep
// reading while the leader is down; a write waits for a new leader (or
// answers NO [UNAVAILABLE] when none can be elected); sessions on the killed
// node drop, and the client finds the same UIDs on another node.
func TestFollowerReadsAndWriteFailover(t *testing.T) {
	e := newEnv(t, 3, func(c *Config) { c.CommandTimeout = 3 * time.Second })
	for i := 1; i <= 3; i++ {
		e.deliver(0, testMail(i))
	}
	e.c.WaitConverged(10 * time.Second)
	leader := e.c.WaitLeader()
	f1 := (leader + 1) % 3
	f2 := (leader + 2) % 3
	onLeader := e.login(leader, nil)
	mustSelect(t, onLeader, "INBOX")
	a := e.login(f1, nil)
	mustSelect(t, a, "INBOX")
	before, err := a.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(before) != 3 {
		t.Fatal(err)
	}

	e.c.Stop(leader)
	select {
	case <-onLeader.Closed():
	case <-time.After(5 * time.Second):
		// The node is gone; the server on it still holds the socket until
		// its Close. Close it like the node's shutdown would.
		_ = e.srvs[leader].Close()
		<-onLeader.Closed()
	}
	// Reads keep working on the follower, leader or not.
	msgs, err := a.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil || len(msgs) != 3 {
		t.Fatalf("read on follower without leader: %v", err)
	}
	// A write waits for the new leader and succeeds.
	if err := a.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatalf("write during failover: %v", err)
	}
	// The client of the dead node reconnects elsewhere and finds the same UIDs.
	b := e.login(f2, nil)
	mustSelect(t, b, "INBOX")
	after, err := b.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil || len(after) != 3 {
		t.Fatal(err)
	}
	for i := range after {
		if after[i].UID != before[i].UID {
			t.Fatalf("UIDs differ across nodes: %v vs %v", after[i].UID, before[i].UID)
		}
	}
	// With a majority gone no leader can exist: writes answer UNAVAILABLE
	// after the command timeout, reads still work.
	e.c.Stop(f2)
	err = a.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close()
	if imapCode(err) != imap.ResponseCodeUnavailable {
		t.Fatalf("write without quorum: %v", err)
	}
	if _, err := a.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect(); err != nil {
		t.Fatalf("read without quorum: %v", err)
	}
}

// TestSpamLandsInJunk: a delivery the filters tagged as spam shows up in
// Junk with $Junk, on another node's IMAP.
func TestSpamLandsInJunk(t *testing.T) {
	e := newEnv(t, 2)
	n := e.c.Node(0)
	cmd, err := frontends.NewDeliver(n.Codec(), frontends.Envelope{From: "spam@remote.test", Rcpts: []string{alice}, Junk: true}, []byte(testMail(7)))
	if err != nil {
		t.Fatal(err)
	}
	res, err := frontends.CommitDeliver(ctxTimeout(t, 20*time.Second), n, cmd)
	if err != nil || res.Err() != nil {
		t.Fatalf("deliver: %v %v", err, res.Err())
	}
	e.c.WaitApplied(res.Index)
	c := e.login(1, nil)
	if d := mustSelect(t, c, "Junk"); d.NumMessages != 1 {
		t.Fatalf("Junk has %d messages", d.NumMessages)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true, Envelope: true}).Collect()
	if err != nil || !slices.Contains(msgs[0].Flags, imap.FlagJunk) || msgs[0].Envelope.Subject != "message 7" {
		t.Fatalf("junk message: %+v %v", msgs, err)
	}
	if d := mustSelect(t, c, "INBOX"); d.NumMessages != 0 {
		t.Fatalf("spam reached INBOX")
	}
}
