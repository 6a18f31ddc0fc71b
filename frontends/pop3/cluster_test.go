package pop3

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/raftstore"
)

// Messages delivered through the harness, as SMTP and LMTP deliver them
// (CRLF). The first has lines that begin with ".".
var clusterMsgs = []string{
	"From: a@example.org\r\nTo: u@example.org\r\nSubject: one\r\nMessage-ID: <1@example.org>\r\n\r\nHello\r\n.hidden line\r\n..\r\n.\r\nbye\r\n",
	"From: b@example.org\r\nTo: u@example.org\r\nSubject: two\r\nMessage-ID: <2@example.org>\r\n\r\n" + strings.Repeat("body line of message two\r\n", 200),
	"From: c@example.org\r\nTo: u@example.org\r\nSubject: three\r\nMessage-ID: <3@example.org>\r\n\r\nshort\r\n",
}

// stuffed is the wire form of a CRLF body: dot-stuffed with terminator.
// It is written out here rather than taken from writeBody, so the server is
// checked against an independent statement of RFC 1939 §3.
func stuffed(body string) string {
	lines := strings.SplitAfter(body, "\r\n")
	var b strings.Builder
	for _, l := range lines {
		if strings.HasPrefix(l, ".") {
			b.WriteByte('.')
		}
		b.WriteString(l)
	}
	return b.String() + ".\r\n"
}

// popCluster is a raft cluster with a POP3 server on every node.
type popCluster struct {
	c    *clustertest.Cluster
	pops []*testServer
}

func newPopCluster(t *testing.T, n int, cfg Config) *popCluster {
	t.Helper()
	pc := &popCluster{c: clustertest.New(t, n)}
	for i := 0; i < n; i++ {
		srv, err := New(cfg, pc.c.Store(i))
		if err != nil {
			t.Fatal(err)
		}
		pc.pops = append(pc.pops, serveReal(t, srv))
	}
	return pc
}

// serveReal serves an already built Server on loopback until the test ends.
func serveReal(t *testing.T, srv *Server) *testServer {
	t.Helper()
	ln := listen(t)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return &testServer{Server: srv, addr: ln.Addr().String()}
}

// account creates an account with the test messages and waits until every
// node has them.
func (pc *popCluster) account(t *testing.T, addr string) {
	t.Helper()
	pc.c.AddAccount(addr, "pw "+addr)
	for _, m := range clusterMsgs {
		res := pc.c.Deliver(pc.c.WaitLeader(), "sender@example.org", []string{addr}, []byte(m))
		for _, r := range res.Rcpts {
			if err := r.Status.Err(); err != nil {
				t.Fatalf("deliver to %s: %v", addr, err)
			}
		}
		pc.c.WaitApplied(res.Index)
	}
}

// inbox reads an account's INBOX on node i: UIDVALIDITY, UIDs, bodies.
func inbox(t *testing.T, st frontends.Store, account string) (uint32, []uint32, [][]byte) {
	t.Helper()
	var uv uint32
	var uids []uint32
	var bodies [][]byte
	err := st.View(func(r *raftstore.ReadTx) error {
		mb, err := r.MailboxByName(account, "INBOX")
		if err != nil {
			return err
		}
		uv = mb.UIDValidity
		return r.Messages(mb.ID, nil, func(m *raftstore.Message) error {
			b, err := r.Body(m.BlobID)
			if err != nil {
				return err
			}
			uids = append(uids, m.UID)
			bodies = append(bodies, b)
			return nil
		})
	})
	if err != nil {
		t.Fatalf("read INBOX of %s: %v", account, err)
	}
	return uv, uids, bodies
}

// waitCaughtUp waits until node j has applied everything node i has.
func waitCaughtUp(t *testing.T, from, to frontends.Store) {
	t.Helper()
	var idx uint64
	if err := from.View(func(r *raftstore.ReadTx) error { idx = r.AppliedIndex(); return nil }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := to.WaitApplied(ctx, idx); err != nil {
		t.Fatal(err)
	}
}

// TestCluster runs the replicated scenarios on one 3-node cluster with a
// POP3 server on each node: download from a follower, delete through a
// follower seen on another node, a dropped session deleting nothing, the
// cluster-wide lock, and the lock expiring when its node dies.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node raft cluster")
	}
	cfg := testConfig(t)
	cfg.LeaseTTL = 2 * time.Second
	serverTLS, _, caFile := selfSigned(t)
	cfg.TLSConfig = serverTLS
	pc := newPopCluster(t, 3, cfg)
	leader := pc.c.WaitLeader()
	var followers []int
	for i := 0; i < 3; i++ {
		if i != leader {
			followers = append(followers, i)
		}
	}
	f1, f2 := followers[0], followers[1]
	t.Logf("leader n%d, followers n%d n%d", leader+1, f1+1, f2+1)

	t.Run("download from a follower", func(t *testing.T) {
		pc.account(t, "dl@example.org")
		uv, uids, bodies := inbox(t, pc.c.Store(f1), "dl@example.org")
		if len(uids) != 3 {
			t.Fatalf("INBOX has %d messages", len(uids))
		}
		c := greeted(t, pc.pops[f1].addr)
		total := 0
		for _, b := range bodies {
			total += len(b)
		}
		c.cmd("USER dl@example.org", "+OK*")
		c.cmd("PASS pw dl@example.org", fmt.Sprintf("+OK maildrop locked and ready, 3 messages (%d octets)", total))
		c.send("UIDL")
		want := fmt.Sprintf("1 %d.%d\r\n2 %d.%d\r\n3 %d.%d\r\n.\r\n", uv, uids[0], uv, uids[1], uv, uids[2])
		c.expectMulti("+OK*", want)
		for i, b := range bodies {
			if string(b) != clusterMsgs[i] {
				t.Fatalf("store body %d differs from what was delivered", i+1)
			}
			c.send(fmt.Sprintf("RETR %d", i+1))
			c.expectMulti(fmt.Sprintf("+OK %d octets", len(b)), stuffed(string(b)))
		}
		c.send("TOP 1 2")
		c.expectMulti("+OK*", "From: a@example.org\r\nTo: u@example.org\r\nSubject: one\r\nMessage-ID: <1@example.org>\r\n\r\nHello\r\n..hidden line\r\n.\r\n")
		c.cmd("QUIT", "+OK*")
		// UIDL is identical on every node.
		for _, i := range []int{leader, f2} {
			c := greeted(t, pc.pops[i].addr)
			c.login("dl@example.org", "pw dl@example.org")
			c.send("UIDL")
			c.expectMulti("+OK*", want)
			c.cmd("QUIT", "+OK*")
		}
	})

	t.Run("independent clients", func(t *testing.T) {
		pc.account(t, "clients@example.org")
		st := pc.c.Store(f2)
		addr := pc.pops[f2].addr
		for _, c := range []struct {
			name string
			run  func(*testing.T, string, string, frontends.Store, string, string)
		}{{"python3 poplib", checkPoplib}, {"curl", checkCurl}, {"mpop", checkMpop}} {
			t.Run(c.name, func(t *testing.T) {
				c.run(t, addr, caFile, st, "clients@example.org", "pw clients@example.org")
				// Each client QUITs without deleting; the lock is free
				// again once its release is applied here.
				waitFor(t, 10*time.Second, "lock release", func() bool {
					var h string
					st.View(func(r *raftstore.ReadTx) error { h, _ = r.Lease("pop3:clients@example.org"); return nil })
					return h == ""
				})
			})
		}
	})

	t.Run("delete through a follower", func(t *testing.T) {
		pc.account(t, "del@example.org")
		_, uids, _ := inbox(t, pc.c.Store(f2), "del@example.org")
		c := greeted(t, pc.pops[f1].addr)
		c.login("del@example.org", "pw del@example.org")
		c.cmd("DELE 1", "+OK*")
		c.cmd("DELE 3", "+OK*")
		c.cmd("QUIT", "+OK*1 messages left*")
		c.expectClosed()
		// Read-your-writes: the same node shows the result at once.
		if _, got, _ := inbox(t, pc.c.Store(f1), "del@example.org"); len(got) != 1 || got[0] != uids[1] {
			t.Fatalf("n%d right after QUIT: uids %v, want [%d]", f1+1, got, uids[1])
		}
		c = greeted(t, pc.pops[f1].addr)
		c.login("del@example.org", "pw del@example.org")
		c.cmd("STAT", fmt.Sprintf("+OK 1 %d", len(clusterMsgs[1])))
		c.cmd("QUIT", "+OK*")
		// And the other follower, once caught up, no longer has them.
		waitCaughtUp(t, pc.c.Store(f1), pc.c.Store(f2))
		if _, got, _ := inbox(t, pc.c.Store(f2), "del@example.org"); len(got) != 1 || got[0] != uids[1] {
			t.Fatalf("n%d: uids %v, want [%d]", f2+1, got, uids[1])
		}
	})

	t.Run("dropped connection deletes nothing", func(t *testing.T) {
		pc.account(t, "drop@example.org")
		c := greeted(t, pc.pops[f1].addr)
		c.login("drop@example.org", "pw drop@example.org")
		c.cmd("DELE 1", "+OK*")
		c.cmd("DELE 2", "+OK*")
		c.c.Close()
		waitFor(t, 10*time.Second, "session end", func() bool { return pc.pops[f1].Sessions() == 0 })
		// The lease release is the session's last write: once every node
		// has applied it, nothing else can follow.
		waitCaughtUp(t, pc.c.Store(f1), pc.c.Store(f2))
		waitCaughtUp(t, pc.c.Store(f1), pc.c.Store(leader))
		for i := 0; i < 3; i++ {
			if _, got, _ := inbox(t, pc.c.Store(i), "drop@example.org"); len(got) != 3 {
				t.Fatalf("n%d: %d messages after a dropped session, want 3", i+1, len(got))
			}
			var holder string
			pc.c.Store(i).View(func(r *raftstore.ReadTx) error { holder, _ = r.Lease("pop3:drop@example.org"); return nil })
			if holder != "" {
				t.Fatalf("n%d: lease still held by %q", i+1, holder)
			}
		}
	})

	t.Run("in use across nodes, then the holder's node dies", func(t *testing.T) {
		pc.account(t, "lock@example.org")
		a := greeted(t, pc.pops[f1].addr)
		a.login("lock@example.org", "pw lock@example.org")
		a.cmd("DELE 1", "+OK*")
		b := greeted(t, pc.pops[f2].addr)
		b.cmd("USER lock@example.org", "+OK*")
		b.cmd("PASS pw lock@example.org", "-ERR [IN-USE] *")
		l := greeted(t, pc.pops[leader].addr)
		l.cmd("USER lock@example.org", "+OK*")
		l.cmd("PASS pw lock@example.org", "-ERR [IN-USE] *")
		l.cmd("QUIT", "+OK*")

		// Kill a's node: its POP3 server keeps running on a dead store,
		// so the lease is neither renewed nor released.
		start := time.Now()
		pc.c.Stop(f1)
		var got string
		waitFor(t, 20*time.Second, "login after the lease expired", func() bool {
			b.send("USER lock@example.org")
			b.expect("+OK*")
			b.send("PASS pw lock@example.org")
			got = b.line()
			return strings.HasPrefix(got, "+OK")
		})
		t.Logf("login on n%d worked %v after n%d stopped (lease TTL %v): %s", f2+1, time.Since(start).Round(time.Millisecond), f1+1, cfg.LeaseTTL, got)
		if !strings.Contains(got, "3 messages") {
			t.Fatalf("got %q, want all 3 messages", got)
		}
		// a's QUIT cannot delete: its node is gone and its lock lost.
		a.send("QUIT")
		if l := a.line(); !strings.HasPrefix(l, "-ERR") {
			t.Fatalf("QUIT on the dead node answered %q", l)
		}
		b.cmd("STAT", "+OK 3 *")
		b.cmd("QUIT", "+OK*")
	})
}
