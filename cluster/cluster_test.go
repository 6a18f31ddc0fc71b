package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

const testMsg = "From: a@remote.test\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n"

func inboxCount(t *testing.T, c *clustertest.Cluster, i int, acct string) uint32 {
	t.Helper()
	var n uint32
	err := c.Node(i).View(func(r *raftstore.ReadTx) error {
		m, err := r.MailboxByName(acct, "INBOX")
		n = m.Messages
		return err
	})
	if err != nil {
		t.Fatalf("node %d: %v", i+1, err)
	}
	return n
}

func TestDeliverThroughFollowerReachesEveryNode(t *testing.T) {
	c := clustertest.New(t, 3)
	c.AddAccount("alice@example.test", "pw")
	f := c.Follower()
	res := c.Deliver(f, "a@remote.test", []string{"alice@example.test", "nobody@example.test"}, []byte(testMsg))
	if len(res.Rcpts) != 2 || res.Rcpts[0].Status.Err() != nil || res.Rcpts[0].UID != 1 {
		t.Fatalf("unexpected result %+v", res)
	}
	if !errors.Is(res.Rcpts[1].Status.Err(), raftstore.ErrNoSuchUser) {
		t.Fatalf("unknown recipient: got %v", res.Rcpts[1].Status.Err())
	}
	// Propose waited for the follower's own apply: read-your-writes.
	if got := inboxCount(t, c, f, "alice@example.test"); got != 1 {
		t.Fatalf("follower inbox has %d messages right after commit, want 1", got)
	}
	c.WaitConverged(10 * time.Second)
	for i := 0; i < 3; i++ {
		if got := inboxCount(t, c, i, "alice@example.test"); got != 1 {
			t.Fatalf("node %d inbox has %d messages, want 1", i+1, got)
		}
	}
}

func TestSameKeyIsAppliedOnce(t *testing.T) {
	c := clustertest.New(t, 3)
	c.AddAccount("alice@example.test", "pw")
	n := c.Node(c.Follower())
	blob := n.Codec().NewBlob([]byte(testMsg), nil)
	cmd := &command.Command{Key: "k-1", Payload: &command.Deliver{From: "a@remote.test", Rcpts: []string{"alice@example.test"}, Blob: blob}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := n.Propose(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Leader().Propose(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Duplicate || second.Rcpts[0].UID != first.Rcpts[0].UID || first.Duplicate {
		t.Fatalf("retry with the same key: first %+v second %+v", first, second)
	}
	c.WaitConverged(10 * time.Second)
	if got := inboxCount(t, c, 0, "alice@example.test"); got != 1 {
		t.Fatalf("inbox has %d messages after a retried delivery, want 1", got)
	}
}

func TestMalformedCommandIsRefusedAtOnce(t *testing.T) {
	c := clustertest.New(t, 3)
	n := c.Node(c.Follower())
	// A SetFlags whose msgpack claims a huge UID array: refused as bad
	// input before it reaches the log, not retried until the deadline.
	data := []byte{byte(command.TypeSetFlags), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0xa4, 'u', 'i', 'd', 's', 0xdd, 0x7f, 0xff, 0xff, 0xff}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := n.Commit(ctx, data)
	var ae *cluster.APIError
	if !errors.Is(err, command.ErrMalformed) && !(errors.As(err, &ae) && ae.Status == 400) {
		t.Fatalf("malformed command: got %v, want ErrMalformed or a 400 from the leader", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("malformed command was retried for %v", d)
	}
}

// TestCommitNamesTheLeader: a commit sent to a follower's API is
// forwarded, and the answer names the leader's API URL so that the
// sender's next commits skip the hop; the leader names itself.
func TestCommitNamesTheLeader(t *testing.T) {
	c := clustertest.New(t, 3)
	leader := c.Node(c.WaitLeader()).APIURL()
	client := cluster.NewClient("")
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, via := range []int{c.Follower(), c.WaitLeader()} {
		data, err := command.Marshal(&command.Command{Key: fmt.Sprintf("k-leader-%d", i), Payload: &command.Noop{}})
		if err != nil {
			t.Fatal(err)
		}
		res, got, err := client.CommitVia(ctx, c.Node(via).APIURL(), data)
		if err != nil || res.Index == 0 {
			t.Fatalf("commit through n%d: %+v, %v", via+1, res, err)
		}
		if got != leader {
			t.Errorf("commit through n%d named leader %q, want %q", via+1, got, leader)
		}
	}
}

// TestForwardFollowsANewLeader: a follower forwarding a write to a leader
// whose API hangs (frozen, or cut off from the follower but not from its
// peers) abandons the attempt as soon as it sees another leader and
// commits there, instead of waiting out ForwardAttemptTimeout (a minute
// here, so the write would miss the test's deadline without that).
func TestForwardFollowsANewLeader(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{FreezableAPI: true,
		CommitTimeout: 2 * time.Minute, ForwardAttemptTimeout: time.Minute})
	leader := c.WaitLeader()
	f := c.Follower()
	c.FreezeAPI(leader)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := c.Node(f).Propose(context.Background(), &command.Command{Payload: &command.AddDomain{Name: "moved.test"}})
		done <- err
	}()
	clustertest.Eventually(t, 10*time.Second, "the forwarded write held by the frozen leader", func() bool {
		return c.FrozenReads(leader) > 0
	})
	held := time.Since(start)
	c.Stop(leader) // the other two elect a new leader
	stopped := time.Since(start)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("write through the follower: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the follower kept waiting on the frozen leader after a new one was elected")
	}
	t.Logf("write held by the frozen leader after %v, leader stopped after %v, committed after %v",
		held.Round(time.Millisecond), stopped.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	var ok bool
	_ = c.Node(f).View(func(r *raftstore.ReadTx) error {
		ok = slices.Contains(r.Domains(), "moved.test")
		return nil
	})
	if !ok {
		t.Fatal("the domain is not on the follower after its write returned")
	}
}

// TestLostAnswerRetriedOnNewLeaderStoresOnce (invariant 2 across the
// forward's early retry): a follower forwards a delivery, the leader
// commits it but the answer is lost, and the leader then dies. The
// follower retries the same bytes at the new leader as soon as it sees it;
// the key makes the retry return the first result, and every node holds
// the message exactly once.
func TestLostAnswerRetriedOnNewLeaderStoresOnce(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{FreezableAPI: true,
		CommitTimeout: 2 * time.Minute, ForwardAttemptTimeout: time.Minute})
	c.AddDomain("example.test")
	c.AddAccount("alice@example.test", "pw")
	leader := c.WaitLeader()
	f := c.Follower()
	c.MuteAPI(leader)
	n := c.Node(f)
	cmd, err := frontends.NewDeliver(n.Codec(), frontends.Envelope{From: "a@remote.test", Rcpts: []string{"alice@example.test"}}, []byte(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		res raftstore.Result
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := frontends.CommitDeliver(context.Background(), n, cmd)
		done <- answer{res, err}
	}()
	clustertest.Eventually(t, 10*time.Second, "the delivery committed on the leader", func() bool {
		return inboxCount(t, c, leader, "alice@example.test") == 1
	})
	clustertest.Eventually(t, 10*time.Second, "the leader's answer lost", func() bool { return c.FrozenReads(leader) > 0 })
	c.Stop(leader)
	var a answer
	select {
	case a = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the follower kept waiting on the dead leader's lost answer")
	}
	if a.err != nil || len(a.res.Rcpts) != 1 || a.res.Rcpts[0].Status.Err() != nil {
		t.Fatalf("retried delivery: %+v, %v", a.res, a.err)
	}
	c.WaitConverged(20 * time.Second)
	for _, i := range c.Running() {
		if got := inboxCount(t, c, i, "alice@example.test"); got != 1 {
			t.Fatalf("node %d holds %d copies, want exactly 1", i+1, got)
		}
	}
}

// TestCloseCutsSilentConnections: a connection to the API that never sends
// a request does not outlive Node.Close (net/http's graceful shutdown
// waits for it; Close then cuts it instead of leaving it open).
func TestCloseCutsSilentConnections(t *testing.T) {
	c := clustertest.New(t, 1)
	c.WaitLeader()
	conn, err := net.Dial("tcp", c.Config(0).HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(100 * time.Millisecond) // the server has accepted it
	start := time.Now()
	c.Stop(0)
	t.Logf("Close took %v with a silent connection open", time.Since(start).Round(time.Millisecond))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the silent connection is still open after Close")
	}
	if err == nil {
		t.Fatal("read a byte from a connection that sent no request")
	}
}
