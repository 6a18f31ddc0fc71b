package raftstore

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// appliedFSM records the entries raft applies.
type appliedFSM struct {
	mu   sync.Mutex
	data []string
}

func (f *appliedFSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	f.data = append(f.data, string(l.Data))
	f.mu.Unlock()
	return nil
}
func (f *appliedFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, io.EOF }
func (f *appliedFSM) Restore(io.ReadCloser) error         { return nil }
func (f *appliedFSM) applied() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.data...)
}

// TestDivergentSuffixIsNotCommitted: n2 led term 2 and wrote entries 4–5
// that nobody else has (it was then paused); n1 leads term 3 with other
// entries at 4–6, committed up to 6. n1's first AppendEntries to n2 repeats
// entry 3, which n2 already has: no conflict, so n2 truncates nothing.
// With the request's commit index of 6, unpatched hashicorp/raft commits
// n2's own 4–5 and applies them ("n2-only" below); through guardedTransport n2
// commits only up to 3, and the next request replaces 4–5 with n1's.
func TestDivergentSuffixIsNotCommitted(t *testing.T) {
	for _, clamp := range []bool{false, true} {
		applied := runDivergentSuffix(t, clamp)
		var leaked []string
		for _, d := range applied {
			if d == "n2-only" {
				leaked = append(leaked, d)
			}
		}
		switch {
		case clamp && len(leaked) > 0:
			t.Fatalf("with the clamp, n2 applied its uncommitted entries: %q", applied)
		case clamp && (len(applied) != 4 || applied[2] != "n1-4" || applied[3] != "n1-5"):
			t.Fatalf("with the clamp, n2 applied %q, want 2, 3, then n1's 4 and 5", applied)
		case !clamp && len(leaked) == 0:
			// The library fixed it: the clamp is then redundant but harmless.
			t.Logf("hashicorp/raft no longer commits a divergent suffix (applied %q)", applied)
		case !clamp:
			t.Logf("without the clamp n2 applies %q (the library's bug, still present)", applied)
		}
	}
}

// runDivergentSuffix plays the scenario against a real raft node n2 and
// returns what its FSM applied.
func runDivergentSuffix(t *testing.T, clamp bool) []string {
	t.Helper()
	conf := raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "n1", Address: "n1"},
		{Suffrage: raft.Voter, ID: "n2", Address: "n2"},
		{Suffrage: raft.Voter, ID: "n3", Address: "n3"},
	}}
	logs, stable := raft.NewInmemStore(), raft.NewInmemStore()
	entry := func(i, term uint64, data string) *raft.Log {
		return &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte(data)}
	}
	cfgLog := &raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: raft.EncodeConfiguration(conf)}
	if err := logs.StoreLogs([]*raft.Log{cfgLog, entry(2, 1, "c-2"), entry(3, 1, "c-3"),
		entry(4, 2, "n2-only"), entry(5, 2, "n2-only")}); err != nil {
		t.Fatal(err)
	}
	if err := stable.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	_, n2Trans := raft.NewInmemTransport("n2")
	_, n1Trans := raft.NewInmemTransport("n1")
	n1Trans.Connect("n2", n2Trans)
	var trans raft.Transport = n2Trans
	if clamp {
		var stop func()
		trans, stop = guardTransport(n2Trans)
		defer stop()
	}
	cfg := raft.DefaultConfig()
	cfg.LocalID = "n2"
	cfg.HeartbeatTimeout, cfg.ElectionTimeout = time.Hour, time.Hour // stay a follower
	cfg.LeaderLeaseTimeout = time.Hour
	cfg.Logger = hclog.NewNullLogger()
	fsm := &appliedFSM{}
	r, err := raft.NewRaft(cfg, fsm, logs, stable, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()

	send := func(req *raft.AppendEntriesRequest) {
		t.Helper()
		var resp raft.AppendEntriesResponse
		if err := n1Trans.AppendEntries("n2", "n2", req, &resp); err != nil {
			t.Fatal(err)
		}
		if !resp.Success {
			t.Fatalf("append entries %d+%d refused", req.PrevLogEntry, len(req.Entries))
		}
	}
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n1"), Addr: []byte("n1")}
	// n1 re-sends entry 3 (n2 has it) with its commit index 6.
	send(&raft.AppendEntriesRequest{RPCHeader: hdr, Term: 3, PrevLogEntry: 2, PrevLogTerm: 1,
		Entries: []*raft.Log{entry(3, 1, "c-3")}, LeaderCommitIndex: 6})
	time.Sleep(100 * time.Millisecond) // let the FSM apply what was committed
	// Then its own entries 4..6 (term 3), conflicting with n2's 4..5.
	send(&raft.AppendEntriesRequest{RPCHeader: hdr, Term: 3, PrevLogEntry: 3, PrevLogTerm: 1,
		Entries: []*raft.Log{entry(4, 3, "n1-4"), entry(5, 3, "n1-5"), entry(6, 3, "n1-6")}, LeaderCommitIndex: 5})
	deadline := time.Now().Add(5 * time.Second)
	for len(fsm.applied()) < 4 && time.Now().Before(deadline) { // 2, 3 and two more
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	return fsm.applied()
}
