package smtp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// NodesConfig configures a NodesCommitter.
type NodesConfig struct {
	// Nodes are the mailbox nodes' API base URLs (flag --nodes).
	Nodes []string
	// Token is the nodes' API bearer token (flag --token).
	Token string
	// MaxMessageBytes sizes the body codec (default 32 MiB).
	MaxMessageBytes int64
	// DirectoryTTL is how long a directory answer is reused (default 5s);
	// DirectoryCacheSize bounds the cache (default 10,000 addresses).
	DirectoryTTL       time.Duration
	DirectoryCacheSize int
	// LookupReserve is the part of a commit's deadline kept for asking
	// whether the key committed before giving up (default 2s, at most a
	// third of the deadline).
	LookupReserve time.Duration
	// AttemptTimeout bounds one node's attempt at a commit, a directory
	// lookup or a login (default 3s).
	// A node that is frozen, or cut off from the other nodes while the
	// frontend still reaches it, would otherwise hold every delivery sent
	// to it until the whole deadline; after AttemptTimeout the next node
	// is tried with the same bytes (the key makes that safe).
	AttemptTimeout time.Duration
	Logger         *slog.Logger
	// TLS, when set, presents a client certificate to nodes running with
	// cluster mutual TLS and verifies them against the cluster CA.
	TLS *cluster.MutualTLS
}

// NodesCommitter implements frontends.Committer and Authenticator over the
// HTTP API of several mailbox nodes, for stateless frontends. It sends to
// the leader it last learned: a follower forwards a commit (a hop) and
// names the leader in its answer (cluster.LeaderHeader), and /status is
// asked after a failed round. It fails over to the other nodes on
// connection errors, and
// before giving up on a commit asks the nodes whether its key committed.
// It keeps only short-lived memory: a leader hint and a small directory
// cache.
type NodesCommitter struct {
	cfg    NodesConfig
	client *cluster.Client
	codec  *raftstore.Codec
	logger *slog.Logger

	mu     sync.Mutex
	leader string // API URL of the last known leader, "" if unknown
	next   int    // round-robin start among cfg.Nodes

	dir *dirCache
}

var (
	_ frontends.Committer = (*NodesCommitter)(nil)
	_ Authenticator       = (*NodesCommitter)(nil)
)

// NewNodesCommitter returns a committer over the given nodes.
func NewNodesCommitter(cfg NodesConfig) (*NodesCommitter, error) {
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("no nodes given")
	}
	for i, n := range cfg.Nodes {
		if !strings.HasPrefix(n, "http://") && !strings.HasPrefix(n, "https://") {
			n = "http://" + n
		}
		cfg.Nodes[i] = strings.TrimSuffix(n, "/")
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 32 << 20
	}
	if cfg.DirectoryTTL == 0 {
		cfg.DirectoryTTL = 5 * time.Second
	}
	if cfg.DirectoryCacheSize <= 0 {
		cfg.DirectoryCacheSize = 10_000
	}
	if cfg.LookupReserve <= 0 {
		cfg.LookupReserve = 2 * time.Second
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	codec, err := raftstore.NewCodec(cfg.MaxMessageBytes)
	if err != nil {
		return nil, err
	}
	return &NodesCommitter{cfg: cfg, client: cluster.NewClientTLS(cfg.Token, cfg.TLS), codec: codec,
		logger: cfg.Logger.With("component", "nodes"),
		dir:    newDirCache(cfg.DirectoryTTL, cfg.DirectoryCacheSize)}, nil
}

// Close releases the codec and idle connections.
func (n *NodesCommitter) Close() {
	n.client.Close()
	n.codec.Close()
}

// Codec implements frontends.Committer.
func (n *NodesCommitter) Codec() *raftstore.Codec { return n.codec }

// anyNodes returns the configured nodes, starting one further each call:
// reads (directory, logins, key lookups) are answered by any node, so they
// spread over all of them and never wait on the leader hint, which names
// an address learned from the cluster that may have just died (a killed
// container's IP hangs a connect until the deadline).
func (n *NodesCommitter) anyNodes() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]string, len(n.cfg.Nodes))
	for i := range n.cfg.Nodes {
		out[i] = n.cfg.Nodes[(n.next+i)%len(n.cfg.Nodes)]
	}
	n.next++
	return out
}

// targets returns the nodes to try for a commit, the known leader first.
func (n *NodesCommitter) targets() []string {
	n.mu.Lock()
	leader := n.leader
	n.mu.Unlock()
	nodes := n.anyNodes()
	if leader == "" {
		return nodes
	}
	return append([]string{leader}, slices.DeleteFunc(nodes, func(u string) bool { return u == leader })...)
}

func (n *NodesCommitter) setLeader(u string) {
	n.mu.Lock()
	n.leader = u
	n.mu.Unlock()
}

// forgetLeader drops the hint if it still names u, which just failed: the
// commits that follow go round the configured nodes (any of them forwards
// and names the new leader) instead of each waiting AttemptTimeout on it.
func (n *NodesCommitter) forgetLeader(u string) {
	n.mu.Lock()
	if n.leader == u {
		n.leader = ""
	}
	n.mu.Unlock()
}

// refreshLeader asks the nodes for the current leader (the first answer
// naming one wins), starting one node further each time and giving each
// at most leaderProbeEvery: a frozen node first in the list used to take
// the whole second this had.
func (n *NodesCommitter) refreshLeader(ctx context.Context) {
	n.setLeader(n.othersLeader(ctx, "", leaderProbeEvery))
}

// moveOn reports whether an error from one node is worth trying another
// node for: the node did not answer, or answered "unavailable" (shutting
// down, no leader reachable from it). A refusal of the request itself
// (too large, malformed, a business error) is final.
func moveOn(err error) bool {
	var ae *cluster.APIError
	if errors.As(err, &ae) {
		switch {
		case ae.Status == http.StatusServiceUnavailable, ae.Status == http.StatusBadGateway,
			ae.Status == http.StatusGatewayTimeout, ae.Status >= 500 && ae.Code == "internal":
			return true
		}
		return false
	}
	return !errors.Is(err, context.Canceled)
}

// Commit implements frontends.Committer. A node retries across leader
// changes by itself until our deadline (it gets it in a header); we move to
// another node only when one does not answer. When the deadline nears
// without a commit, the remaining reserve is spent asking whether the key
// committed anyway (raft's ErrLeadershipLost is indeterminate): if it did,
// its result is returned (DESIGN.md invariant 2).
func (n *NodesCommitter) Commit(ctx context.Context, data []byte) (raftstore.Result, error) {
	key, err := command.PeekKey(data)
	if err != nil {
		return raftstore.Result{}, err
	}
	commitCtx, cancel := n.reserve(ctx)
	defer cancel()
	backoff := 20 * time.Millisecond
	var lastErr error
rounds:
	for attempt := 0; commitCtx.Err() == nil; attempt++ {
		for _, u := range n.targets() {
			res, leader, err := n.commitAt(commitCtx, u, data)
			if err == nil {
				if leader = strings.TrimSuffix(leader, "/"); leader != "" && leader != u {
					n.setLeader(leader) // it forwarded: go straight there next time
				}
				if attempt > 0 || lastErr != nil {
					n.logger.Info("commit succeeded after failover", "node", u, "key", key, "raft_index", res.Index)
				}
				return res, nil
			}
			if errors.Is(err, errLeaderMoved) {
				lastErr = err
				n.logger.Info("commit attempt abandoned: the other nodes follow a new leader", "node", u, "key", key)
				continue rounds // at once: targets() now starts with the new leader
			}
			if !moveOn(err) {
				return res, err
			}
			n.forgetLeader(u)
			lastErr = err
			n.logger.Debug("commit attempt failed", "node", u, "key", key, "err", err)
			if commitCtx.Err() != nil {
				break
			}
		}
		n.refreshLeader(commitCtx)
		select {
		case <-commitCtx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return raftstore.Result{}, ctx.Err()
	}
	if res, ok := n.lookupKey(ctx, key); ok {
		n.logger.Info("commit timed out but key had committed", "key", key, "raft_index", res.Index)
		return res, nil
	}
	if lastErr == nil {
		lastErr = commitCtx.Err()
	}
	return raftstore.Result{}, fmt.Errorf("commit %s: %w: %w", key, cluster.ErrUnavailable, lastErr)
}

// errLeaderMoved ends a commit attempt at the hinted leader once the other
// nodes name another one.
var errLeaderMoved = errors.New("the other nodes follow a new leader")

// commitAt makes one attempt at node u, bounded by AttemptTimeout. When u
// is the leader this frontend last learned, the attempt also ends as soon
// as the other nodes name a different leader: a leader that froze, or is
// cut off from its peers but not from us, would otherwise hold the
// delivery for the whole AttemptTimeout after the cluster has elected
// another (the chaos harness's longest write stall). A healthy leader that
// is merely slow (a large message) keeps its attempt: the others still
// name it.
func (n *NodesCommitter) commitAt(ctx context.Context, u string, data []byte) (raftstore.Result, string, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ctx, cancelT := context.WithTimeout(ctx, n.cfg.AttemptTimeout)
	defer cancelT()
	n.mu.Lock()
	hinted := u == n.leader
	n.mu.Unlock()
	if hinted {
		go n.watchLeader(ctx, u, cancel)
	}
	res, leader, err := n.client.CommitVia(ctx, u, data)
	if err != nil && errors.Is(context.Cause(ctx), errLeaderMoved) {
		return res, leader, fmt.Errorf("commit at %s: %w", u, errLeaderMoved)
	}
	return res, leader, err
}

// leaderProbeEvery is how often an attempt at the hinted leader that has
// not answered asks the other nodes who leads; a quarter of AttemptTimeout
// when that is shorter.
const leaderProbeEvery = 500 * time.Millisecond

// watchLeader asks the nodes other than u who leads, every probe period
// while the attempt at u runs, and cancels the attempt (errLeaderMoved)
// once one names a different leader, which becomes the hint.
func (n *NodesCommitter) watchLeader(ctx context.Context, u string, cancel context.CancelCauseFunc) {
	every := min(leaderProbeEvery, n.cfg.AttemptTimeout/4)
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if l := n.othersLeader(ctx, u, every); l != "" && l != u {
			n.setLeader(l)
			cancel(errLeaderMoved)
			return
		}
		t.Reset(every)
	}
}

// othersLeader returns the leader API that the first node other than u to
// answer /status names ("" if none answers or none names one), each asked
// for at most timeout.
func (n *NodesCommitter) othersLeader(ctx context.Context, u string, timeout time.Duration) string {
	for _, node := range n.anyNodes() {
		if node == u {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, timeout)
		st, err := n.client.Status(sctx, node)
		cancel()
		if err == nil && st.LeaderAPI != "" {
			return strings.TrimSuffix(st.LeaderAPI, "/")
		}
	}
	return ""
}

// reserve derives the commit context, keeping part of ctx's deadline for
// the key lookup.
func (n *NodesCommitter) reserve(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	r := min(n.cfg.LookupReserve, time.Until(dl)/3)
	return context.WithDeadline(ctx, dl.Add(-r))
}

// lookupKey asks the nodes (each forwards to the leader, which answers
// after a barrier) whether key committed, within what is left of ctx.
func (n *NodesCommitter) lookupKey(ctx context.Context, key string) (raftstore.Result, bool) {
	for _, u := range n.anyNodes() {
		if ctx.Err() != nil {
			break
		}
		actx, cancel := context.WithTimeout(ctx, n.cfg.AttemptTimeout)
		res, found, err := n.client.Lookup(actx, u, key)
		cancel()
		if err == nil {
			return res, found
		}
		n.logger.Debug("key lookup failed", "node", u, "key", key, "err", err)
	}
	return raftstore.Result{}, false
}

// LookupRecipient implements frontends.Committer from any node, cached
// for DirectoryTTL.
func (n *NodesCommitter) LookupRecipient(ctx context.Context, addr string) (frontends.Directory, error) {
	norm, err := raftstore.NormalizeAddress(addr)
	if err != nil {
		return frontends.Directory{}, err
	}
	if d, ok := n.dir.get(norm); ok {
		return d, nil
	}
	var lastErr error
	for _, u := range n.anyNodes() {
		actx, cancel := context.WithTimeout(ctx, n.cfg.AttemptTimeout)
		d, err := n.client.Directory(actx, u, norm)
		cancel()
		if err == nil {
			n.dir.put(norm, d)
			return d, nil
		}
		if !moveOn(err) {
			return d, err
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return frontends.Directory{}, fmt.Errorf("directory %s: %w", norm, lastErr)
}

// Authenticate implements Authenticator with POST /internal/auth on any
// node: 200 {"account"} or 401 {"error":"auth_failed"}.
func (n *NodesCommitter) Authenticate(ctx context.Context, user, pass string) (string, error) {
	body := map[string]string{"user": user, "password": pass}
	var lastErr error
	for _, u := range n.anyNodes() {
		var out struct {
			Account string `json:"account"`
		}
		actx, cancel := context.WithTimeout(ctx, n.cfg.AttemptTimeout)
		err := n.client.Do(actx, http.MethodPost, u, "/internal/auth", body, &out)
		cancel()
		if err == nil {
			return out.Account, nil
		}
		var ae *cluster.APIError
		if errors.As(err, &ae) && ae.Code == "auth_failed" {
			return "", ErrAuthFailed
		}
		if !moveOn(err) {
			return "", err
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return "", fmt.Errorf("authenticate: %w", lastErr)
}

// dirCache is a small TTL cache of directory answers. When full, expired
// entries go first, then arbitrary ones (map order): it is a cache, not a
// record.
type dirCache struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[string]dirEntry
}

type dirEntry struct {
	d       frontends.Directory
	expires time.Time
}

func newDirCache(ttl time.Duration, max int) *dirCache {
	return &dirCache{ttl: ttl, max: max, m: make(map[string]dirEntry)}
}

func (c *dirCache) get(addr string) (frontends.Directory, bool) {
	if c.ttl < 0 {
		return frontends.Directory{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[addr]
	if !ok || time.Now().After(e.expires) {
		return frontends.Directory{}, false
	}
	return e.d, true
}

func (c *dirCache) put(addr string, d frontends.Directory) {
	if c.ttl < 0 {
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k, e := range c.m {
			if now.After(e.expires) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < c.max*3/4 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[addr] = dirEntry{d: d, expires: now.Add(c.ttl)}
}
