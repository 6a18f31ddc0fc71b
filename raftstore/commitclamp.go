package raftstore

import (
	"sync"

	"github.com/hashicorp/raft"
)

// hashicorp/raft (v1.7.3 and v1.8.0) lets a follower advance its commit
// index to min(leaderCommit, its own last index) on any AppendEntries that
// passes the previous-entry check. Raft's rule is min(leaderCommit, index
// of the last entry the request verified): a follower's log beyond that
// point may still hold a divergent suffix from an earlier term (an old
// leader that was paused or cut off wrote entries nobody else has), and
// committing it applies entries the cluster never committed. The FSM then
// skips the real entries at those indexes, and the replica diverges for
// good. raftmail chaos found it: a leader SIGSTOPped for 5 s, resumed, took
// a new leader's AppendEntries that repeated entries it already had (no
// conflict, so no truncation) with a commit index past them, and applied
// six of its own unreplicated entries; six acknowledged messages were then
// missing on that node and its digest differed from the other two.
//
// guardedTransport mends it from outside the library, on the receiving
// side of the transport: before raft sees an AppendEntries request, its
// LeaderCommitIndex is lowered to the last index the request verifies
// (PrevLogEntry plus its entries). Lowering it is always safe (a follower
// only learns of commits later) and costs no liveness: the leader's
// requests reach its last index every CommitTimeout, so a follower's commit
// index still catches up at once. Heartbeats (the transport's fast path)
// carry no commit index and are untouched.
type guardedTransport struct {
	raft.Transport
	ch       chan raft.RPC
	stop     chan struct{}
	stopOnce sync.Once
}

// guardedPreVote is guardedTransport over a transport that supports
// pre-vote: raft enables pre-vote by a type assertion on its transport, so
// the wrapper must offer exactly what the wrapped transport offers.
type guardedPreVote struct {
	*guardedTransport
	pv raft.WithPreVote
}

// RequestPreVote is the wrapped transport's, retried like RequestVote
// (voteretry.go).
func (c guardedPreVote) RequestPreVote(id raft.ServerID, target raft.ServerAddress,
	args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return retryStale(func() error { return c.pv.RequestPreVote(id, target, args, resp) })
}

// guardTransport wraps t in the two mends raft needs from its transport:
// commit indexes clamped (here) and votes retried on a stale connection
// (voteretry.go). The result is what raft must be given; stop ends the
// forwarding without closing t, for when raft is not started after all.
func guardTransport(t raft.Transport) (wrapped raft.Transport, stop func()) {
	c := &guardedTransport{Transport: t, ch: make(chan raft.RPC), stop: make(chan struct{})}
	go c.forward()
	if pv, ok := t.(raft.WithPreVote); ok {
		return guardedPreVote{guardedTransport: c, pv: pv}, c.halt
	}
	return c, c.halt
}

// halt ends the forwarding (idempotent).
func (c *guardedTransport) halt() { c.stopOnce.Do(func() { close(c.stop) }) }

// Consumer returns the requests, AppendEntries clamped.
func (c *guardedTransport) Consumer() <-chan raft.RPC { return c.ch }

func (c *guardedTransport) forward() {
	in := c.Transport.Consumer()
	for {
		select {
		case <-c.stop:
			return
		case rpc := <-in:
			if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok {
				// A copy: an in-memory transport hands over the sender's
				// own request.
				clamped := *req
				clampCommit(&clamped)
				rpc.Command = &clamped
			}
			select {
			case c.ch <- rpc:
			case <-c.stop:
				return
			}
		}
	}
}

// clampCommit lowers req's commit index to the last index it verifies.
func clampCommit(req *raft.AppendEntriesRequest) {
	verified := req.PrevLogEntry
	if n := len(req.Entries); n > 0 {
		verified = req.Entries[n-1].Index
	}
	if req.LeaderCommitIndex > verified {
		req.LeaderCommitIndex = verified
	}
}

// Close stops the forwarding and closes the wrapped transport if it can
// be closed (raft calls it on shutdown).
func (c *guardedTransport) Close() error {
	c.halt()
	if wc, ok := c.Transport.(raft.WithClose); ok {
		return wc.Close()
	}
	return nil
}
