package raftstore

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// Backups (docs/operations.md "Backup and restore") use the snapshot format
// (docs/formats.md): a zstd stream of a consistent bbolt copy of state.db,
// so `zstd -d` turns a backup into a state file the bbolt tools open.

// BackupInfo describes a backup: the raft position of the state it holds.
type BackupInfo struct {
	AppliedIndex uint64 `json:"applied_index"`
	AppliedTerm  uint64 `json:"applied_term"`
	Bytes        int64  `json:"bytes"`
}

// Backup streams a consistent copy of this node's state to w, compressed
// like a snapshot. It runs beside Apply (bbolt MVCC): the copy is the state
// at one applied index, which it returns. Any node can serve it; a
// follower's copy is a committed prefix of the leader's.
func (s *Store) Backup(w io.Writer) (BackupInfo, error) {
	var info BackupInfo
	cw := &countingWriter{w: w}
	err := s.fsm.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		info.AppliedIndex, info.AppliedTerm = getU64(meta, kAppliedIndex), getU64(meta, kAppliedTerm)
		bw := bufio.NewWriterSize(cw, 1<<20)
		zw, err := stateEncoder(bw)
		if err != nil {
			return err
		}
		if _, err := tx.WriteTo(zw); err != nil {
			zw.Close()
			return fmt.Errorf("write state: %w", err)
		}
		if err := zw.Close(); err != nil {
			return err
		}
		return bw.Flush()
	})
	info.Bytes = cw.n
	if err != nil {
		return info, fmt.Errorf("backup: %w", err)
	}
	return info, nil
}

// DataDigest is Digest without the node records (raft and API addresses)
// and the idempotency keys of recent commands: the digest of the mail data
// and directory, equal between a cluster and a new cluster restored from
// its backup (whose membership changes add node records and keys).
func (s *Store) DataDigest() (digest string, applied uint64, err error) {
	return s.digest([][]byte{bNodes, bDedupe, bDedupeAge})
}

// ErrBadBackup marks an upload that is not a backup this version reads.
var ErrBadBackup = errors.New("not a valid backup")

// ErrNotEmpty refuses a restore into a cluster that already holds data.
var ErrNotEmpty = errors.New("restore: the cluster is not new (it has domains, accounts or several members)")

// RestoreBackup seeds a new cluster from a backup: on the leader of a
// fresh single-node cluster, it validates the backup, then hands it to
// raft as a user snapshot (raft.Restore). Raft installs it at an index
// above both the current log and the backup's applied index, leaving a
// hole in the log, so every node that joins later receives the state by
// InstallSnapshot, and entries after it apply (the FSM skips only indexes
// at or below the restored applied index). Unless force, the cluster must
// have one member and no domains or accounts.
func (s *Store) RestoreBackup(r io.Reader, force bool, timeout time.Duration) (BackupInfo, error) {
	if !s.IsLeader() {
		return BackupInfo{}, ErrNotLeader
	}
	if !force {
		if err := s.checkEmpty(); err != nil {
			return BackupInfo{}, err
		}
	}
	spool, info, err := s.spoolBackup(r)
	if spool != "" {
		defer os.Remove(spool)
	}
	if err != nil {
		return info, err
	}
	f, err := os.Open(spool)
	if err != nil {
		return info, fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: info.AppliedIndex, Term: info.AppliedTerm, Size: info.Bytes}
	if err := s.raft.Restore(meta, f, timeout); err != nil {
		return info, fmt.Errorf("restore: raft: %w", err)
	}
	s.logger.Info("cluster state restored from backup", "backup_index", info.AppliedIndex, "bytes", info.Bytes)
	return info, nil
}

func (s *Store) checkEmpty() error {
	servers, err := s.Servers()
	if err != nil {
		return err
	}
	empty := len(servers) <= 1
	_ = s.fsm.view(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bDomains).Cursor().First(); k != nil {
			empty = false
		}
		if k, _ := tx.Bucket(bAccounts).Cursor().First(); k != nil {
			empty = false
		}
		return nil
	})
	if !empty {
		return ErrNotEmpty
	}
	return nil
}

// spoolBackup copies the upload to a file in the data directory, and
// checks it decodes to a bbolt state file of a supported format, whose
// applied index and term it returns. The raft snapshot installation
// panics on a bad snapshot, so nothing unchecked reaches it.
func (s *Store) spoolBackup(r io.Reader) (string, BackupInfo, error) {
	var info BackupInfo
	f, err := os.CreateTemp(s.cfg.Dir, "restore-*.zst")
	if err != nil {
		return "", info, fmt.Errorf("restore: spool: %w", err)
	}
	path := f.Name()
	info.Bytes, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return path, info, fmt.Errorf("restore: spool: %w", err)
	}
	in, err := os.Open(path)
	if err != nil {
		return path, info, err
	}
	defer in.Close()
	state := filepath.Join(s.cfg.Dir, "restore-check.db")
	defer os.Remove(state)
	if err := writeSnapshotFile(in, state); err != nil {
		return path, info, fmt.Errorf("restore: %w: %w", ErrBadBackup, err)
	}
	db, err := bolt.Open(state, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return path, info, fmt.Errorf("restore: %w: %w", ErrBadBackup, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if meta == nil || string(meta.Get(kFormat)) != string(kFormatVersion1) {
			return errors.New("not a raftmail state of a supported format")
		}
		info.AppliedIndex, info.AppliedTerm = getU64(meta, kAppliedIndex), getU64(meta, kAppliedTerm)
		return nil
	})
	if err != nil {
		return path, info, fmt.Errorf("restore: %w: %w", ErrBadBackup, err)
	}
	return path, info, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
