package raftstore

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	"github.com/klauspost/compress/zstd"
	bolt "go.etcd.io/bbolt"
)

// Snapshot format (docs/formats.md): a zstd stream of a consistent copy of
// the state bbolt file, as written by bolt.Tx.WriteTo. Bodies are already
// zstd-compressed inside, so the outer compression mostly saves the free
// pages and the metadata.

type fsmSnapshot struct {
	f     *fsm
	tx    *bolt.Tx
	index uint64 // the applied index the snapshot holds
}

// Snapshot opens a read transaction and returns at once; Persist streams it
// on another goroutine while Apply goes on (bbolt's MVCC keeps the view).
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	tx, err := f.db.Begin(false)
	if err != nil {
		f.mu.RUnlock()
		return nil, fmt.Errorf("snapshot: begin read tx: %w", err)
	}
	return &fsmSnapshot{f: f, tx: tx, index: getU64(tx.Bucket(bMeta), kAppliedIndex)}, nil
}

// stateEncoder compresses a copy of the state file (snapshots, backups).
// Entropy coding is off: the bodies inside are zstd frames already, and
// Huffman-coding their bytes again cost a third of the compression's CPU
// for 0.1% of the output (a 228 MB state: 34.1% vs 34.2% of its size,
// 470-500 vs 300-330 ms). The matches, which shrink the free pages and
// the metadata, stay.
func stateEncoder(w io.Writer) (*zstd.Encoder, error) {
	return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithNoEntropyCompression(true))
}

// Persist writes the zstd-compressed bbolt copy to the sink.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	err := func() error {
		bw := bufio.NewWriterSize(sink, 1<<20)
		zw, err := stateEncoder(bw)
		if err != nil {
			return err
		}
		if _, err := s.tx.WriteTo(zw); err != nil {
			zw.Close()
			return fmt.Errorf("write state: %w", err)
		}
		if err := zw.Close(); err != nil {
			return err
		}
		return bw.Flush()
	}()
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("snapshot persist: %w", err)
	}
	if err := sink.Close(); err != nil {
		return err
	}
	s.f.setSnap(s.index, s.tx.Size())
	return nil
}

// Release ends the read transaction.
func (s *fsmSnapshot) Release() {
	if s.tx != nil {
		_ = s.tx.Rollback()
		s.tx = nil
		s.f.mu.RUnlock()
	}
}

// Restore replaces the whole state with a snapshot: it streams it into a
// temporary file beside the live one, fsyncs and checks it, then swaps it in
// under the write lock and tells subscribers to drop derived state.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp := f.path + ".restore"
	if err := writeSnapshotFile(rc, tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restore: %w", err)
	}
	f.mu.Lock()
	if f.db != nil {
		if err := f.db.Close(); err != nil {
			f.mu.Unlock()
			return fmt.Errorf("restore: close state: %w", err)
		}
		f.db = nil
	}
	if err := os.Rename(tmp, f.path); err != nil {
		f.mu.Unlock()
		return fmt.Errorf("restore: swap state: %w", err)
	}
	syncDir(filepath.Dir(f.path))
	idx, err := f.open()
	f.mu.Unlock()
	if err != nil {
		return fmt.Errorf("restore: reopen: %w", err)
	}
	f.resetApplied(idx)
	if size, err := f.stateBytes(); err == nil {
		f.setSnap(idx, size)
	}
	f.logger.Info("state restored from snapshot", "raft_index", idx)
	f.feed.publish([]Change{StateReset{}})
	return nil
}

// writeSnapshotFile decodes a snapshot stream into path, fsyncs it and
// checks that it opens as a bbolt file.
func writeSnapshotFile(r io.Reader, path string) error {
	zr, err := zstd.NewReader(bufio.NewReaderSize(r, 1<<20), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return err
	}
	defer zr.Close()
	out, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := zr.WriteTo(out); err != nil {
		out.Close()
		return fmt.Errorf("decode snapshot: %w", err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 0})
	if err != nil {
		return fmt.Errorf("snapshot is not a valid state file: %w", err)
	}
	return db.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
