package raftstore

import (
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Observer receives storage events for metrics (Config.Observer). Methods
// must return quickly; nil means nobody observes.
type Observer interface {
	// SnapshotPersisted reports one snapshot written to the snapshot
	// store: its compressed size and how long it took from creation to
	// close (err non-nil if it was cancelled or failed).
	SnapshotPersisted(bytes int64, took time.Duration, err error)
}

// HclogAdapter lets hashicorp/raft components built outside this package
// (a TLS transport) log through slog at warn level and above.
func HclogAdapter(l *slog.Logger) hclog.Logger { return newHclog(l, hclog.Warn) }

// snapshotStore is the snapshot store raft uses: the file store, observed.
func (s *Store) snapshotStore() raft.SnapshotStore {
	if s.cfg.Observer == nil {
		return s.snaps
	}
	return observedSnapshots{FileSnapshotStore: s.snaps, obs: s.cfg.Observer}
}

// observedSnapshots measures each snapshot raft writes (size and time from
// Create to Close, which spans FSMSnapshot.Persist).
type observedSnapshots struct {
	*raft.FileSnapshotStore
	obs Observer
}

func (o observedSnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := o.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		o.obs.SnapshotPersisted(0, 0, err)
		return nil, err
	}
	return &observedSink{SnapshotSink: sink, obs: o.obs, start: time.Now()}, nil
}

type observedSink struct {
	raft.SnapshotSink
	obs   Observer
	start time.Time
	n     int64
}

func (s *observedSink) Write(p []byte) (int, error) {
	n, err := s.SnapshotSink.Write(p)
	s.n += int64(n)
	return n, err
}

func (s *observedSink) Close() error {
	err := s.SnapshotSink.Close()
	s.obs.SnapshotPersisted(s.n, time.Since(s.start), err)
	return err
}

func (s *observedSink) Cancel() error {
	err := s.SnapshotSink.Cancel()
	s.obs.SnapshotPersisted(s.n, time.Since(s.start), errSnapshotCancelled)
	return err
}

var errSnapshotCancelled = errors.New("snapshot cancelled")

var _ io.Writer = (*observedSink)(nil)
