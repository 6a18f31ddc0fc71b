package raftstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/raftmail/raftmail/raftstore/command"
)

func TestSnapshotDue(t *testing.T) {
	c := Config{SnapshotThreshold: 100, SnapshotBytes: 1000, SnapshotStatePercent: 25}
	off := c
	off.SnapshotStatePercent = -1
	for _, tc := range []struct {
		name           string
		c              Config
		entries, bytes int64
		state          int64
		want           bool
	}{
		{"below both triggers", c, 99, 999, 0, false},
		{"entry trigger, small state", c, 100, 10, 40, true},
		{"byte trigger, small state", c, 1, 1000, 4000, true},
		{"entry trigger, log under a quarter of the last snapshot", c, 100, 10, 41, false},
		{"byte trigger, log under a quarter of the last snapshot", c, 5000, 1000, 4001, false},
		{"log reached a quarter of a large snapshot", c, 5000, 250_000, 1_000_000, true},
		{"no snapshot yet: the triggers alone", c, 100, 10, 0, true},
		{"floor off: entry trigger alone", off, 100, 10, 1 << 40, true},
		{"floor off: below both triggers", off, 99, 999, 0, false},
	} {
		got := snapshotDue(&tc.c, logSince{entries: tc.entries, bytes: tc.bytes}, tc.state)
		if got != tc.want {
			t.Errorf("%s: snapshotDue(%d entries, %d bytes, last snapshot %d) = %v, want %v", tc.name, tc.entries, tc.bytes, tc.state, got, tc.want)
		}
	}
}

// policyStore opens a single-node store whose policy looks every 10 ms
// with an entry trigger of 10, with an account, and returns it with the
// applied index of its newest snapshot (0: none; two are kept).
func policyStore(t *testing.T) (*Store, func() uint64) {
	t.Helper()
	cfg := testConfig(t.TempDir(), freeAddr(t))
	cfg.SnapshotThreshold = 10
	cfg.SnapshotInterval = 10 * time.Millisecond
	s := openStoreConfig(t, cfg)
	setupAccount(t, s)
	return s, func() uint64 {
		metas, err := s.snaps.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(metas) == 0 {
			return 0
		}
		return metas[0].Index
	}
}

// TestSnapshotWaitsForTheStateFloor: past the entry trigger, a store takes
// no snapshot while the log since the last one is under the default share
// of the state that snapshot copied, and takes one once it is over.
func TestSnapshotWaitsForTheStateFloor(t *testing.T) {
	s, newest := policyStore(t)
	deliverN(t, s, 0, 20)
	if err := s.Snapshot(); err != nil { // the floor's reference
		t.Fatal(err)
	}
	first := newest()
	sinceSnapshot := func() logSince {
		v, _ := s.fsm.sinceSnapshot()
		return v
	}
	pct, ref := int64(s.cfg.SnapshotStatePercent), s.fsm.lastSnapSize()
	// Small deliveries: past the entry trigger, far under the floor.
	for i := 0; i < 12; i++ {
		b := s.Codec().NewBlob(body(fmt.Sprint("small", i), 200), nil)
		mustApply(t, s, fmt.Sprint("s", i), &command.Deliver{Blob: b, Rcpts: []string{alice}})
	}
	since := sinceSnapshot()
	if ref <= 0 || since.entries < 10 || since.bytes*100 >= ref*pct {
		t.Fatalf("setup: %d entries, %d log bytes against a %d-byte snapshot; want ≥ 10 entries under %d%%", since.entries, since.bytes, ref, pct)
	}
	time.Sleep(30 * s.cfg.SnapshotInterval)
	if newest() != first {
		t.Fatalf("a snapshot with %d log bytes against a %d-byte snapshot", since.bytes, ref)
	}
	// Large bodies until the log holds that share of the snapshot.
	for i := 0; sinceSnapshot().bytes*100 < ref*pct; i++ {
		if i == 1000 {
			t.Fatalf("log bytes %d never reached %d%% of the snapshot (%d)", sinceSnapshot().bytes, pct, ref)
		}
		b := s.Codec().NewBlob(body(fmt.Sprint("large", i), 64<<10), nil)
		mustApply(t, s, fmt.Sprint("l", i), &command.Deliver{Blob: b, Rcpts: []string{alice}})
	}
	// The snapshot store lists a snapshot as soon as its sink closes;
	// Persist records it in the FSM just after: wait for both.
	waitFor(t, 10*time.Second, "a snapshot once the floor is reached, recorded by the FSM", func() bool {
		return newest() > first && s.fsm.lastSnapSize() != ref
	})
	if got := sinceSnapshot(); got.entries != 0 {
		t.Fatalf("after the snapshot %d entries still count as unsnapshotted", got.entries)
	}
	if s.fsm.lastSnapSize() <= ref {
		t.Fatalf("the floor's reference did not move to the new snapshot's state (%d, was %d)", s.fsm.lastSnapSize(), ref)
	}
}

// TestLogSinceSnapshotSurvivesRestart: what the policy counts since the
// last snapshot comes from the applied indexes, not from a count in
// memory, so a node restarted before reaching a trigger still gets there
// (a 10-minute chaos run, whose nodes were killed every few minutes,
// took no snapshot at all while a count in memory restarted at zero).
func TestLogSinceSnapshotSurvivesRestart(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	cfg := testConfig(dir, addr)
	cfg.SnapshotInterval = time.Hour // no snapshot by the policy here
	s := openStoreConfig(t, cfg)
	setupAccount(t, s)
	deliverN(t, s, 0, 5)
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	deliverN(t, s, 5, 12)
	before, ok := s.fsm.sinceSnapshot()
	if !ok || before.entries < 12 || before.bytes <= 0 {
		t.Fatalf("before the restart: %+v (known %v), want ≥ 12 entries and their bytes", before, ok)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s2.Close() })
	if after, _ := s2.fsm.sinceSnapshot(); after.entries < before.entries {
		t.Fatalf("after the restart %d entries since the snapshot, before it %d", after.entries, before.entries)
	}
	waitFor(t, 10*time.Second, "leadership", s2.IsLeader)
	deliverN(t, s2, 17, 1)
	after, ok := s2.fsm.sinceSnapshot()
	if !ok || after.entries <= before.entries || after.bytes <= 0 {
		t.Fatalf("after one more delivery: %+v (known %v)", after, ok)
	}
	// The average entry size comes from entries applied, not from the
	// ones the restart replayed and skipped (which would dilute it).
	avgBefore, avgAfter := before.bytes/before.entries, after.bytes/after.entries
	if avgAfter*2 < avgBefore || avgAfter > avgBefore*2 {
		t.Fatalf("average entry size %d bytes after the restart, %d before", avgAfter, avgBefore)
	}
}

// TestSmallMessagesStillSnapshot: a log of small deliveries reaches the
// floor. For small messages the state grows faster than the log (records,
// indexes), so a floor measured on the current state was never reached and
// the log grew without bound (a chaos run); the floor is the last
// snapshot's size.
func TestSmallMessagesStillSnapshot(t *testing.T) {
	s, newest := policyStore(t)
	deliverN(t, s, 0, 20)
	waitFor(t, 10*time.Second, "the first snapshot (no floor yet)", func() bool { return newest() > 0 })
	first := newest()
	state0, err := s.fsm.stateBytes()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; newest() == first; i++ {
		if i == 5000 {
			since, _ := s.fsm.sinceSnapshot()
			state, _ := s.fsm.stateBytes()
			t.Fatalf("no snapshot after 5,000 small deliveries: %+v since, state %d bytes (was %d), floor %d%% of %d",
				since, state, state0, s.cfg.SnapshotStatePercent, s.fsm.lastSnapSize())
		}
		b := s.Codec().NewBlob(body(fmt.Sprint("tiny", i), 100), nil)
		mustApply(t, s, fmt.Sprint("t", i), &command.Deliver{Blob: b, Rcpts: []string{alice}})
		if i%50 == 49 {
			time.Sleep(3 * s.cfg.SnapshotInterval) // let the policy look
		}
	}
	state, _ := s.fsm.stateBytes()
	t.Logf("snapshot at index %d; state %d → %d bytes", newest(), state0, state)
}
