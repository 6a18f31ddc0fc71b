package chaos

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Violation kinds, one per safety property.
const (
	VLost       = "lost"        // an acknowledged message missing on a node
	VDuplicated = "duplicated"  // a message stored more than once on a node
	VRejected   = "rejected"    // a 5xx message stored somewhere
	VUnknown    = "unknown"     // a stored message the workload never sent
	VReadback   = "readback"    // a node could not be read back
	VDigest     = "digest"      // nodes disagree on the state digest
	VUIDReuse   = "uid-reuse"   // a UID bound to two different messages
	VUIDOrder   = "uid-order"   // UIDNEXT went down, or a new UID below it
	VValidity   = "uidvalidity" // UIDVALIDITY of a mailbox changed
	VDiverged   = "diverged"    // a message in different mailboxes or with different flags on two nodes
	VModel      = "model"       // a confirmed IMAP write not reflected at the end
)

// maxListed bounds the violations kept as text; counts stay exact.
const maxListed = 50

// FaultStall is the availability after one fault.
type FaultStall struct {
	Fault Fault `json:"fault"`
	// Stall is the longest time without any 250 from the fault's start
	// to the end of its window (next fault, or its end plus 30 s).
	Stall time.Duration `json:"stall_ns"`
	// FirstAck is the time from the fault's start to the first 250 of a
	// transaction that began after it (a fresh write committed).
	FirstAck time.Duration `json:"first_fresh_ack_ns"`
}

// Window is the success rate of SMTP attempts ending in a time window.
type Window struct {
	From     time.Duration `json:"from_ns"`
	Attempts int           `json:"attempts"`
	Acked    int           `json:"acked"`
}

// Verdict is the checker's answer for a history.
type Verdict struct {
	Pass          bool           `json:"pass"`
	Sent          int            `json:"sent"`
	Acked         int            `json:"acked"`
	Rejected      int            `json:"rejected"`
	Indeterminate int            `json:"indeterminate"`
	Lost          int            `json:"lost"`
	Duplicated    int            `json:"duplicated"`
	Counts        map[string]int `json:"violations_by_kind"`
	Violations    []string       `json:"violations"`
	// Replies counts attempts by reply class: 2xx, 4xx, 5xx, none.
	Replies      map[string]int `json:"replies"`
	AckLatP50    time.Duration  `json:"ack_latency_p50_ns"`
	AckLatP99    time.Duration  `json:"ack_latency_p99_ns"`
	LongestStall time.Duration  `json:"longest_stall_ns"`
	Stalls       []FaultStall   `json:"stalls"`
	// LeaderKillP99 is the p99 over leader kills of FirstAck.
	LeaderKillP99 time.Duration `json:"leader_kill_resume_p99_ns"`
	AcksPerSecond []int         `json:"acks_per_second"`
	Windows       []Window      `json:"success_windows"`
	IMAPCertain   int           `json:"imap_ops_certain"`
	IMAPUncertain int           `json:"imap_ops_uncertain"`
}

func (v *Verdict) fail(kind, format string, args ...any) {
	v.Counts[kind]++
	if len(v.Violations) < maxListed {
		v.Violations = append(v.Violations, kind+": "+fmt.Sprintf(format, args...))
	}
}

// Check judges a history: the safety properties (nothing acknowledged lost
// or duplicated, nothing rejected stored, equal digests, UIDs never reused
// or going backwards, flags and locations converged and matching confirmed
// IMAP writes) and the availability figures. It trusts nothing but the
// history.
func Check(h *History) *Verdict {
	v := &Verdict{Counts: map[string]int{}, Replies: map[string]int{}}
	v.Sent = len(h.Sends)
	checkMessages(h, v)
	checkDigests(h, v)
	checkUIDs(h, v)
	checkConvergence(h, v)
	checkModel(h, v)
	availability(h, v)
	v.Lost = v.Counts[VLost]
	v.Duplicated = v.Counts[VDuplicated]
	v.Pass = len(v.Counts) == 0
	return v
}

// checkMessages counts each Message-ID per node over all mailboxes.
func checkMessages(h *History, v *Verdict) {
	perNode := map[string]map[string]int{}
	for _, n := range h.Nodes {
		perNode[n] = map[string]int{}
	}
	for _, s := range h.Final {
		if perNode[s.Node] == nil {
			perNode[s.Node] = map[string]int{}
		}
		perNode[s.Node][s.MsgID]++
	}
	for _, n := range sortedKeys(h.FinalErr) {
		v.fail(VReadback, "node %s: %s", n, h.FinalErr[n])
	}
	known := map[string]bool{}
	for i := range h.Sends {
		s := &h.Sends[i]
		known[s.MsgID] = true
		out := s.Outcome()
		switch out {
		case Acked:
			v.Acked++
		case Rejected:
			v.Rejected++
		default:
			v.Indeterminate++
		}
		lost, dup := false, false
		for _, n := range h.Nodes {
			if _, bad := h.FinalErr[n]; bad {
				continue
			}
			c := perNode[n][s.MsgID]
			switch {
			case out == Acked && c == 0 && !lost:
				lost = true
				v.fail(VLost, "%s (acked at %s) missing on node %s", s.MsgID, s.AckTime().Format(time.TimeOnly), n)
			case c > 1 && !dup:
				dup = true
				v.fail(VDuplicated, "%s (%s) stored %d times on node %s", s.MsgID, out, c, n)
			case out == Rejected && c > 0:
				v.fail(VRejected, "%s got 5xx but is stored on node %s", s.MsgID, n)
			}
		}
	}
	for _, n := range h.Nodes {
		for _, id := range sortedKeys(perNode[n]) {
			if !known[id] {
				v.fail(VUnknown, "node %s holds %q, which was never sent", n, id)
			}
		}
	}
}

func checkDigests(h *History, v *Verdict) {
	if len(h.Digests) == 0 {
		v.fail(VDigest, "no digests collected")
		return
	}
	first := h.Digests[0]
	for _, d := range h.Digests {
		switch {
		case d.Err != "":
			v.fail(VDigest, "node %s: %s", d.Node, d.Err)
		case d.Digest != first.Digest || d.AppliedIndex != first.AppliedIndex:
			v.fail(VDigest, "node %s digest %.12s@%d differs from node %s %.12s@%d",
				d.Node, d.Digest, d.AppliedIndex, first.Node, first.Digest, first.AppliedIndex)
		}
	}
}

// checkUIDs: per mailbox one UIDVALIDITY; per node and mailbox UIDNEXT
// never goes down and a UID first seen later is not below an earlier
// UIDNEXT; across all nodes and times a UID names one message only.
func checkUIDs(h *History, v *Verdict) {
	obs := slices.Clone(h.Observations)
	sort.SliceStable(obs, func(i, j int) bool { return obs[i].At.Before(obs[j].At) })
	type mbox struct{ acct, name string }
	type nodeBox struct {
		node string
		mbox
	}
	type binding struct {
		mbox
		uid uint32
	}
	validity := map[mbox]uint32{}
	last := map[nodeBox]*UIDObservation{}
	seen := map[nodeBox]map[uint32]bool{}
	gone := map[nodeBox]map[uint32]bool{}
	bound := map[binding]string{}
	for i := range obs {
		o := &obs[i]
		mb := mbox{o.Account, o.Mailbox}
		nb := nodeBox{o.Node, mb}
		if uv, ok := validity[mb]; ok && uv != o.UIDValidity {
			v.fail(VValidity, "%s/%s on node %s: UIDVALIDITY %d, earlier %d", o.Account, o.Mailbox, o.Node, o.UIDValidity, uv)
		}
		validity[mb] = o.UIDValidity
		prev := last[nb]
		if seen[nb] == nil {
			seen[nb], gone[nb] = map[uint32]bool{}, map[uint32]bool{}
		}
		markGone(prev, o, gone[nb])
		if prev != nil && o.UIDNext < prev.UIDNext {
			v.fail(VUIDOrder, "%s/%s on node %s: UIDNEXT %d after %d", o.Account, o.Mailbox, o.Node, o.UIDNext, prev.UIDNext)
		}
		for _, e := range o.Entries {
			if e.UID >= o.UIDNext {
				v.fail(VUIDOrder, "%s/%s on node %s: UID %d not below UIDNEXT %d", o.Account, o.Mailbox, o.Node, e.UID, o.UIDNext)
			}
			if prev != nil && !seen[nb][e.UID] && e.UID < prev.UIDNextBefore {
				v.fail(VUIDReuse, "%s/%s on node %s: UID %d appeared after UIDNEXT was already %d", o.Account, o.Mailbox, o.Node, e.UID, prev.UIDNextBefore)
			}
			if gone[nb][e.UID] {
				v.fail(VUIDReuse, "%s/%s on node %s: UID %d came back after it was expunged", o.Account, o.Mailbox, o.Node, e.UID)
			}
			seen[nb][e.UID] = true
			b := binding{mb, e.UID}
			if sha, ok := bound[b]; ok && sha != e.SHA256 {
				v.fail(VUIDReuse, "%s/%s UID %d on node %s is %.12s, earlier %.12s", o.Account, o.Mailbox, e.UID, o.Node, e.SHA256, sha)
			}
			bound[b] = e.SHA256
		}
		last[nb] = o
	}
}

// markGone records the UIDs of prev that cur no longer lists.
func markGone(prev, cur *UIDObservation, gone map[uint32]bool) {
	if prev == nil {
		return
	}
	now := make(map[uint32]bool, len(cur.Entries))
	for _, e := range cur.Entries {
		now[e.UID] = true
	}
	for _, e := range prev.Entries {
		if !now[e.UID] {
			gone[e.UID] = true
		}
	}
}

// checkConvergence: every message is in the same mailbox with the same
// flags on every node.
func checkConvergence(h *History, v *Verdict) {
	type where struct{ mailbox, flags string }
	first := map[string]where{}
	firstNode := map[string]string{}
	for _, s := range h.Final {
		w := where{s.Account + "/" + s.Mailbox, strings.Join(normFlags(s.Flags), " ")}
		if f, ok := first[s.MsgID]; !ok {
			first[s.MsgID], firstNode[s.MsgID] = w, s.Node
		} else if f != w && s.Node != firstNode[s.MsgID] {
			v.fail(VDiverged, "%s: %s [%s] on node %s, %s [%s] on node %s", s.MsgID, w.mailbox, w.flags, s.Node,
				f.mailbox, f.flags, firstNode[s.MsgID])
		}
	}
}

// normFlags sorts flags without \Recent (session-specific by RFC 3501).
func normFlags(fl []string) []string {
	out := make([]string, 0, len(fl))
	for _, f := range fl {
		if !strings.EqualFold(f, `\Recent`) {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

// checkModel replays each account's IMAP writes (one writer per account)
// and compares what was confirmed with the final state on each node.
func checkModel(h *History, v *Verdict) {
	type state struct {
		flags    []string
		flagsOK  bool
		mailbox  string
		locKnown bool
	}
	ops := slices.Clone(h.IMAPOps)
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].At.Before(ops[j].At) })
	model := map[string]*state{}
	for _, op := range ops {
		if op.Certain {
			v.IMAPCertain++
		} else {
			v.IMAPUncertain++
		}
		st := model[op.MsgID]
		if st == nil {
			st = &state{}
			model[op.MsgID] = st
		}
		switch {
		case op.Kind == OpStore && op.Certain:
			st.flags, st.flagsOK = sortedFlags(op.Flags, h.ManagedFlags), true
			st.mailbox, st.locKnown = op.Mailbox, true
		case op.Kind == OpStore:
			st.flagsOK = false
		case op.Kind == OpMove && op.Certain:
			st.mailbox, st.locKnown = op.Mailbox, true
		default:
			st.locKnown = false
		}
	}
	for _, s := range h.Final {
		st := model[s.MsgID]
		if st == nil {
			continue
		}
		if st.locKnown && s.Mailbox != st.mailbox {
			v.fail(VModel, "%s on node %s is in %s, last confirmed move/store put it in %s", s.MsgID, s.Node, s.Mailbox, st.mailbox)
		}
		got := sortedFlags(s.Flags, h.ManagedFlags)
		if st.flagsOK && !slices.Equal(got, st.flags) {
			v.fail(VModel, "%s on node %s has flags %v, last confirmed store set %v", s.MsgID, s.Node, got, st.flags)
		}
	}
}

// availability computes acks per second, success windows, stalls after
// each fault and ack latency.
func availability(h *History, v *Verdict) {
	var acks []time.Time
	var lat []time.Duration
	secs := int(h.End.Sub(h.Start)/time.Second) + 1
	if secs < 1 || h.End.IsZero() {
		secs = 1
	}
	v.AcksPerSecond = make([]int, secs)
	const win = 10 * time.Second
	v.Windows = make([]Window, int(h.End.Sub(h.Start)/win)+1)
	for i := range v.Windows {
		v.Windows[i].From = time.Duration(i) * win
	}
	for i := range h.Sends {
		for _, a := range h.Sends[i].Attempts {
			ok := a.Code >= 200 && a.Code < 300
			v.Replies[replyClass(a.Code)]++
			if w := int(a.End.Sub(h.Start) / win); w >= 0 && w < len(v.Windows) {
				v.Windows[w].Attempts++
				if ok {
					v.Windows[w].Acked++
				}
			}
			if !ok {
				continue
			}
			acks = append(acks, a.End)
			lat = append(lat, a.End.Sub(a.Start))
			if s := int(a.End.Sub(h.Start) / time.Second); s >= 0 && s < secs {
				v.AcksPerSecond[s]++
			}
		}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i].Before(acks[j]) })
	v.AckLatP50, v.AckLatP99 = percentile(lat, 0.50), percentile(lat, 0.99)
	if len(acks) > 0 {
		v.LongestStall = longestGap(acks, acks[0], h.End)
	}
	var killResume []time.Duration
	for i, f := range h.Faults {
		if f.Skipped != "" {
			continue
		}
		end := f.End.Add(30 * time.Second)
		if i+1 < len(h.Faults) && h.Faults[i+1].Start.Before(end) {
			end = h.Faults[i+1].Start
		}
		if end.After(h.End) {
			end = h.End
		}
		fs := FaultStall{Fault: f, Stall: longestGap(acks, f.Start, end), FirstAck: firstFreshAck(h, f.Start, end)}
		v.Stalls = append(v.Stalls, fs)
		if f.Kind == KindKillLeader {
			killResume = append(killResume, fs.FirstAck)
		}
	}
	v.LeaderKillP99 = percentile(killResume, 0.99)
}

func replyClass(code int) string {
	switch {
	case code == 0:
		return "none"
	case code < 300:
		return "2xx"
	case code < 500:
		return "4xx"
	}
	return "5xx"
}

// longestGap is the longest interval in [from, to] without an ack (acks
// sorted).
func longestGap(acks []time.Time, from, to time.Time) time.Duration {
	prev, longest := from, time.Duration(0)
	i := sort.Search(len(acks), func(i int) bool { return !acks[i].Before(from) })
	for ; i < len(acks) && !acks[i].After(to); i++ {
		longest = max(longest, acks[i].Sub(prev))
		prev = acks[i]
	}
	return max(longest, to.Sub(prev))
}

// firstFreshAck is the time from t to the first 250 of an attempt that
// started after t; the window length if there was none.
func firstFreshAck(h *History, t, end time.Time) time.Duration {
	best := end.Sub(t)
	for i := range h.Sends {
		for _, a := range h.Sends[i].Attempts {
			if a.Code >= 200 && a.Code < 300 && a.Start.After(t) && a.End.Sub(t) < best {
				best = a.End.Sub(t)
			}
		}
	}
	return best
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := max(int(math.Ceil(p*float64(len(s))))-1, 0)
	return s[i]
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
