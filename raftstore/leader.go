package raftstore

import (
	"github.com/hashicorp/raft"
)

// startLeaderWatch turns raft's leader observations into a channel that is
// closed whenever this node sees the leader change, so that a write
// forwarded to a leader that froze or was cut off is abandoned as soon as
// the cluster has moved on, not after a fixed timeout. s.raft must be
// running.
func (s *Store) startLeaderWatch() {
	s.leaderChanged = make(chan struct{})
	obs := make(chan raft.Observation, 16)
	observer := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	s.raft.RegisterObserver(observer)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.raft.DeregisterObserver(observer)
		for {
			select {
			case <-s.stop:
				return
			case <-obs:
				// An observation carries the new leader, but LeaderWatch reads
				// raft's own view; an observation only says "look again".
				s.leaderMu.Lock()
				close(s.leaderChanged)
				s.leaderChanged = make(chan struct{})
				s.leaderMu.Unlock()
			}
		}
	}()
}

// LeaderWatch returns the leader this node follows now ("" if none) and a
// channel closed the next time that changes: a new leader elected, or the
// old one lost (a node that stops hearing from its leader becomes a
// candidate). The channel may also close when the leader ends up the same.
func (s *Store) LeaderWatch() (id string, changed <-chan struct{}) {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	id, _ = s.Leader()
	return id, s.leaderChanged
}
