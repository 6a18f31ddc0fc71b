package raftstore

import "time"

// logSince counts log entries and their bytes.
type logSince struct {
	entries int64
	bytes   int64
}

// snapshotDue is the snapshot policy. raft's own trigger counts entries,
// but a mail log's size is in its bodies, and a snapshot copies the
// whole state (every body): taken every 4096 deliveries, a store of
// 40 GB would copy 40 GB per 20 MB of new mail. So the entry and byte
// triggers fire only once the log since the last snapshot holds
// SnapshotStatePercent of the size of the state that snapshot copied
// (lastSnap; 0 before the first). The copying then costs about
// 100/percent times the bytes written plus the state's own growth,
// whatever the store's size, and the log on disk is bounded the same way.
// The floor is the last snapshot's size, not the current state's: for
// small messages the state grows faster than the log (records, indexes,
// the parsed structure), and a floor that grew with it was never reached
// (a chaos run's nodes never snapshotted). At 25% the SMTP benchmark's
// leader still spent 13% of its CPU in snapshots (a 0.4 GB state copied
// every 18 s); the default is 50%.
func snapshotDue(c *Config, since logSince, lastSnap int64) bool {
	if c.SnapshotStatePercent > 0 && since.bytes*100 < lastSnap*int64(c.SnapshotStatePercent) {
		return false
	}
	return since.entries >= int64(c.SnapshotThreshold) || since.bytes >= c.SnapshotBytes
}

// snapshotWhenDue checks the policy every SnapshotInterval, on every node
// (each compacts its own log).
func (s *Store) snapshotWhenDue() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.SnapshotInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		since, ok := s.fsm.sinceSnapshot()
		if !ok || since.entries == 0 {
			continue
		}
		last := s.fsm.lastSnapSize()
		if !snapshotDue(&s.cfg, since, last) {
			continue
		}
		s.logger.Info("snapshotting", "entries_since", since.entries, "bytes_since_estimate", since.bytes, "last_snapshot_state_bytes", last)
		if err := s.Snapshot(); err != nil {
			s.logger.Warn("snapshot failed", "err", err)
		}
	}
}
