// Package clustertest starts real in-process raftmail nodes (real raft over
// TCP on 127.0.0.1, real bbolt files in t.TempDir()) for tests of every
// package and for benchmarks.
package clustertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// Options tune a test cluster.
type Options struct {
	// Store tunes every node's raft store (e.g. TrailingLogs for
	// compaction tests).
	Store raftstore.Config
	// CommitTimeout per node (default 10s).
	CommitTimeout time.Duration
	// ForwardAttemptTimeout per node (default: the node's, 3s).
	ForwardAttemptTimeout time.Duration
	// FreezableAPI puts a proxy in front of each node's API (the address
	// the node advertises to the others), so that FreezeAPI can make one
	// node's API hang while its raft runs on.
	FreezableAPI bool
	// Verbose sends node logs to the test log instead of discarding them
	// (or set RAFTMAIL_TEST_LOG=1).
	Verbose bool
}

// Cluster is a set of in-process nodes.
type Cluster struct {
	t     testing.TB
	opts  Options
	mu    sync.Mutex
	nodes []*cluster.Node
	cfgs  []cluster.Config
	proxy []*apiProxy // with Options.FreezableAPI
}

// New starts n nodes: node 0 bootstraps, the others join through it. It
// returns once every node is a member and knows the leader.
func New(t testing.TB, n int, opts ...Options) *Cluster {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.CommitTimeout == 0 {
		o.CommitTimeout = 10 * time.Second
	}
	c := &Cluster{t: t, opts: o, nodes: make([]*cluster.Node, n), cfgs: make([]cluster.Config, n)}
	base := t.TempDir()
	for i := 0; i < n; i++ {
		cfg := cluster.Config{
			ID:            fmt.Sprintf("n%d", i+1),
			DataDir:       filepath.Join(base, fmt.Sprintf("n%d", i+1)),
			RaftAddr:      FreeAddr(t),
			HTTPAddr:      FreeAddr(t),
			Dev:           true,
			CommitTimeout: o.CommitTimeout,
			Store:         o.Store,
			Logger:        c.logger(i),

			ForwardAttemptTimeout: o.ForwardAttemptTimeout,
		}
		if o.FreezableAPI {
			p := newAPIProxy(t)
			t.Cleanup(p.close)
			c.proxy = append(c.proxy, p)
			cfg.APIAdvertise = p.url()
		}
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = []string{"http://" + c.cfgs[0].HTTPAddr}
		}
		// A port probed free can be taken by a test in another package
		// (go test runs packages in parallel) before the node binds it:
		// start again on fresh ports when that happens.
		for attempt := 0; ; attempt++ {
			c.cfgs[i] = cfg
			if o.FreezableAPI {
				c.proxy[i].setTarget(cfg.HTTPAddr)
			}
			err := c.tryStart(i)
			if err == nil {
				break
			}
			if !strings.Contains(err.Error(), "address already in use") || attempt == 4 {
				t.Fatalf("start node %d: %v", i+1, err)
			}
			cfg.RaftAddr, cfg.HTTPAddr = FreeAddr(t), FreeAddr(t)
		}
		if i == 0 {
			c.WaitLeader()
		}
	}
	t.Cleanup(c.Close)
	c.WaitMembers(n)
	// Each node writes its own record (a barrier and a SetNode) up to a
	// ticker period after it starts: wait for all of them, so that a test
	// taking a digest first does not see them land later (TestBadInput in
	// frontends/imap compared digests across exactly that race).
	Eventually(t, 20*time.Second, "every node's record in the replicated state", func() bool {
		for _, i := range c.Running() {
			if !c.Node(i).Registered() {
				return false
			}
		}
		return true
	})
	c.WaitConverged(20 * time.Second)
	return c
}

func (c *Cluster) logger(i int) *slog.Logger {
	if c.opts.Verbose || os.Getenv("RAFTMAIL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(tlogWriter{c.t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("n", i+1)
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func (c *Cluster) start(i int) {
	c.t.Helper()
	if err := c.tryStart(i); err != nil {
		c.t.Fatalf("start node %d: %v", i+1, err)
	}
}

func (c *Cluster) tryStart(i int) error {
	nd, err := cluster.Open(c.cfgs[i])
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.nodes[i] = nd
	c.mu.Unlock()
	return nil
}

// FreeAddr returns a free 127.0.0.1 TCP address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	freeMu.Lock()
	defer freeMu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		addr := ln.Addr().String()
		ln.Close()
		// The kernel may hand the same port to the next probe once this
		// one is closed: never give out an address twice in a process (a
		// node's API and POP3 listeners got the same port and the node
		// died after its API answered, in cmd/raftmail's TestIndependentClients).
		if !handedOut[addr] {
			handedOut[addr] = true
			return addr
		}
	}
}

var (
	freeMu    sync.Mutex
	handedOut = map[string]bool{}
)

// Close stops every running node.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, n := range c.nodes {
		if n != nil {
			n.Close()
			c.nodes[i] = nil
		}
	}
}

// FreezeAPI makes node i's API hang for every other node and client that
// uses its advertised address (Options.FreezableAPI): connections are
// taken and nothing is answered, as from a SIGSTOPped process, while its
// raft runs on. FrozenReads reports how many reads it has swallowed since.
func (c *Cluster) FreezeAPI(i int) {
	if len(c.proxy) == 0 {
		c.t.Fatal("FreezeAPI needs Options.FreezableAPI")
	}
	c.proxy[i].frozen.Store(true)
}

// MuteAPI makes node i's API take requests (the node runs them) but lose
// every answer on the way back, as when the network drops the replies:
// the caller cannot tell whether its write committed.
func (c *Cluster) MuteAPI(i int) {
	if len(c.proxy) == 0 {
		c.t.Fatal("MuteAPI needs Options.FreezableAPI")
	}
	c.proxy[i].mute.Store(true)
}

// FrozenReads returns how many reads node i's API proxy swallowed (frozen
// or muted).
func (c *Cluster) FrozenReads(i int) int64 { return c.proxy[i].dropped.Load() }

// N returns the number of nodes (running or not).
func (c *Cluster) N() int { return len(c.nodes) }

// Node returns node i (0-based), nil if stopped.
func (c *Cluster) Node(i int) *cluster.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Store returns node i as the frontends' store interface.
func (c *Cluster) Store(i int) frontends.Store { return c.Node(i) }

// Config returns node i's configuration.
func (c *Cluster) Config(i int) cluster.Config { return c.cfgs[i] }

// Stop closes node i, keeping its data for Restart.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n != nil {
		n.Close()
	}
}

// Restart starts a stopped node again on the same data and addresses.
func (c *Cluster) Restart(i int) {
	c.cfgs[i].Bootstrap = false
	c.start(i)
}

// Running returns the indexes of running nodes.
func (c *Cluster) Running() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i, n := range c.nodes {
		if n != nil {
			out = append(out, i)
		}
	}
	return out
}

// Eventually polls cond every 20ms until it holds or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LeaderIndex returns the index of the running leader, or -1.
func (c *Cluster) LeaderIndex() int {
	for _, i := range c.Running() {
		if n := c.Node(i); n != nil && n.Store().IsLeader() {
			return i
		}
	}
	return -1
}

// WaitLeader waits until a running node leads and returns its index.
func (c *Cluster) WaitLeader() int {
	c.t.Helper()
	var li int
	Eventually(c.t, 15*time.Second, "a leader", func() bool { li = c.LeaderIndex(); return li >= 0 })
	return li
}

// Leader returns the leader node, waiting for one.
func (c *Cluster) Leader() *cluster.Node { return c.Node(c.WaitLeader()) }

// Follower returns the index of a running follower.
func (c *Cluster) Follower() int {
	c.t.Helper()
	li := c.WaitLeader()
	for _, i := range c.Running() {
		if i != li {
			return i
		}
	}
	c.t.Fatal("no running follower")
	return -1
}

// WaitMembers waits until every running node knows a leader whose record
// (API address) is in its state, and the configuration has want voters.
func (c *Cluster) WaitMembers(want int) {
	c.t.Helper()
	Eventually(c.t, 20*time.Second, fmt.Sprintf("%d members with known leader API", want), func() bool {
		for _, i := range c.Running() {
			n := c.Node(i)
			st := n.StatusNow()
			if st.LeaderAPI == "" || len(st.Servers) != want {
				return false
			}
		}
		return true
	})
}

// WaitConverged waits until every running node has applied the same index
// and reports the same state digest, and returns that digest.
func (c *Cluster) WaitConverged(timeout time.Duration) string {
	c.t.Helper()
	var digest string
	Eventually(c.t, timeout, "replicas to converge", func() bool {
		var first string
		var idx uint64
		for k, i := range c.Running() {
			d, applied, err := c.Node(i).Store().Digest()
			if err != nil {
				return false
			}
			if k == 0 {
				first, idx = d, applied
				continue
			}
			if d != first || applied != idx {
				return false
			}
		}
		digest = first
		return true
	})
	return digest
}

// Propose commits a command through node i and fails the test on any error.
func (c *Cluster) Propose(i int, p command.Payload) raftstore.Result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := c.Node(i).Propose(ctx, &command.Command{Payload: p})
	if err != nil {
		c.t.Fatalf("propose %T on node %d: %v", p, i+1, err)
	}
	if err := res.Err(); err != nil {
		c.t.Fatalf("propose %T on node %d: %v", p, i+1, err)
	}
	c.WaitApplied(res.Index)
	return res
}

// WaitApplied waits until every running node has applied index, so a test
// setup step is visible wherever the test looks next.
func (c *Cluster) WaitApplied(index uint64) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, i := range c.Running() {
		if err := c.Node(i).WaitApplied(ctx, index); err != nil {
			c.t.Fatalf("node %d: %v", i+1, err)
		}
	}
}

// AddDomain creates a local domain.
func (c *Cluster) AddDomain(domain string) {
	c.t.Helper()
	c.Propose(c.Running()[0], &command.AddDomain{Name: domain})
}

// AddAccount creates an account with a password (and its domain).
func (c *Cluster) AddAccount(addr, password string) {
	c.t.Helper()
	hash, err := raftstore.HashPassword(password)
	if err != nil {
		c.t.Fatal(err)
	}
	norm, err := raftstore.NormalizeAddress(addr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.AddDomain(norm[strings.LastIndexByte(norm, '@')+1:])
	c.Propose(c.Running()[0], &command.AddAccount{Address: norm, PassHash: hash})
}

// Deliver commits one message for the recipients through node i, the way
// LMTP and SMTP do, and returns the per-recipient results.
func (c *Cluster) Deliver(i int, from string, rcpts []string, raw []byte) raftstore.Result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n := c.Node(i)
	cmd, err := frontends.NewDeliver(n.Codec(), frontends.Envelope{From: from, Rcpts: rcpts}, raw)
	if err != nil {
		c.t.Fatalf("build delivery: %v", err)
	}
	res, err := frontends.CommitDeliver(ctx, n, cmd)
	if err != nil {
		c.t.Fatalf("deliver through node %d: %v", i+1, err)
	}
	if err := n.WaitApplied(ctx, res.Index); err != nil {
		c.t.Fatal(err)
	}
	return res
}
