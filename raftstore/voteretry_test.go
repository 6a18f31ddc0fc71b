package raftstore

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// voter is a TCP transport on addr whose consumer grants every vote.
func voter(t *testing.T, addr string) *raft.NetworkTransport {
	t.Helper()
	var tr *raft.NetworkTransport
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		tr, err = raft.NewTCPTransportWithLogger(addr, nil, 4, 2*time.Second, hclog.New(&hclog.LoggerOptions{Output: io.Discard}))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the port of a voter just closed
	}
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for rpc := range tr.Consumer() {
			switch req := rpc.Command.(type) {
			case *raft.RequestVoteRequest:
				rpc.Respond(&raft.RequestVoteResponse{RPCHeader: req.RPCHeader, Term: req.Term, Granted: true}, nil)
			case *raft.RequestPreVoteRequest:
				rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: req.RPCHeader, Term: req.Term, Granted: true}, nil)
			default:
				rpc.Respond(nil, io.ErrUnexpectedEOF)
			}
		}
	}()
	return tr
}

// TestVoteRetriedAfterPeerRestart: a vote to a peer that restarted since
// the last one meets the closed pooled connection. The bare TCP transport
// fails it with EOF (an election lost for nothing); the wrapper retries it
// on a fresh connection and gets the vote.
func TestVoteRetriedAfterPeerRestart(t *testing.T) {
	addr := freeAddr(t)
	for _, wrap := range []bool{false, true} {
		peer := voter(t, addr)
		self := voter(t, freeAddr(t))
		var tr raft.Transport = self
		if wrap {
			w, stop := guardTransport(self)
			defer stop()
			tr = w
		}
		vote := func() error {
			var resp raft.RequestVoteResponse
			err := tr.RequestVote("peer", raft.ServerAddress(addr), &raft.RequestVoteRequest{Term: 2}, &resp)
			if err == nil && !resp.Granted {
				t.Fatal("vote not granted")
			}
			return err
		}
		preVote := func() error {
			var resp raft.RequestPreVoteResponse
			return tr.(raft.WithPreVote).RequestPreVote("peer", raft.ServerAddress(addr), &raft.RequestPreVoteRequest{Term: 2}, &resp)
		}
		if err := vote(); err != nil { // a pooled connection to the peer
			t.Fatal(err)
		}
		if err := preVote(); err != nil {
			t.Fatal(err)
		}
		peer.Close()
		peer = voter(t, addr) // the peer restarted
		err, perr := vote(), preVote()
		peer.Close()
		self.Close()
		switch {
		case wrap && (err != nil || perr != nil):
			t.Fatalf("wrapped: vote %v, pre-vote %v; want both granted after the peer's restart", err, perr)
		case !wrap && err == nil:
			t.Fatal("bare transport: the vote after the restart worked, so this test does not show the stale connection")
		}
		t.Logf("wrapped=%v: vote after restart: %v; pre-vote: %v", wrap, err, perr)
	}
}
