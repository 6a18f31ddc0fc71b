package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// commit sends an encoded command to the leader — applying it here when
// this node leads, forwarding it otherwise — and returns once it is
// committed on a majority and applied on the leader. Across leader changes
// and lost connections it retries the same bytes, whose idempotency key
// makes the retry safe (DESIGN.md invariant 2). When the deadline passes
// (default CommitTimeout) it asks once more whether the key committed
// before it gives up with ErrUnavailable.
func (n *Node) commit(ctx context.Context, data []byte) (raftstore.Result, error) {
	key, err := command.PeekKey(data)
	if err != nil {
		return raftstore.Result{}, err
	}
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	backoff := 10 * time.Millisecond
	var lastErr error
	for attempt := 0; ; attempt++ {
		res, err := n.commitOnce(ctx, data)
		if err == nil {
			if attempt > 0 {
				n.logger.Debug("commit succeeded after retry", "attempts", attempt+1, "raft_index", res.Index)
			}
			return res, nil
		}
		if !retryable(err) {
			return res, err
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return n.giveUp(key, lastErr)
		case <-n.ctx.Done():
			return raftstore.Result{}, raftstore.ErrClosed
		case <-time.After(backoff):
		}
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
	}
}

// giveUp is the last step before answering a temporary failure: if the key
// did commit (e.g. ErrLeadershipLost that still committed), report success.
func (n *Node) giveUp(key string, lastErr error) (raftstore.Result, error) {
	if key != "" {
		ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
		defer cancel()
		if res, ok, err := n.Lookup(ctx, key); err == nil && ok {
			n.logger.Info("commit timed out but key had committed", "key", key, "raft_index", res.Index)
			return res, nil
		}
	}
	return raftstore.Result{}, fmt.Errorf("%w: %v", ErrUnavailable, lastErr)
}

func (n *Node) commitOnce(ctx context.Context, data []byte) (raftstore.Result, error) {
	if n.store.IsLeader() {
		// Apply stamps the leader's time into the buffer; use a copy so a
		// retry elsewhere sends the proposer's bytes.
		return n.store.Apply(ctx, append([]byte(nil), data...))
	}
	leader, changed := n.store.LeaderWatch()
	api := n.apiOf(leader)
	if api == "" {
		return raftstore.Result{}, errNoLeader
	}
	// Bound each forwarded attempt: a frozen or cut-off leader still
	// accepts connections, and waiting on it for the whole deadline would
	// stall writes long after a new leader is elected (found by raftmail
	// chaos). The attempt also ends as soon as this node sees the leader
	// change: raft has then moved on, and so do we. The retry resends the
	// same bytes; the key makes it safe.
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	actx, cancelT := context.WithTimeout(actx, n.cfg.ForwardAttemptTimeout)
	defer cancelT()
	go func() {
		select {
		case <-changed:
			cancel(errLeaderChanged)
		case <-actx.Done():
		}
	}()
	res, err := n.client.Apply(actx, api, data)
	if err != nil && errors.Is(context.Cause(actx), errLeaderChanged) {
		n.logger.Debug("forwarded commit abandoned: the leader changed", "leader", leader)
		return res, fmt.Errorf("forward to %s: %w", leader, errLeaderChanged)
	}
	return res, err
}

// errLeaderChanged ends a forwarded attempt whose leader this node no
// longer follows; commit retries at once with the same bytes.
var errLeaderChanged = errors.New("the leader changed while forwarding")

var errNoLeader = errors.New("no known leader")

// retryable reports whether a commit error may succeed on another try.
func retryable(err error) bool {
	switch {
	case errors.Is(err, raftstore.ErrTooLarge), errors.Is(err, command.ErrShort), errors.Is(err, command.ErrMalformed),
		errors.Is(err, command.ErrUnknownType), errors.Is(err, raftstore.ErrClosed),
		errors.Is(err, errBadRequest):
		return false
	}
	return true
}

// leaderAPI returns the leader's API URL from the replicated node records.
func (n *Node) leaderAPI() string {
	id, _ := n.store.Leader()
	return n.apiOf(id)
}

// apiOf returns a node's API URL from the replicated node records ("" for
// an unknown or empty ID).
func (n *Node) apiOf(id string) string {
	if id == "" {
		return ""
	}
	if id == n.cfg.ID {
		return n.apiURL
	}
	var url string
	_ = n.store.View(func(r *raftstore.ReadTx) error {
		nodes, err := r.Nodes()
		for _, nd := range nodes {
			if nd.ID == id {
				url = nd.APIAddr
			}
		}
		return err
	})
	return url
}

// Lookup asks the leader whether a key has committed, after a barrier so
// that every committed entry is applied there.
func (n *Node) Lookup(ctx context.Context, key string) (raftstore.Result, bool, error) {
	if n.store.IsLeader() {
		timeout := 5 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			timeout = time.Until(dl)
		}
		if err := n.store.Barrier(timeout); err != nil {
			return raftstore.Result{}, false, err
		}
		return n.lookupLocal(key)
	}
	api := n.leaderAPI()
	if api == "" {
		return raftstore.Result{}, false, errNoLeader
	}
	return n.client.Lookup(ctx, api, key)
}

func (n *Node) lookupLocal(key string) (res raftstore.Result, ok bool, err error) {
	err = n.store.View(func(r *raftstore.ReadTx) error {
		res, ok = r.Remembered(key)
		return nil
	})
	return res, ok, err
}
