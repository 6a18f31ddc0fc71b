package smtp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/frontends/smtp"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// TestCommitMovesOnFromAHungNode: a node that accepts the connection but
// never answers (a SIGSTOPped leader, or a leader cut off from its peers
// that the frontend still reaches — found by the chaos harness) must not
// hold a delivery for its whole deadline: after AttemptTimeout the next
// node is tried with the same bytes, and the commit succeeds there.
func TestCommitMovesOnFromAHungNode(t *testing.T) {
	hung, _ := hungServer(t)
	var commits atomic.Int64
	good := httptest.NewServer(batchAware(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/internal/commit":
			commits.Add(1)
			_ = json.NewEncoder(w).Encode(raftstore.Result{Index: 7})
		case "/status":
			_ = json.NewEncoder(w).Encode(map[string]string{"leader_api": "http://" + r.Host})
		default:
			http.NotFound(w, r)
		}
	}))
	defer good.Close()

	n, err := smtp.NewNodesCommitter(smtp.NodesConfig{Nodes: []string{hung.URL, good.URL},
		AttemptTimeout: 200 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	data, err := command.Marshal(&command.Command{Key: "k-hung-node", Payload: &command.Noop{}})
	if err != nil {
		t.Fatal(err)
	}
	// The deadline is far longer than an attempt: without a per-attempt
	// bound the hung node would take all of it (and the key lookup after
	// it), and Commit would fail.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := n.Commit(ctx, data)
	if err != nil {
		t.Fatalf("commit with one hung node: %v", err)
	}
	if res.Index != 7 || commits.Load() == 0 {
		t.Fatalf("result %+v after %d commits on the answering node", res, commits.Load())
	}
}

// TestCommitGoesToTheLeaderItLearns: a follower forwards a commit and
// names the leader in its answer (cluster.LeaderHeader); the committer's
// next commits go to the leader directly, not through the follower again.
func TestCommitGoesToTheLeaderItLearns(t *testing.T) {
	var viaFollower, atLeader atomic.Int64
	leader := httptest.NewServer(batchAware(func(w http.ResponseWriter, r *http.Request) {
		atLeader.Add(1)
		w.Header().Set(cluster.LeaderHeader, "http://"+r.Host)
		_ = json.NewEncoder(w).Encode(raftstore.Result{Index: 9})
	}))
	defer leader.Close()
	follower := httptest.NewServer(batchAware(func(w http.ResponseWriter, r *http.Request) {
		viaFollower.Add(1)
		w.Header().Set(cluster.LeaderHeader, leader.URL+"/")
		_ = json.NewEncoder(w).Encode(raftstore.Result{Index: 9})
	}))
	defer follower.Close()

	n, err := smtp.NewNodesCommitter(smtp.NodesConfig{Nodes: []string{follower.URL, follower.URL}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for i := 0; i < 10; i++ {
		data, err := command.Marshal(&command.Command{Key: fmt.Sprintf("k-learn-%d", i), Payload: &command.Noop{}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Commit(context.Background(), data); err != nil {
			t.Fatal(err)
		}
	}
	if viaFollower.Load() != 1 || atLeader.Load() != 9 {
		t.Fatalf("%d commits through the follower, %d at the leader; want 1 and 9", viaFollower.Load(), atLeader.Load())
	}
}

// TestAHungLeaderHintStallsNothing: the leader a node named has died in a
// way that hangs connects (a killed container's IP; found by the compose
// test). Directory lookups never wait on the hint (any configured node
// answers them), and a commit that finds the hint hung drops it, so the
// next commit does not wait on it again.
func TestAHungLeaderHintStallsNothing(t *testing.T) {
	hung, atHung := hungServer(t)
	var commits atomic.Int64
	good := httptest.NewServer(batchAware(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/internal/commit":
			if commits.Add(1) == 1 {
				w.Header().Set(cluster.LeaderHeader, hung.URL) // the leader, before it hung
			}
			_ = json.NewEncoder(w).Encode(raftstore.Result{Index: 5})
		case strings.HasPrefix(r.URL.Path, "/directory/"):
			_ = json.NewEncoder(w).Encode(frontends.Directory{Address: "a@example.test", Local: true, Account: "a@example.test"})
		default:
			http.NotFound(w, r)
		}
	}))
	defer good.Close()
	n, err := smtp.NewNodesCommitter(smtp.NodesConfig{Nodes: []string{good.URL}, AttemptTimeout: 300 * time.Millisecond,
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	commit := func(key string) {
		t.Helper()
		data, err := command.Marshal(&command.Command{Key: key, Payload: &command.Noop{}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := n.Commit(ctx, data); err != nil {
			t.Fatal(err)
		}
	}
	commit("k-hint-1") // learns the hung "leader"
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	if d, err := n.LookupRecipient(ctx, "a@example.test"); err != nil || d.Account == "" {
		t.Fatalf("directory lookup with a hung leader hint: %+v, %v", d, err)
	}
	if atHung.Load() != 0 {
		t.Fatalf("the directory lookup went to the leader hint")
	}
	commit("k-hint-2") // tries the hint, times out once, drops it
	if atHung.Load() != 1 {
		t.Fatalf("%d attempts at the hung hint, want 1", atHung.Load())
	}
	start := time.Now()
	commit("k-hint-3")
	commit("k-hint-4")
	if atHung.Load() != 1 || time.Since(start) > 250*time.Millisecond {
		t.Fatalf("the dropped hint was tried again: %d attempts, %v for two commits", atHung.Load(), time.Since(start))
	}
}

// leaderHintedCommitter returns a committer over the single node good
// whose first commit answer names leader as the leader (it forwarded), so
// the committer's next commits start at leader.
func leaderHintedCommitter(t *testing.T, good string, attempt time.Duration) *smtp.NodesCommitter {
	t.Helper()
	n, err := smtp.NewNodesCommitter(smtp.NodesConfig{Nodes: []string{good}, AttemptTimeout: attempt, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	if _, err := n.Commit(context.Background(), noopCommand(t, "k-learn-leader")); err != nil {
		t.Fatal(err)
	}
	return n
}

func noopCommand(t *testing.T, key string) []byte {
	t.Helper()
	data, err := command.Marshal(&command.Command{Key: key, Payload: &command.Noop{}})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestCommitLeavesAFrozenLeader: the leader this frontend learned stops
// answering (SIGSTOPped, or cut off from its peers but not from us) and
// the other nodes elect another. The attempt at the old leader ends as
// soon as they name the new one, and the commit goes there, instead of
// waiting out AttemptTimeout: a minute here, longer than the commit's
// whole deadline, so the commit would fail without that.
func TestCommitLeavesAFrozenLeader(t *testing.T) {
	frozen, atFrozen := hungServer(t)
	var commits atomic.Int64
	good := httptest.NewServer(batchAware(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/internal/commit":
			if commits.Add(1) == 1 {
				w.Header().Set(cluster.LeaderHeader, frozen.URL) // the leader, before it froze
			}
			_ = json.NewEncoder(w).Encode(raftstore.Result{Index: 11})
		case "/status":
			_ = json.NewEncoder(w).Encode(map[string]string{"leader_api": "http://" + r.Host + "/"})
		default:
			http.NotFound(w, r)
		}
	}))
	defer good.Close()
	n := leaderHintedCommitter(t, good.URL, time.Minute)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := n.Commit(ctx, noopCommand(t, "k-frozen-leader"))
	if err != nil {
		t.Fatalf("commit with the hinted leader frozen: %v", err)
	}
	if res.Index != 11 || commits.Load() != 2 || atFrozen.Load() != 1 {
		t.Fatalf("result %+v, %d commits at the new leader (want 2 with the first), %d at the frozen one (want 1)",
			res, commits.Load(), atFrozen.Load())
	}
}

// TestCommitWaitsForASlowLeader: a leader that is slow to answer but that
// the other nodes still name keeps its attempt: the commit is not sent a
// second time elsewhere.
func TestCommitWaitsForASlowLeader(t *testing.T) {
	var atSlow, statusAsked, commits atomic.Int64
	slow := httptest.NewServer(batchAware(func(w http.ResponseWriter, r *http.Request) {
		atSlow.Add(1)
		time.Sleep(1200 * time.Millisecond) // more than two probe periods
		_ = json.NewEncoder(w).Encode(raftstore.Result{Index: 21})
	}))
	defer slow.Close()
	other := httptest.NewServer(batchAware(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/internal/commit":
			commits.Add(1)
			w.Header().Set(cluster.LeaderHeader, slow.URL)
			_ = json.NewEncoder(w).Encode(raftstore.Result{Index: 20})
		case "/status":
			statusAsked.Add(1)
			_ = json.NewEncoder(w).Encode(map[string]string{"leader_api": slow.URL})
		default:
			http.NotFound(w, r)
		}
	}))
	defer other.Close()
	n := leaderHintedCommitter(t, other.URL, time.Minute)

	res, err := n.Commit(context.Background(), noopCommand(t, "k-slow-leader"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Index != 21 || atSlow.Load() != 1 || commits.Load() != 1 {
		t.Fatalf("result %+v, %d attempts at the slow leader (want 1), %d commits elsewhere (want only the first)",
			res, atSlow.Load(), commits.Load())
	}
	if statusAsked.Load() == 0 {
		t.Fatal("the other node was never asked who leads while the leader was slow")
	}
}

// hungServer is a node that takes every request and never answers (a
// SIGSTOPped process, or one cut off from the cluster), counting the
// requests; it lets go of them when the test ends.
func hungServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	release := make(chan struct{})
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	return srv, &requests
}

// batchAware lets a fake node written for the single-command endpoints
// (/internal/commit) answer the batch endpoints the committer uses
// (/internal/commit-batch, docs/api.md): it splits the batch into its
// commands, hands each to h as a single request and gathers the answers.
func batchAware(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		single, ok := strings.CutSuffix(r.URL.Path, "-batch")
		if !ok {
			h(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		type item struct {
			Status int             `json:"status"`
			Result json.RawMessage `json:"result,omitempty"`
			Error  json.RawMessage `json:"error,omitempty"`
		}
		var ans struct {
			Leader string `json:"leader,omitempty"`
			Items  []item `json:"items"`
		}
		for len(body) > 0 {
			n, k := binary.Uvarint(body)
			if k <= 0 || n > uint64(len(body)-k) {
				http.Error(w, "bad frame", http.StatusBadRequest)
				return
			}
			cmd := body[k : k+int(n)]
			body = body[k+int(n):]
			req := httptest.NewRequestWithContext(r.Context(), http.MethodPost, single, bytes.NewReader(cmd))
			req.Host = r.Host
			req.Header = r.Header.Clone()
			rec := httptest.NewRecorder()
			h(rec, req)
			it := item{Status: rec.Code}
			if rec.Code < 300 {
				it.Result = rec.Body.Bytes()
			} else {
				it.Error = rec.Body.Bytes()
			}
			if l := rec.Header().Get(cluster.LeaderHeader); l != "" {
				ans.Leader = l
			}
			ans.Items = append(ans.Items, it)
		}
		_ = json.NewEncoder(w).Encode(ans)
	})
}
