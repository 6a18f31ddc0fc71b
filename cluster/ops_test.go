package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/raftstore"
)

// The runbook tests of docs/operations.md: each step uses the API calls
// the CLI makes (raftmail cluster remove, admin backup/restore).

func apiClient(t *testing.T) *cluster.Client {
	c := cluster.NewClient("")
	t.Cleanup(c.Close)
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestBackupRestoreIntoNewCluster: a backup taken from a follower of a
// busy cluster, restored into a new single-node cluster that then grows to
// three, gives the same data digest on every new node; the new cluster
// takes writes afterwards.
func TestBackupRestoreIntoNewCluster(t *testing.T) {
	old := newOpsCluster(t, nil)
	for _, id := range []string{"n1", "n2", "n3"} {
		old.add(id)
	}
	old.waitMembers(3)
	old.addAccount("alice@example.test")
	old.addAccount("bob@example.org")
	for i := 0; i < 20; i++ {
		if err := deliver(old.anyRunning(), []string{"alice@example.test", "bob@example.org"}[i%2], fmt.Sprint("msg ", i)); err != nil {
			t.Fatal(err)
		}
	}
	old.waitConverged()
	var follower *cluster.Node
	for _, n := range old.running() {
		if !n.Store().IsLeader() {
			follower = n
		}
	}
	want, _, err := follower.Store().DataDigest()
	if err != nil {
		t.Fatal(err)
	}
	c := apiClient(t)
	var backup bytes.Buffer
	idx, size, err := c.Backup(ctxT(t), follower.APIURL(), &backup)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if idx == 0 || size != int64(backup.Len()) {
		t.Fatalf("backup at index %d, %d bytes (buffer %d)", idx, size, backup.Len())
	}

	fresh := newOpsCluster(t, nil)
	n1 := fresh.add("m1")
	fresh.waitMembers(1)
	// A corrupt upload is refused before it reaches raft.
	if _, err := c.Restore(ctxT(t), n1.APIURL(), bytes.NewReader([]byte("not a backup")), false); err == nil {
		t.Fatal("restore of garbage succeeded")
	}
	info, err := c.Restore(ctxT(t), n1.APIURL(), bytes.NewReader(backup.Bytes()), false)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if info.AppliedIndex != idx {
		t.Fatalf("restored index %d, backup index %d", info.AppliedIndex, idx)
	}
	// A second restore is refused: the cluster is no longer new.
	var ae *cluster.APIError
	if _, err := c.Restore(ctxT(t), n1.APIURL(), bytes.NewReader(backup.Bytes()), false); !errors.As(err, &ae) || ae.Status != 409 {
		t.Fatalf("second restore: %v, want 409", err)
	}
	fresh.add("m2")
	fresh.add("m3")
	fresh.waitMembers(3)
	fresh.waitConverged()
	for _, n := range fresh.running() {
		got, _, err := n.Store().DataDigest()
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%s: data digest %s after restore, want %s", n.NodeID(), got, want)
		}
	}
	if err := deliver(fresh.node("m3"), "alice@example.test", "after restore"); err != nil {
		t.Fatalf("write after restore: %v", err)
	}
	fresh.waitConverged()
}

// TestReplaceDeadNode: a member dies for good; it is removed, a fresh node
// with a new ID joins, and the cluster converges with full fault tolerance
// (it then survives losing another original member).
func TestReplaceDeadNode(t *testing.T) {
	oc := newOpsCluster(t, nil)
	for _, id := range []string{"n1", "n2", "n3"} {
		oc.add(id)
	}
	oc.waitMembers(3)
	oc.addAccount("alice@example.test")
	dead := "n2"
	if oc.leader().NodeID() == dead {
		dead = "n3"
	}
	oc.stop(dead)
	// raftmail cluster remove DEAD, through any live member.
	err := apiClient(t).Do(ctxT(t), http.MethodPost, oc.anyRunning().APIURL(), "/cluster/remove", map[string]string{"id": dead}, nil)
	if err != nil {
		t.Fatalf("remove %s: %v", dead, err)
	}
	oc.waitMembers(2)
	oc.add(dead + "b")
	oc.waitMembers(3)
	if err := deliver(oc.node(dead+"b"), "alice@example.test", "after replace"); err != nil {
		t.Fatal(err)
	}
	oc.waitConverged()
	// Full fault tolerance again: lose one more original member.
	for _, other := range []string{"n1", "n2", "n3"} {
		if other != dead {
			oc.stop(other)
			break
		}
	}
	if err := deliver(oc.node(dead+"b"), "alice@example.test", "after a second loss"); err != nil {
		t.Fatalf("write with one node of the replaced cluster down: %v", err)
	}
}

// TestGrowToFiveVoters: a fourth and a fifth node join as voters, catch up,
// and the five-node cluster keeps committing with two nodes down.
func TestGrowToFiveVoters(t *testing.T) {
	oc := newOpsCluster(t, nil)
	for _, id := range []string{"n1", "n2", "n3"} {
		oc.add(id)
	}
	oc.waitMembers(3)
	oc.addAccount("alice@example.test")
	for i := 0; i < 5; i++ {
		if err := deliver(oc.anyRunning(), "alice@example.test", "before growth"); err != nil {
			t.Fatal(err)
		}
	}
	oc.add("n4")
	oc.waitMembers(4)
	oc.add("n5")
	oc.waitMembers(5)
	oc.waitConverged()
	for _, m := range oc.leader().StatusNow().Servers {
		if m.Suffrage != "Voter" {
			t.Fatalf("%s is %s, want Voter", m.ID, m.Suffrage)
		}
	}
	l := oc.leader().NodeID()
	down := 0
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		if id != l && down < 2 {
			oc.stop(id)
			down++
		}
	}
	if err := deliver(oc.node("n5"), "alice@example.test", "two down of five"); err != nil {
		t.Fatalf("write with two of five down: %v", err)
	}
}

// TestRollingRestartKeepsAvailability restarts every node in turn (the
// leader last), waiting for each to catch up, while a writer commits
// continuously through whichever node is up: no write fails.
func TestRollingRestartKeepsAvailability(t *testing.T) {
	oc := newOpsCluster(t, nil)
	for _, id := range []string{"n1", "n2", "n3"} {
		oc.add(id)
	}
	oc.waitMembers(3)
	oc.addAccount("alice@example.test")

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			nodes := oc.running()
			n := nodes[i%len(nodes)]
			err := deliver(n, "alice@example.test", fmt.Sprint("rolling ", i))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, raftstore.ErrClosed) || oc.node(n.NodeID()) != n:
				// The node we picked was stopped under us: the client
				// would reconnect to another node.
			default:
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}
	}()
	order := []string{}
	l := oc.leader().NodeID()
	for _, id := range []string{"n1", "n2", "n3"} {
		if id != l {
			order = append(order, id)
		}
	}
	order = append(order, l)
	for _, id := range order {
		before := ok.Load()
		oc.stop(id)
		n := oc.restart(id)
		// Wait until it is ready again (leader known, caught up) and the
		// writer made progress, before the next node.
		clustertest.Eventually(t, 30*time.Second, id+" ready after restart", func() bool {
			return n.Ready() == nil && ok.Load() > before+2
		})
	}
	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d writes failed during the rolling restart (%d succeeded), first: %v", failed.Load(), ok.Load(), firstErr.Load())
	}
	oc.waitConverged()
	t.Logf("%d writes committed during the rolling restart, none failed", ok.Load())
}
