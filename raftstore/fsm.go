package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/raftmail/raftmail/raftstore/command"
)

// fsm is the raft.BatchingFSM over the state bbolt file. Every batch is one
// bbolt transaction that also records the applied index and term, so a
// restart skips entries it has already applied (hashicorp/raft#523).
type fsm struct {
	path   string
	noSync bool
	logger *slog.Logger
	feed   *feed
	// maxBatchBytes bounds one bbolt transaction; larger batches split.
	maxBatchBytes int

	mu sync.RWMutex // guards db against the swap in Restore
	db *bolt.DB

	appliedMu   sync.Mutex
	applied     uint64
	appliedCond chan struct{} // closed and replaced on every advance

	// What the snapshot policy needs (snapshotpolicy.go): the applied
	// index of the newest snapshot written or restored and the size of
	// the state it copied, and the entries this process applied with
	// their bytes, for the average entry size.
	sinceMu   sync.Mutex
	snapIndex uint64
	snapSize  int64
	seen      logSince
}

var _ raft.BatchingFSM = (*fsm)(nil)

func boltOptions() *bolt.Options {
	return &bolt.Options{
		Timeout:         5 * time.Second,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: 1 << 30, // virtual only; avoids re-mmap stalls under long snapshot reads
	}
}

func openFSM(path string, noSync bool, logger *slog.Logger) (*fsm, error) {
	f := &fsm{path: path, noSync: noSync, logger: logger, feed: newFeed(),
		maxBatchBytes: 64 << 20, appliedCond: make(chan struct{})}
	idx, err := f.open()
	if err != nil {
		return nil, err
	}
	f.resetApplied(idx)
	return f, nil
}

// open opens the state file and returns its applied index.
func (f *fsm) open() (uint64, error) {
	db, err := bolt.Open(f.path, 0o600, boltOptions())
	if err != nil {
		return 0, fmt.Errorf("open state %s: %w", f.path, err)
	}
	db.NoSync = f.noSync
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		if v := meta.Get(kFormat); v != nil && !bytes.Equal(v, kFormatVersion1) {
			return fmt.Errorf("state format %x is not supported by this version", v)
		}
		return meta.Put(kFormat, kFormatVersion1)
	})
	if err != nil {
		db.Close()
		return 0, fmt.Errorf("init state %s: %w", f.path, err)
	}
	var idx uint64
	_ = db.View(func(tx *bolt.Tx) error { idx = getU64(tx.Bucket(bMeta), kAppliedIndex); return nil })
	f.db = db
	return idx, nil
}

// close closes the state file, syncing it first when it runs without a
// per-batch fsync. An error means the file may not be on disk whole.
func (f *fsm) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return nil
	}
	var serr error
	if f.noSync {
		if serr = f.db.Sync(); serr != nil {
			serr = fmt.Errorf("sync state: %w", serr)
		}
	}
	err := f.db.Close()
	f.db = nil
	return errors.Join(serr, err)
}

// sync flushes the state file to disk.
func (f *fsm) sync() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return ErrClosed
	}
	if err := f.db.Sync(); err != nil {
		return fmt.Errorf("sync state: %w", err)
	}
	return nil
}

func (f *fsm) view(fn func(*bolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return ErrClosed
	}
	return f.db.View(fn)
}

// fatalf stops the process: a storage failure or an undecodable committed
// entry must not let this replica diverge from the others (consul, rqlite).
func (f *fsm) fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	f.logger.Error("fsm: fatal, stopping node to protect replica consistency", "err", msg)
	panic("raftstore fsm: " + msg)
}

// Apply implements raft.FSM for single entries.
func (f *fsm) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies up to MaxAppendEntries entries in as few bbolt
// transactions as the byte bound allows, then publishes their changes.
func (f *fsm) ApplyBatch(logs []*raft.Log) []interface{} {
	results := make([]interface{}, len(logs))
	for start := 0; start < len(logs); {
		end, size := start, 0
		for end < len(logs) && (end == start || size+len(logs[end].Data) <= f.maxBatchBytes) {
			size += len(logs[end].Data)
			end++
		}
		f.applyChunk(logs[start:end], results[start:end])
		start = end
	}
	return results
}

func (f *fsm) applyChunk(logs []*raft.Log, results []interface{}) {
	var changes []Change
	var entriesIn, bytesIn int64 // new to this state file
	last := logs[len(logs)-1]
	f.mu.RLock()
	err := f.db.Update(func(tx *bolt.Tx) (err error) {
		defer func() {
			if r := recover(); r != nil {
				se, ok := r.(storageError)
				if !ok {
					panic(r)
				}
				err = se.err
			}
		}()
		meta := tx.Bucket(bMeta)
		applied := getU64(meta, kAppliedIndex)
		for i, l := range logs {
			if l.Index <= applied {
				continue // a replay after a restart: applied already
			}
			entriesIn++
			bytesIn += int64(len(l.Data))
			if l.Type != raft.LogCommand {
				continue
			}
			c, derr := command.Unmarshal(l.Data)
			if derr != nil {
				f.fatalf("entry %d: %v", l.Index, derr)
			}
			t := &txn{tx: tx, index: l.Index, time: c.Time}
			var res Result
			if c.Key != "" {
				if prev, ok := t.remembered(c.Key); ok {
					results[i] = prev
					continue
				}
			}
			res = t.apply(c)
			if c.Key != "" {
				t.remember(c.Key, res)
			}
			t.pruneDedupe()
			t.pruneChunks()
			res.Index = l.Index
			results[i] = res
			changes = append(changes, t.changes...)
		}
		if last.Index > applied {
			if err := meta.Put(kAppliedIndex, u64(last.Index)); err != nil {
				return err
			}
			return meta.Put(kAppliedTerm, u64(last.Term))
		}
		return nil
	})
	f.mu.RUnlock()
	if err != nil {
		f.fatalf("apply entries %d..%d: %v", logs[0].Index, last.Index, err)
	}
	f.sinceMu.Lock()
	f.seen.entries += entriesIn
	f.seen.bytes += bytesIn
	f.sinceMu.Unlock()
	f.setApplied(last.Index)
	f.feed.publish(changes)
}

func (f *fsm) setApplied(idx uint64) {
	f.appliedMu.Lock()
	if idx > f.applied {
		f.applied = idx
	}
	close(f.appliedCond)
	f.appliedCond = make(chan struct{})
	f.appliedMu.Unlock()
}

// resetApplied sets the applied index after a restore, which may lower it.
func (f *fsm) resetApplied(idx uint64) {
	f.appliedMu.Lock()
	f.applied = idx
	close(f.appliedCond)
	f.appliedCond = make(chan struct{})
	f.appliedMu.Unlock()
}

func (f *fsm) appliedIndex() (uint64, <-chan struct{}) {
	f.appliedMu.Lock()
	defer f.appliedMu.Unlock()
	return f.applied, f.appliedCond
}

// setSnap records the applied index of a snapshot just written or
// restored (or the newest one on disk, at open) and the size of the state
// it copied.
func (f *fsm) setSnap(idx uint64, size int64) {
	f.sinceMu.Lock()
	f.snapIndex, f.snapSize = idx, size
	f.sinceMu.Unlock()
}

// lastSnapSize is the size of the state the newest snapshot copied (0:
// none yet).
func (f *fsm) lastSnapSize() int64 {
	f.sinceMu.Lock()
	defer f.sinceMu.Unlock()
	return f.snapSize
}

// sinceSnapshot is the log applied since the newest snapshot: entries from
// the applied indexes, which survive a restart (a count kept in memory
// would start again at zero, and a node restarted often would never
// compact its log); bytes estimated from the average entry size seen by
// this process (ok is false until it has applied something).
func (f *fsm) sinceSnapshot() (since logSince, ok bool) {
	applied, _ := f.appliedIndex()
	f.sinceMu.Lock()
	defer f.sinceMu.Unlock()
	if applied > f.snapIndex {
		since.entries = int64(applied - f.snapIndex)
	}
	if f.seen.entries == 0 {
		return since, false
	}
	since.bytes = since.entries * (f.seen.bytes / f.seen.entries)
	return since, true
}

// stateBytes is the size of the state file's pages: what a snapshot
// copies.
func (f *fsm) stateBytes() (int64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var n int64
	err := f.db.View(func(tx *bolt.Tx) error {
		n = tx.Size()
		return nil
	})
	return n, err
}
