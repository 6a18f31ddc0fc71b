package cluster_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// opsCluster is a hand-built cluster for the operations tests: unlike
// clustertest it lets each node have TLS, a metrics registry, and new
// nodes join under new IDs.
type opsCluster struct {
	t     *testing.T
	base  string
	ca    *cluster.CA // nil: plain TCP, dev mode
	mu    sync.Mutex
	nodes map[string]*cluster.Node
	cfgs  map[string]cluster.Config
	order []string
	logs  map[string]*logSink
}

func newOpsCluster(t *testing.T, ca *cluster.CA) *opsCluster {
	oc := &opsCluster{t: t, base: t.TempDir(), ca: ca, nodes: map[string]*cluster.Node{},
		cfgs: map[string]cluster.Config{}, logs: map[string]*logSink{}}
	t.Cleanup(oc.closeAll)
	return oc
}

// config returns a node configuration with fresh loopback ports.
func (oc *opsCluster) config(id string, tlsCA *cluster.CA) cluster.Config {
	oc.t.Helper()
	sink := &logSink{}
	oc.logs[id] = sink
	cfg := cluster.Config{
		ID: id, DataDir: filepath.Join(oc.base, id),
		RaftAddr: clustertest.FreeAddr(oc.t), HTTPAddr: clustertest.FreeAddr(oc.t),
		CommitTimeout: 10 * time.Second,
		Store:         raftstore.Config{LogNoSync: true},
		Logger:        slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Metrics:       prometheus.NewRegistry(),
	}
	if tlsCA != nil {
		m, err := tlsCA.MutualTLS(id, "127.0.0.1")
		if err != nil {
			oc.t.Fatal(err)
		}
		cfg.TLS = m
	} else {
		cfg.Dev = true
	}
	return cfg
}

// add starts a node: the first bootstraps, later ones join through the
// first running node.
func (oc *opsCluster) add(id string) *cluster.Node {
	oc.t.Helper()
	cfg := oc.config(id, oc.ca)
	if len(oc.order) == 0 {
		cfg.Bootstrap = true
	} else {
		cfg.Join = []string{oc.anyRunning().APIURL()}
	}
	oc.cfgs[id] = cfg
	oc.order = append(oc.order, id)
	return oc.start(id)
}

func (oc *opsCluster) start(id string) *cluster.Node {
	oc.t.Helper()
	n, err := cluster.Open(oc.cfgs[id])
	if err != nil {
		oc.t.Fatalf("start %s: %v", id, err)
	}
	oc.mu.Lock()
	oc.nodes[id] = n
	oc.mu.Unlock()
	return n
}

func (oc *opsCluster) node(id string) *cluster.Node {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	return oc.nodes[id]
}

// stop closes a node, keeping its data.
func (oc *opsCluster) stop(id string) {
	oc.mu.Lock()
	n := oc.nodes[id]
	delete(oc.nodes, id)
	oc.mu.Unlock()
	if n != nil {
		n.Close()
	}
}

// restart starts a stopped node on its data and addresses.
func (oc *opsCluster) restart(id string) *cluster.Node {
	cfg := oc.cfgs[id]
	cfg.Bootstrap, cfg.Join = false, nil
	cfg.Metrics = prometheus.NewRegistry()
	oc.cfgs[id] = cfg
	return oc.start(id)
}

func (oc *opsCluster) running() []*cluster.Node {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	var out []*cluster.Node
	for _, id := range oc.order {
		if n := oc.nodes[id]; n != nil {
			out = append(out, n)
		}
	}
	return out
}

func (oc *opsCluster) anyRunning() *cluster.Node {
	r := oc.running()
	if len(r) == 0 {
		oc.t.Fatal("no running node")
	}
	return r[0]
}

func (oc *opsCluster) leader() *cluster.Node {
	oc.t.Helper()
	var l *cluster.Node
	clustertest.Eventually(oc.t, 20*time.Second, "a leader", func() bool {
		for _, n := range oc.running() {
			if n.Store().IsLeader() {
				l = n
				return true
			}
		}
		return false
	})
	return l
}

func (oc *opsCluster) closeAll() {
	for _, n := range oc.running() {
		n.Close()
	}
	if oc.t.Failed() {
		for id, s := range oc.logs {
			oc.t.Logf("--- log of %s ---\n%s", id, s.tail(30))
		}
	}
}

// waitMembers waits until every running node knows the leader's API and
// sees want voters.
func (oc *opsCluster) waitMembers(want int) {
	oc.t.Helper()
	clustertest.Eventually(oc.t, 30*time.Second, fmt.Sprintf("%d members", want), func() bool {
		for _, n := range oc.running() {
			st := n.StatusNow()
			if st.LeaderAPI == "" || len(st.Servers) != want {
				return false
			}
		}
		return true
	})
}

// waitConverged waits for equal applied indexes and digests on every
// running node.
func (oc *opsCluster) waitConverged() string {
	oc.t.Helper()
	var digest string
	clustertest.Eventually(oc.t, 30*time.Second, "converged replicas", func() bool {
		var first string
		var idx uint64
		for k, n := range oc.running() {
			d, applied, err := n.Store().Digest()
			if err != nil {
				return false
			}
			if k == 0 {
				first, idx = d, applied
			} else if d != first || applied != idx {
				return false
			}
		}
		digest = first
		return true
	})
	return digest
}

func (oc *opsCluster) propose(n *cluster.Node, p command.Payload) raftstore.Result {
	oc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := n.Propose(ctx, &command.Command{Payload: p})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		oc.t.Fatalf("propose %T on %s: %v", p, n.NodeID(), err)
	}
	return res
}

func (oc *opsCluster) addAccount(addr string) {
	oc.t.Helper()
	n := oc.anyRunning()
	oc.propose(n, &command.AddDomain{Name: addr[strings.IndexByte(addr, '@')+1:]})
	hash, err := raftstore.HashPassword("pw")
	if err != nil {
		oc.t.Fatal(err)
	}
	oc.propose(n, &command.AddAccount{Address: addr, PassHash: hash})
}

// deliver commits one message through n, returning the commit error.
func deliver(n *cluster.Node, rcpt, body string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd, err := frontends.NewDeliver(n.Codec(), frontends.Envelope{From: "a@remote.test", Rcpts: []string{rcpt}},
		[]byte("From: a@remote.test\r\nSubject: "+body+"\r\n\r\n"+body+"\r\n"))
	if err != nil {
		return err
	}
	res, err := frontends.CommitDeliver(ctx, n, cmd)
	if err == nil {
		err = res.Err()
	}
	return err
}

// logSink collects a node's log for assertions and failure reports.
type logSink struct {
	mu  sync.Mutex
	buf strings.Builder
}

var _ io.Writer = (*logSink)(nil)

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) contains(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Contains(s.buf.String(), sub)
}

func (s *logSink) tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := strings.Split(s.buf.String(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
