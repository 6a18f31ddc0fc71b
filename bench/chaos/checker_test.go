package chaos

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func attempt(start, end float64, code int) Attempt {
	return Attempt{Start: at(start), End: at(end), Code: code}
}

// goodHistory is a small healthy run on three nodes: two acked messages,
// one 4xx stored once, one 4xx not stored, one 5xx, a confirmed IMAP
// move and store, equal digests and growing UIDs.
func goodHistory() *History {
	nodes := []string{"n1", "n2", "n3"}
	h := &History{Start: at(0), End: at(20), Nodes: nodes, FinalErr: map[string]string{},
		ManagedFlags: []string{`\Seen`, `\Flagged`, "$Chaos1"}}
	h.Sends = []Send{
		{MsgID: "<a@t>", Rcpt: "u1@c.test", Attempts: []Attempt{attempt(1, 1.1, 250)}},
		{MsgID: "<b@t>", Rcpt: "u1@c.test", Attempts: []Attempt{attempt(2, 5, 451), attempt(5.2, 5.3, 250)}},
		{MsgID: "<c@t>", Rcpt: "u1@c.test", Attempts: []Attempt{attempt(3, 8, 451)}},
		{MsgID: "<d@t>", Rcpt: "u1@c.test", Attempts: []Attempt{attempt(3, 8, 0)}},
		{MsgID: "<e@t>", Rcpt: "nobody@c.test", Attempts: []Attempt{attempt(4, 4.1, 550)}},
	}
	h.IMAPOps = []IMAPOp{
		{At: at(6), Account: "u1@c.test", MsgID: "<a@t>", Kind: OpMove, Certain: true, Mailbox: "Archive"},
		{At: at(7), Account: "u1@c.test", MsgID: "<a@t>", Kind: OpStore, Certain: true, Mailbox: "Archive", Flags: []string{`\Seen`}},
		{At: at(8), Account: "u1@c.test", MsgID: "<b@t>", Kind: OpStore, Certain: false, Flags: []string{`\Flagged`}},
	}
	for _, n := range nodes {
		h.Final = append(h.Final,
			Stored{Node: n, Account: "u1@c.test", Mailbox: "Archive", UID: 1, MsgID: "<a@t>", Flags: []string{`\Seen`, `\Recent`}},
			Stored{Node: n, Account: "u1@c.test", Mailbox: "INBOX", UID: 2, MsgID: "<b@t>", Flags: []string{`\Flagged`}},
			Stored{Node: n, Account: "u1@c.test", Mailbox: "INBOX", UID: 3, MsgID: "<c@t>"},
		)
		h.Digests = append(h.Digests, NodeDigest{Node: n, AppliedIndex: 42, Digest: "abc"})
		h.Observations = append(h.Observations,
			UIDObservation{At: at(2), Node: n, Account: "u1@c.test", Mailbox: "INBOX", UIDValidity: 7, UIDNextBefore: 2, UIDNext: 2,
				Entries: []UIDEntry{{1, "sha-a"}}},
			UIDObservation{At: at(9), Node: n, Account: "u1@c.test", Mailbox: "INBOX", UIDValidity: 7, UIDNextBefore: 4, UIDNext: 4,
				Entries: []UIDEntry{{2, "sha-b"}, {3, "sha-c"}}},
		)
	}
	h.Faults = []Fault{{Kind: KindKillLeader, Target: "n1", Start: at(2), End: at(4)}}
	return h
}

func TestCheckerPassesHealthyHistory(t *testing.T) {
	v := Check(goodHistory())
	if !v.Pass {
		t.Fatalf("healthy history failed: %v", v.Violations)
	}
	if v.Acked != 2 || v.Rejected != 1 || v.Indeterminate != 2 || v.Lost != 0 || v.Duplicated != 0 {
		t.Fatalf("counts: %+v", v)
	}
	if v.IMAPCertain != 2 || v.IMAPUncertain != 1 {
		t.Fatalf("imap ops: certain %d uncertain %d", v.IMAPCertain, v.IMAPUncertain)
	}
}

// TestCheckerFails feeds histories with one injected fault each; every one
// must fail with the right kind of violation.
func TestCheckerFails(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(h *History)
		kind   string
	}{
		{"lost acknowledged message", func(h *History) {
			h.Final = dropWhere(h.Final, func(s Stored) bool { return s.MsgID == "<b@t>" && s.Node == "n2" })
		}, VLost},
		{"acknowledged message lost everywhere", func(h *History) {
			h.Final = dropWhere(h.Final, func(s Stored) bool { return s.MsgID == "<a@t>" })
		}, VLost},
		{"duplicate of an acknowledged message", func(h *History) {
			h.Final = append(h.Final, Stored{Node: "n3", Account: "u1@c.test", Mailbox: "INBOX", UID: 9, MsgID: "<a@t>"})
		}, VDuplicated},
		{"duplicate of a 4xx message", func(h *History) {
			for _, n := range h.Nodes {
				h.Final = append(h.Final, Stored{Node: n, Account: "u1@c.test", Mailbox: "INBOX", UID: 9, MsgID: "<c@t>"})
			}
		}, VDuplicated},
		{"5xx message present", func(h *History) {
			h.Final = append(h.Final, Stored{Node: "n1", Account: "u1@c.test", Mailbox: "INBOX", UID: 9, MsgID: "<e@t>"})
		}, VRejected},
		{"reused UID", func(h *History) {
			h.Observations = append(h.Observations, UIDObservation{At: at(12), Node: "n1", Account: "u1@c.test",
				Mailbox: "INBOX", UIDValidity: 7, UIDNext: 4, Entries: []UIDEntry{{2, "sha-b"}, {3, "sha-x"}}})
		}, VUIDReuse},
		{"UID appearing below an earlier UIDNEXT", func(h *History) {
			for i := range h.Observations {
				if o := &h.Observations[i]; o.Node == "n2" && o.UIDNext == 4 {
					o.Entries = []UIDEntry{{3, "sha-c"}}
				}
			}
			h.Observations = append(h.Observations, UIDObservation{At: at(12), Node: "n2", Account: "u1@c.test",
				Mailbox: "INBOX", UIDValidity: 7, UIDNext: 5, Entries: []UIDEntry{{2, "sha-b"}, {3, "sha-c"}}})
		}, VUIDReuse},
		{"expunged UID coming back", func(h *History) {
			h.Observations = append(h.Observations, UIDObservation{At: at(12), Node: "n2", Account: "u1@c.test",
				Mailbox: "INBOX", UIDValidity: 7, UIDNext: 4, Entries: []UIDEntry{{1, "sha-a"}, {2, "sha-b"}}})
		}, VUIDReuse},
		{"UIDNEXT going back", func(h *History) {
			h.Observations = append(h.Observations, UIDObservation{At: at(12), Node: "n3", Account: "u1@c.test",
				Mailbox: "INBOX", UIDValidity: 7, UIDNext: 3, Entries: []UIDEntry{{2, "sha-b"}}})
		}, VUIDOrder},
		{"UIDVALIDITY changed", func(h *History) {
			h.Observations = append(h.Observations, UIDObservation{At: at(12), Node: "n3", Account: "u1@c.test",
				Mailbox: "INBOX", UIDValidity: 8, UIDNext: 4, Entries: []UIDEntry{{2, "sha-b"}}})
		}, VValidity},
		{"digests differ", func(h *History) { h.Digests[2].Digest = "abd" }, VDigest},
		{"node not read back", func(h *History) {
			h.FinalErr["n2"] = "connection refused"
		}, VReadback},
		{"flags diverged", func(h *History) {
			for i := range h.Final {
				if h.Final[i].Node == "n3" && h.Final[i].MsgID == "<c@t>" {
					h.Final[i].Flags = []string{`\Seen`}
				}
			}
		}, VDiverged},
		{"confirmed store lost", func(h *History) {
			for i := range h.Final {
				if h.Final[i].MsgID == "<a@t>" {
					h.Final[i].Flags = nil
				}
			}
		}, VModel},
		{"confirmed move lost", func(h *History) {
			for i := range h.Final {
				if h.Final[i].MsgID == "<a@t>" {
					h.Final[i].Mailbox = "INBOX"
				}
			}
		}, VModel},
		{"stored message never sent", func(h *History) {
			h.Final = append(h.Final, Stored{Node: "n1", Account: "u1@c.test", Mailbox: "INBOX", UID: 9, MsgID: "<zz@t>"})
		}, VUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := goodHistory()
			tc.break_(h)
			v := Check(h)
			if v.Pass {
				t.Fatalf("history with %s passed", tc.name)
			}
			if v.Counts[tc.kind] == 0 {
				t.Fatalf("want a %s violation, got %v", tc.kind, v.Violations)
			}
			line := VerdictLine(v)
			if !strings.HasPrefix(line, "chaos: FAIL ") {
				t.Fatalf("verdict line %q", line)
			}
		})
	}
}

func TestCheckerCountsLostAndDuplicated(t *testing.T) {
	h := goodHistory()
	h.Final = dropWhere(h.Final, func(s Stored) bool { return s.MsgID == "<a@t>" })
	h.Final = append(h.Final, Stored{Node: "n1", Account: "u1@c.test", Mailbox: "INBOX", UID: 9, MsgID: "<b@t>"})
	v := Check(h)
	if v.Lost != 1 || v.Duplicated != 1 {
		t.Fatalf("lost %d duplicated %d, want 1 and 1", v.Lost, v.Duplicated)
	}
	if got := VerdictLine(v); !strings.HasPrefix(got, "chaos: FAIL acked=2 lost=1 duplicated=1 longest_stall=") {
		t.Fatalf("verdict line %q", got)
	}
}

func TestAvailability(t *testing.T) {
	h := &History{Start: at(0), End: at(10), Nodes: []string{"n1"}, Digests: []NodeDigest{{Node: "n1", Digest: "x"}}}
	for _, s := range []float64{0.5, 1, 1.5, 6, 6.5, 9.5} {
		h.Sends = append(h.Sends, Send{MsgID: "<m>", Attempts: []Attempt{attempt(s-0.1, s, 250)}})
	}
	h.Faults = []Fault{{Kind: KindKillLeader, Start: at(2), End: at(3)}}
	v := Check(h)
	if v.LongestStall != 4500*time.Millisecond {
		t.Fatalf("longest stall %v, want 4.5s", v.LongestStall)
	}
	if len(v.Stalls) != 1 || v.Stalls[0].Stall != 4*time.Second || v.Stalls[0].FirstAck != 4*time.Second {
		t.Fatalf("fault stall %+v", v.Stalls)
	}
	if v.LeaderKillP99 != 4*time.Second {
		t.Fatalf("leader kill p99 %v", v.LeaderKillP99)
	}
	if v.AcksPerSecond[1] != 2 || v.AcksPerSecond[6] != 2 {
		t.Fatalf("acks per second %v", v.AcksPerSecond)
	}
}

func dropWhere(in []Stored, drop func(Stored) bool) []Stored {
	var out []Stored
	for _, s := range in {
		if !drop(s) {
			out = append(out, s)
		}
	}
	return out
}
