// Package cluster wires a mailbox node: the raft store, leader forwarding,
// membership and the node's HTTP API. Protocol servers get the node through
// the frontends.Store interface. See DESIGN.md beside this file.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// ErrUnavailable means the cluster could not commit in time (no leader, no
// quorum). The command may still commit later; its idempotency key makes a
// retry safe. Frontends answer 451 4.3.0 / NO [UNAVAILABLE].
var ErrUnavailable = errors.New("cluster unavailable: cannot commit")

// Config configures a node.
type Config struct {
	// ID is the node's raft server ID.
	ID string
	// DataDir holds the node's raft log, state and snapshots.
	DataDir string
	// RaftAddr is the raft transport's bind and advertise address.
	RaftAddr string
	// HTTPAddr is the API listener; APIAdvertise the URL base other nodes
	// use (default "http://" + HTTPAddr).
	HTTPAddr     string
	APIAdvertise string
	// Bootstrap makes this node the first member of a new cluster.
	Bootstrap bool
	// Join lists API URLs of existing members to join through.
	Join []string
	// Token is the bearer token for admin and cluster calls. Without
	// Dev, calls need it; with Dev, loopback callers need none.
	Token string
	Dev   bool
	// CommitTimeout bounds a write before it answers ErrUnavailable
	// (default 30s).
	CommitTimeout time.Duration
	// ForwardAttemptTimeout bounds one forwarded attempt to the leader
	// before the node looks for the leader again and retries (default 3s).
	ForwardAttemptTimeout time.Duration
	// Store tunes the raft store (ID, Dir and RaftAddr are filled in).
	Store raftstore.Config
	// Logger receives structured logs.
	Logger *slog.Logger
	// TLS, when set, runs the raft transport and the API over mutual TLS
	// (tls.go); callers with a certificate of the cluster CA need no token.
	TLS *MutualTLS
	// Metrics, when set, receives the node's Prometheus collectors and is
	// served at /metrics (metrics.go).
	Metrics *prometheus.Registry
	// ReadyMaxLag is the applied lag in entries up to which /readyz
	// answers ready (default 1000).
	ReadyMaxLag uint64
}

func (c *Config) setDefaults() {
	if c.CommitTimeout == 0 {
		c.CommitTimeout = 30 * time.Second
	}
	if c.ForwardAttemptTimeout == 0 {
		c.ForwardAttemptTimeout = 3 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ReadyMaxLag == 0 {
		c.ReadyMaxLag = 1000
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.ID == "" || c.DataDir == "" || c.RaftAddr == "" || c.HTTPAddr == "" {
		return errors.New("cluster: id, data dir, raft and http addresses are required")
	}
	if c.Bootstrap && len(c.Join) > 0 {
		return errors.New("cluster: --bootstrap and --join exclude each other")
	}
	return nil
}

// Node is one mailbox node. It implements frontends.Store.
type Node struct {
	cfg     Config
	logger  *slog.Logger
	store   *raftstore.Store
	client  *Client
	api     *http.Server
	apiLn   net.Listener
	apiURL  string
	metrics *nodeMetrics

	bayesFilter bayesFilterCache // GET /internal/bayes/filter

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	_ frontends.Store     = (*Node)(nil)
	_ frontends.Committer = (*Node)(nil)
)

// Open starts a node: the store, the API listener, and bootstrap or join in
// the background. It returns once the API is listening.
func Open(cfg Config) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ln, err := cfg.listenAPI()
	if err != nil {
		return nil, err
	}
	sc := cfg.Store
	if sc.Transport, err = cfg.raftTransport(); err != nil {
		ln.Close()
		return nil, err
	}
	metrics := newNodeMetrics(cfg.Metrics)
	if metrics != nil {
		sc.Observer = metrics
	}
	sc.ID, sc.Dir, sc.RaftAddr = cfg.ID, cfg.DataDir, cfg.RaftAddr
	if sc.Logger == nil {
		sc.Logger = cfg.Logger
	}
	st, err := raftstore.Open(sc)
	if err != nil {
		ln.Close()
		if c, ok := sc.Transport.(raft.WithClose); ok && cfg.Store.Transport == nil {
			_ = c.Close()
		}
		return nil, err
	}
	n := &Node{
		cfg:     cfg,
		logger:  cfg.Logger.With("component", "cluster", "node", cfg.ID),
		store:   st,
		client:  NewClientTLS(cfg.Token, cfg.TLS),
		apiLn:   ln,
		apiURL:  cfg.APIAdvertise,
		metrics: metrics,
	}
	if n.apiURL == "" {
		n.apiURL = cfg.apiScheme() + ln.Addr().String()
	}
	if err := metrics.register(cfg.Metrics, n); err != nil {
		ln.Close()
		st.Close()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.api = &http.Server{Handler: n.routes(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(n.logger.Handler(), slog.LevelWarn)}
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		if err := n.api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("api server stopped", "err", err)
		}
	}()
	go n.watchLeadership()
	if cfg.Bootstrap {
		if err := st.Bootstrap(); err != nil {
			n.Close()
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	}
	if len(cfg.Join) > 0 {
		n.wg.Add(1)
		go n.joinLoop()
	}
	return n, nil
}

// Store returns the raft store.
func (n *Node) Store() *raftstore.Store { return n.store }

// APIURL returns the URL base of this node's API.
func (n *Node) APIURL() string { return n.apiURL }

// NodeID implements frontends.Store.
func (n *Node) NodeID() string { return n.cfg.ID }

// Codec implements frontends.Store.
func (n *Node) Codec() *raftstore.Codec { return n.store.Codec() }

// View implements frontends.Store.
func (n *Node) View(fn func(*raftstore.ReadTx) error) error { return n.store.View(fn) }

// WaitApplied implements frontends.Store.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	return n.store.WaitApplied(ctx, index)
}

// Barrier returns once every entry committed before it is applied on
// this node; only the leader can answer (raftstore.ErrNotLeader).
func (n *Node) Barrier(timeout time.Duration) error { return n.store.Barrier(timeout) }

// Subscribe implements frontends.Store.
func (n *Node) Subscribe(buf int) (<-chan raftstore.Change, func()) { return n.store.Subscribe(buf) }

// Authenticate implements frontends.Store.
func (n *Node) Authenticate(user, pass string) (string, error) {
	return n.store.Authenticate(user, pass)
}

// Close stops the API and the store. Idempotent.
func (n *Node) Close() error {
	if n.cancel == nil {
		return nil
	}
	n.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := n.api.Shutdown(ctx); err != nil {
		// Requests still running after the grace period (or a
		// connection that never sent one: net/http counts a new,
		// silent connection as active for 5 s) are cut, not left open.
		_ = n.api.Close()
	}
	err := n.store.Close()
	n.wg.Wait()
	n.client.Close()
	return err
}

// Propose implements frontends.Store: commit through the leader, then wait
// until this node has applied the entry (read-your-writes).
func (n *Node) Propose(ctx context.Context, c *command.Command) (raftstore.Result, error) {
	if c.Key == "" {
		c.Key = command.NewKey()
	}
	data, err := command.Marshal(c)
	if err != nil {
		return raftstore.Result{}, err
	}
	res, err := n.Commit(ctx, data)
	if err != nil {
		return res, err
	}
	wctx, cancel := n.withTimeout(ctx)
	defer cancel()
	if err := n.store.WaitApplied(wctx, res.Index); err != nil {
		return res, fmt.Errorf("%w: committed at %d but not yet applied here: %v", ErrUnavailable, res.Index, err)
	}
	return res, nil
}

func (n *Node) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, n.cfg.CommitTimeout)
}
