// Package frontends holds the protocol servers (smtp, lmtp, imap, pop3) and
// the small interface through which they reach the replicated store. A
// frontend never opens bbolt and never talks to raft directly.
package frontends

import (
	"context"

	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// Store is what a protocol server on a mailbox node needs. cluster.Node
// implements it; writes go through the leader, reads are local.
type Store interface {
	// Propose commits a command through the leader (forwarding from a
	// follower, retrying across leader changes with the same idempotency
	// key) and returns once this node has applied it, so the caller's next
	// read sees its write. A command without a Key gets one.
	Propose(ctx context.Context, c *command.Command) (raftstore.Result, error)
	// View runs fn in a consistent read transaction on local state.
	View(fn func(*raftstore.ReadTx) error) error
	// WaitApplied waits until local state reaches index.
	WaitApplied(ctx context.Context, index uint64) error
	// Subscribe returns the local change feed in apply order.
	Subscribe(buf int) (<-chan raftstore.Change, func())
	// Authenticate verifies a password (cached) and returns the account.
	Authenticate(user, pass string) (string, error)
	// Codec compresses bodies (on this node, never on the leader) and
	// decompresses them.
	Codec() *raftstore.Codec
	// NodeID names this node (for lease holders and logs).
	NodeID() string
}

// Committer is what a delivery path needs (LMTP on a node, SMTP frontends
// through a node's API): the directory and the commit. Commit returns once
// the command is committed on a majority and applied on the leader; it does
// not wait for the local replica.
type Committer interface {
	Commit(ctx context.Context, data []byte) (raftstore.Result, error)
	LookupRecipient(ctx context.Context, addr string) (Directory, error)
	Codec() *raftstore.Codec
}

// Directory is the answer to "can this address receive mail here?".
type Directory struct {
	Address   string `json:"address"`    // normalised
	Local     bool   `json:"local"`      // the domain is served here
	Account   string `json:"account"`    // "" if no such user
	OverQuota bool   `json:"over_quota"` // the account is at or over quota
	Quota     int64  `json:"quota"`
	Used      int64  `json:"used"`
}
