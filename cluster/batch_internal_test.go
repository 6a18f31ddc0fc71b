package cluster

import (
	"testing"
	"time"
)

// TestBatchDeadline: a batch request lives until its latest caller's
// deadline; a caller without one counts as maxBatchWait from now, and
// neither cuts short a caller in the same batch that waits longer.
func TestBatchDeadline(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	bound := now.Add(maxBatchWait)
	at := func(d time.Duration) *batchCall { return &batchCall{deadline: now.Add(d)} }
	none := &batchCall{}
	for _, tc := range []struct {
		name  string
		calls []*batchCall
		want  time.Time
	}{
		{"deadlines only: the latest", []*batchCall{at(time.Second), at(3 * time.Second), at(2 * time.Second)}, now.Add(3 * time.Second)},
		{"no deadline only: the bound", []*batchCall{none}, bound},
		{"no deadline beside an earlier one: the bound", []*batchCall{at(time.Second), none}, bound},
		{"no deadline beside a later one: the later one", []*batchCall{none, at(maxBatchWait + time.Hour)}, now.Add(maxBatchWait + time.Hour)},
	} {
		if got := batchDeadline(tc.calls, now); !got.Equal(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got.Sub(now), tc.want.Sub(now))
		}
	}
}
