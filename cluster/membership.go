package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// AddMember adds a voter and records its API address. On a follower the
// request is passed to the leader.
func (n *Node) AddMember(ctx context.Context, id, raftAddr, apiAddr string) error {
	if !n.store.IsLeader() {
		api := n.leaderAPI()
		if api == "" {
			return fmt.Errorf("%w: no leader to join through", ErrUnavailable)
		}
		return n.client.Do(ctx, http.MethodPost, api, "/cluster/join", joinRequest{ID: id, RaftAddr: raftAddr, APIAddr: apiAddr}, nil)
	}
	if err := n.store.AddVoter(id, raftAddr, 10*time.Second); err != nil {
		return err
	}
	_, err := n.Propose(ctx, &command.Command{Payload: &command.SetNode{ID: id, RaftAddr: raftAddr, APIAddr: apiAddr}})
	if err == nil {
		n.logger.Info("member added", "member", id, "raft_addr", raftAddr, "api_addr", apiAddr)
	}
	return err
}

// RemoveMember removes a server from the configuration and its record.
func (n *Node) RemoveMember(ctx context.Context, id string) error {
	if !n.store.IsLeader() {
		api := n.leaderAPI()
		if api == "" {
			return fmt.Errorf("%w: no leader", ErrUnavailable)
		}
		return n.client.Do(ctx, http.MethodPost, api, "/cluster/remove", joinRequest{ID: id}, nil)
	}
	if err := n.store.RemoveServer(id, 10*time.Second); err != nil {
		return err
	}
	_, err := n.Propose(ctx, &command.Command{Payload: &command.SetNode{ID: id, Remove: true}})
	if err == nil {
		n.logger.Info("member removed", "member", id)
	}
	return err
}

// joinLoop asks the configured members to add this node until one does or
// the node already is a member.
func (n *Node) joinLoop() {
	defer n.wg.Done()
	backoff := 200 * time.Millisecond
	for {
		if n.isMember() {
			return
		}
		for _, base := range n.cfg.Join {
			ctx, cancel := context.WithTimeout(n.ctx, 15*time.Second)
			err := n.client.Do(ctx, http.MethodPost, base, "/cluster/join",
				joinRequest{ID: n.cfg.ID, RaftAddr: n.store.RaftAddr(), APIAddr: n.apiURL}, nil)
			cancel()
			if err == nil {
				n.logger.Info("joined cluster", "via", base)
				return
			}
			n.logger.Info("join attempt failed, retrying", "via", base, "err", err)
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// isMember reports whether this node knows a leader and is in its
// configuration (a restarted member must not ask to join again).
func (n *Node) isMember() bool {
	if id, _ := n.store.Leader(); id == "" {
		return false
	}
	servers, err := n.store.Servers()
	if err != nil {
		return false
	}
	for _, s := range servers {
		if string(s.ID) == n.cfg.ID {
			return true
		}
	}
	return false
}

// watchLeadership keeps this node's record (its raft and API addresses) in
// the replicated state current: a follower can forward writes only to a
// leader whose API address the state knows, and a node restarted on another
// port must be found again. The leader writes its own record directly after
// every election; a follower proposes its record through the leader.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if id, _ := n.store.Leader(); id == "" || n.recordCurrent() || !n.isMember() {
			continue
		}
		if err := n.registerSelf(); err != nil && !errors.Is(err, raftstore.ErrNotLeader) {
			n.logger.Warn("register node address", "err", err)
		}
	}
}

// Registered reports whether the replicated state holds this node's
// current addresses (written by watchLeadership shortly after start).
func (n *Node) Registered() bool { return n.recordCurrent() }

func (n *Node) recordCurrent() bool {
	var have raftstore.Node
	_ = n.store.View(func(r *raftstore.ReadTx) error {
		nodes, err := r.Nodes()
		for _, nd := range nodes {
			if nd.ID == n.cfg.ID {
				have = nd
			}
		}
		return err
	})
	return have.APIAddr == n.apiURL && have.RaftAddr == n.store.RaftAddr()
}

func (n *Node) registerSelf() error {
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	defer cancel()
	cmd := &command.Command{Payload: &command.SetNode{ID: n.cfg.ID, RaftAddr: n.store.RaftAddr(), APIAddr: n.apiURL}}
	if n.store.IsLeader() {
		if err := n.store.Barrier(5 * time.Second); err != nil {
			return err
		}
		if n.recordCurrent() {
			return nil
		}
		cmd.Key = command.NewKey()
		_, err := n.store.ApplyCommand(ctx, cmd)
		return err
	}
	_, err := n.Propose(ctx, cmd)
	return err
}
