// Package raftstore is raftmail's replicated state machine: the commands,
// the FSM over bbolt, snapshots and the local read API. It knows nothing of
// SMTP, IMAP or POP3. See DESIGN.md beside this file.
package raftstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/raftmail/raftmail/raftstore/command"
)

// Config configures a Store. Zero values take the defaults noted.
type Config struct {
	// ID is this node's raft server ID (required).
	ID string
	// Dir holds raft.db (log and stable store), state.db (the FSM) and
	// snapshots/ (required).
	Dir string
	// RaftAddr is the TCP address raft binds and advertises (required
	// unless Transport is set). It must be reachable by the other nodes.
	RaftAddr string
	// Transport replaces the default TCP transport (e.g. mutual TLS).
	Transport raft.Transport

	// Raft timing, tuned for a LAN (docs/operations.md). Defaults:
	// heartbeat and election 1s, leader lease 500ms, commit 20ms.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	LeaderLease      time.Duration
	CommitTimeout    time.Duration
	// MaxAppendEntries bounds entries per AppendEntries RPC (default 32).
	MaxAppendEntries int
	// TrailingLogs is how many entries stay in the log after a snapshot
	// (default 1024).
	TrailingLogs uint64
	// Snapshots (snapshotpolicy.go). SnapshotInterval is how often the
	// triggers are checked (default 1s); SnapshotThreshold the entry
	// count trigger (default 4096); SnapshotBytes the log-bytes trigger
	// (default 256 MiB). Either fires only once the log since the last
	// snapshot holds SnapshotStatePercent of the state it copied (default
	// 50; negative: no such floor), because a snapshot copies the whole
	// state and its cost grows with the mail store.
	SnapshotInterval     time.Duration
	SnapshotThreshold    uint64
	SnapshotBytes        int64
	SnapshotStatePercent int
	// SnapshotRetain is how many snapshots are kept on disk (default 2).
	SnapshotRetain int
	// MaxEntryBytes refuses larger commands (default 48 MiB).
	MaxEntryBytes int
	// MaxBodyBytes bounds decompressed bodies (default 64 MiB).
	MaxBodyBytes int64
	// BodyCacheBytes bounds the cache of decompressed bodies that IMAP,
	// POP3 and SEARCH read through (default 64 MiB; negative disables it).
	// Bodies larger than 1/16 of it are not cached.
	BodyCacheBytes int64
	// LogNoSync skips the raft log's fsync. Tests only: a crash can lose
	// acknowledged entries.
	LogNoSync bool
	// StateSyncPerBatch fsyncs the state file at every apply batch. Off by
	// default: the state file is a cache of the snapshot and the raft log
	// (which is fsynced before any write is acknowledged), synced at Close
	// and rebuilt after a machine restart that followed an unclean stop
	// (statemark.go; measured in docs/storage.md).
	StateSyncPerBatch bool
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
	// RaftLogLevel is hashicorp/raft's level (default "info").
	RaftLogLevel string
	// Observer receives snapshot events for metrics (nil: none).
	Observer Observer
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, time.Second)
	def(&c.ElectionTimeout, time.Second)
	def(&c.LeaderLease, 500*time.Millisecond)
	def(&c.CommitTimeout, 20*time.Millisecond)
	def(&c.SnapshotInterval, time.Second)
	if c.MaxAppendEntries == 0 {
		c.MaxAppendEntries = 32
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 1024
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 4096
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = 256 << 20
	}
	if c.SnapshotStatePercent == 0 {
		c.SnapshotStatePercent = 50
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = 2
	}
	if c.MaxEntryBytes == 0 {
		c.MaxEntryBytes = 48 << 20
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 64 << 20
	}
	if c.BodyCacheBytes == 0 {
		c.BodyCacheBytes = 64 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RaftLogLevel == "" {
		c.RaftLogLevel = "info"
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.ID == "" || c.Dir == "" {
		return errors.New("raftstore: ID and Dir are required")
	}
	if c.Transport == nil && c.RaftAddr == "" {
		return errors.New("raftstore: RaftAddr or Transport is required")
	}
	return nil
}

// Store owns the raft node, its log and snapshot stores, and the FSM.
type Store struct {
	cfg     Config
	logger  *slog.Logger
	raft    *raft.Raft
	logs    *raftboltdb.BoltStore
	snaps   *raft.FileSnapshotStore
	trans   raft.Transport
	fsm     *fsm
	codec   *Codec
	rebuilt bool // Open discarded an untrusted state file
	bodies  *bodyCache
	auth    *authCache
	closeMu sync.Mutex
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup

	leaderMu      sync.Mutex
	leaderChanged chan struct{} // closed and replaced on every leader change
}

// Open opens (or creates) a node's stores and starts raft. A fresh node
// waits for Bootstrap or for a leader to add it.
func Open(cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger.With("component", "raftstore", "node", cfg.ID)
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	s := &Store{cfg: cfg, logger: logger, stop: make(chan struct{})}
	var err error
	if s.codec, err = NewCodec(cfg.MaxBodyBytes); err != nil {
		return nil, err
	}
	s.auth = newAuthCache()
	s.bodies = newBodyCache(cfg.BodyCacheBytes)
	if err := s.openStores(); err != nil {
		s.closeStores()
		return nil, err
	}
	if err := s.startRaft(); err != nil {
		s.closeStores()
		return nil, err
	}
	s.startLeaderWatch()
	s.wg.Add(2)
	go s.snapshotWhenDue()
	go s.invalidateAuth()
	return s, nil
}

func (s *Store) openStores() error {
	var err error
	s.logs, err = raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(s.cfg.Dir, "raft.db"),
		NoSync:      s.cfg.LogNoSync,
		BoltOptions: boltOptions(),
	})
	if err != nil {
		return fmt.Errorf("open raft log: %w", err)
	}
	s.snaps, err = raft.NewFileSnapshotStoreWithLogger(s.cfg.Dir, s.cfg.SnapshotRetain, newHclog(s.logger, hclog.Warn))
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	if err := s.checkState(); err != nil {
		return err
	}
	s.fsm, err = openFSM(filepath.Join(s.cfg.Dir, "state.db"), !s.cfg.StateSyncPerBatch, s.logger)
	if err != nil {
		return err
	}
	if metas, err := s.snaps.List(); err == nil && len(metas) > 0 {
		// The compressed size: smaller than the state it copied, so at
		// worst the first snapshot after a restart comes early.
		s.fsm.setSnap(metas[0].Index, metas[0].Size)
	}
	if s.cfg.StateSyncPerBatch {
		// Whatever an earlier no-sync run left in the page cache goes to
		// disk before the marker promises a consistent file.
		if err := s.fsm.sync(); err != nil {
			return err
		}
		if err := writeStateMark(s.cfg.Dir, "sync"); err != nil {
			return err
		}
	}
	return s.catchUpFromSnapshot()
}

// checkState discards a state file that cannot be trusted (see
// statemark.go), so that it is rebuilt from the newest snapshot and the
// log, and marks the state file in use before anything writes to it.
func (s *Store) checkState() error {
	path := filepath.Join(s.cfg.Dir, "state.db")
	if _, err := os.Stat(path); err == nil {
		if ok, why := stateTrusted(s.cfg.Dir); !ok {
			s.logger.Warn("discarding the state file; rebuilding it from the newest snapshot and the raft log", "reason", why, "path", path)
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("discard untrusted state: %w", err)
			}
			s.rebuilt = true
		}
	}
	if s.cfg.StateSyncPerBatch {
		return nil // marked "sync" once the file is synced
	}
	return writeStateMark(s.cfg.Dir, runningMark())
}

// RebuiltState reports whether Open discarded an untrusted state file.
func (s *Store) RebuiltState() bool { return s.rebuilt }

// catchUpFromSnapshot restores the newest snapshot into the state file if
// the state is older than it. Raft runs with NoSnapshotRestoreOnStart (a
// restart must not copy the whole mail store), so this is the one place that
// makes sure no committed entry below the snapshot index is hidden
// (rqlite#2747).
func (s *Store) catchUpFromSnapshot() error {
	metas, err := s.snaps.List()
	if err != nil || len(metas) == 0 {
		return err
	}
	applied, _ := s.fsm.appliedIndex()
	if applied >= metas[0].Index {
		return nil
	}
	s.logger.Info("state is behind the latest snapshot, restoring", "applied", applied, "snapshot_index", metas[0].Index)
	_, rc, err := s.snaps.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", metas[0].ID, err)
	}
	return s.fsm.Restore(rc)
}

func (s *Store) startRaft() error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.ID)
	rc.HeartbeatTimeout = s.cfg.HeartbeatTimeout
	rc.ElectionTimeout = s.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = s.cfg.LeaderLease
	rc.CommitTimeout = s.cfg.CommitTimeout
	rc.MaxAppendEntries = s.cfg.MaxAppendEntries
	rc.TrailingLogs = s.cfg.TrailingLogs
	// raft's own trigger counts entries only; snapshotWhenDue decides
	// (snapshotpolicy.go), so raft's is set out of reach.
	rc.SnapshotInterval = time.Hour
	rc.SnapshotThreshold = math.MaxUint64
	rc.NoSnapshotRestoreOnStart = true
	rc.Logger = newHclog(s.logger, hclog.LevelFromString(s.cfg.RaftLogLevel))
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("raft config: %w", err)
	}
	s.trans = s.cfg.Transport
	if s.trans == nil {
		addr, err := net.ResolveTCPAddr("tcp", s.cfg.RaftAddr)
		if err != nil {
			return fmt.Errorf("raft address %q: %w", s.cfg.RaftAddr, err)
		}
		t, err := raft.NewTCPTransportWithLogger(s.cfg.RaftAddr, addr, 4, 10*time.Second, newHclog(s.logger, hclog.Warn))
		if err != nil {
			return fmt.Errorf("raft transport: %w", err)
		}
		s.trans = t
	}
	cache, err := raft.NewLogCache(512, s.logs)
	if err != nil {
		return err
	}
	trans, stopClamp := guardTransport(s.trans)
	r, err := raft.NewRaft(rc, s.fsm, cache, s.logs, s.snapshotStore(), trans)
	if err != nil {
		stopClamp()
		return fmt.Errorf("start raft: %w", err)
	}
	s.raft = r
	return nil
}

// Bootstrap makes this node the first member of a new cluster. It is a no-op
// on a node that already has state.
func (s *Store) Bootstrap() error {
	err := s.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
		ID: raft.ServerID(s.cfg.ID), Address: s.trans.LocalAddr(),
	}}}).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		return nil
	}
	return err
}

// ID returns this node's ID.
func (s *Store) ID() string { return s.cfg.ID }

// RaftAddr returns the advertised raft address.
func (s *Store) RaftAddr() string { return string(s.trans.LocalAddr()) }

// Codec returns the store's body codec.
func (s *Store) Codec() *Codec { return s.codec }

// Raft exposes the raft node for membership and status.
func (s *Store) Raft() *raft.Raft { return s.raft }

// IsLeader reports whether this node is the leader.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the current leader's ID and raft address ("" if none known).
func (s *Store) Leader() (id, addr string) {
	a, i := s.raft.LeaderWithID()
	return string(i), string(a)
}

// State returns the raft state as text: Leader, Follower, Candidate, Shutdown.
func (s *Store) State() string { return s.raft.State().String() }

// Apply proposes an encoded command on the leader, stamping the leader's
// clock into it, and waits until it is committed on a majority and applied
// here. ErrNotLeader: forward it. Any other error leaves the outcome unknown
// (raft.ErrLeadershipLost may still commit): retry with the same key.
func (s *Store) Apply(ctx context.Context, data []byte) (Result, error) {
	if len(data) > s.cfg.MaxEntryBytes {
		return Result{}, fmt.Errorf("%w: %d bytes exceeds %d", ErrTooLarge, len(data), s.cfg.MaxEntryBytes)
	}
	// Decode before proposing: every node stops on a committed entry that
	// does not decode (fsm.fatalf), so one malformed command must never
	// reach the log.
	if _, err := command.Unmarshal(data); err != nil {
		return Result{}, fmt.Errorf("apply: %w", err)
	}
	if s.raft.State() != raft.Leader {
		return Result{}, ErrNotLeader
	}
	_ = command.StampTime(data, time.Now().UnixNano())
	timeout := 30 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if len(data) > 1<<20 {
		s.logger.Debug("large raft entry", "bytes", len(data))
	}
	f := s.raft.Apply(data, timeout)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			if errors.Is(err, raft.ErrNotLeader) {
				return Result{}, ErrNotLeader
			}
			return Result{}, fmt.Errorf("raft apply: %w", err)
		}
	case <-ctx.Done():
		return Result{}, fmt.Errorf("raft apply: %w", ctx.Err())
	}
	res, ok := f.Response().(Result)
	if !ok {
		return Result{}, fmt.Errorf("raft apply: unexpected response %T", f.Response())
	}
	return res, nil
}

// ApplyCommand encodes and applies a command (leader only).
func (s *Store) ApplyCommand(ctx context.Context, c *command.Command) (Result, error) {
	data, err := command.Marshal(c)
	if err != nil {
		return Result{}, err
	}
	return s.Apply(ctx, data)
}

// AppliedIndex returns the index of the last entry applied to this node's
// state.
func (s *Store) AppliedIndex() uint64 {
	i, _ := s.fsm.appliedIndex()
	return i
}

// WaitApplied waits until this node has applied the entry at index, for
// read-your-writes on a follower (DESIGN.md invariant 4).
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	for {
		cur, ch := s.fsm.appliedIndex()
		if cur >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (applied %d): %w", index, cur, ctx.Err())
		case <-s.stop:
			return ErrClosed
		}
	}
}

// Subscribe returns this node's change feed, in apply order.
func (s *Store) Subscribe(buf int) (<-chan Change, func()) { return s.fsm.feed.subscribe(buf) }

// Barrier waits until every entry committed before it is applied (leader).
func (s *Store) Barrier(timeout time.Duration) error {
	if err := s.raft.Barrier(timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return ErrNotLeader
		}
		return fmt.Errorf("barrier: %w", err)
	}
	return nil
}

// AddVoter adds a node as a voter (leader only).
func (s *Store) AddVoter(id, addr string, timeout time.Duration) error {
	cfg := s.raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		return err
	}
	for _, srv := range cfg.Configuration().Servers {
		if srv.ID == raft.ServerID(id) && srv.Address == raft.ServerAddress(addr) && srv.Suffrage == raft.Voter {
			return nil
		}
	}
	if err := s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return ErrNotLeader
		}
		return fmt.Errorf("add voter %s: %w", id, err)
	}
	return nil
}

// RemoveServer removes a node from the cluster (leader only).
func (s *Store) RemoveServer(id string, timeout time.Duration) error {
	if err := s.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return ErrNotLeader
		}
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	return nil
}

// Servers returns the raft configuration's members.
func (s *Store) Servers() ([]raft.Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Configuration().Servers, nil
}

// Snapshot forces a snapshot now (log compaction follows).
func (s *Store) Snapshot() error {
	if err := s.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// Close shuts raft down and closes the stores.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.stop)
	var err error
	if s.raft != nil {
		err = s.raft.Shutdown().Error()
	}
	s.wg.Wait()
	if nt, ok := s.trans.(*raft.NetworkTransport); ok {
		// Close pooled outbound connections too, so the peers' reader
		// goroutines see EOF instead of waiting forever.
		nt.CloseStreams()
	}
	if c, ok := s.trans.(raft.WithClose); ok {
		_ = c.Close()
	}
	s.closeStores()
	return err
}

func (s *Store) closeStores() {
	if s.fsm != nil {
		// close syncs a no-sync state file; only then is it clean.
		if err := s.fsm.close(); err == nil && s.fsm.noSync {
			if err := writeStateMark(s.cfg.Dir, "nosync clean"); err != nil {
				s.logger.Warn("state file synced but not marked clean; the next start after a reboot rebuilds it", "err", err)
			}
		}
	}
	if s.logs != nil {
		_ = s.logs.Close()
	}
	if s.codec != nil {
		s.codec.Close()
	}
}
