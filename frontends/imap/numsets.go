package imap

import (
	"github.com/emersion/go-imap/v2"

	"github.com/raftmail/raftmail/raftstore/command"
)

// target is one message a command addresses: its UID and the sequence
// number the client knows it by.
type target struct {
	uid uint32
	seq uint32
}

// resolve maps a sequence or UID set (with "*" and SEARCHRES "$") to the
// messages of the selected mailbox that both the server view and the
// client know, in UID order. Messages the client has not been told about
// yet (seq 0) are left out, as are UIDs that do not exist: RFC 9051 §6.4.8
// ignores non-existent UIDs in a UID command.
func (s *session) resolve(sel *selection, set imap.NumSet) ([]target, error) {
	uids, seqs, _ := sel.mb.snapshot(sel.st)
	if imap.IsSearchRes(set) {
		set = sel.searchRes
	}
	var out []target
	switch set := set.(type) {
	case imap.SeqSet:
		var maxSeq uint32
		for _, q := range seqs {
			maxSeq = max(maxSeq, q)
		}
		st := staticSeq(set, maxSeq)
		for i, uid := range uids {
			if seqs[i] != 0 && st.Contains(seqs[i]) {
				out = append(out, target{uid: uid, seq: seqs[i]})
			}
		}
	case imap.UIDSet:
		var maxUID uint32
		for i, uid := range uids {
			if seqs[i] != 0 {
				maxUID = uid
			}
		}
		st := staticUID(set, maxUID)
		for i, uid := range uids {
			if seqs[i] != 0 && st.Contains(imap.UID(uid)) {
				out = append(out, target{uid: uid, seq: seqs[i]})
			}
		}
	case nil:
		return nil, nil
	default:
		return nil, badRequest("Unsupported number set")
	}
	return out, nil
}

// staticSeq replaces "*" (0) by the largest sequence number.
func staticSeq(set imap.SeqSet, maxSeq uint32) imap.SeqSet {
	out := make(imap.SeqSet, len(set))
	for i, r := range set {
		out[i] = imap.SeqRange{Start: r.Start, Stop: r.Stop}
		staticRange(&out[i].Start, &out[i].Stop, maxSeq)
	}
	return out
}

// staticUID replaces "*" (0) by the largest UID (RFC 9051 §9 seq-number:
// "*" is the largest number in use).
func staticUID(set imap.UIDSet, maxUID uint32) imap.UIDSet {
	out := make(imap.UIDSet, len(set))
	for i, r := range set {
		a, b := uint32(r.Start), uint32(r.Stop)
		staticRange(&a, &b, maxUID)
		out[i] = imap.UIDRange{Start: imap.UID(a), Stop: imap.UID(b)}
	}
	return out
}

func staticRange(start, stop *uint32, maxN uint32) {
	if *start == 0 {
		*start = maxN
	}
	if *stop == 0 {
		*stop = maxN
	}
	if *start > *stop {
		*start, *stop = *stop, *start
	}
}

// uidRanges compresses ascending UIDs into ranges for a command.
func uidRanges(ts []target) []command.UIDRange {
	var out []command.UIDRange
	for _, t := range ts {
		if n := len(out); n > 0 && out[n-1].Stop+1 == t.uid {
			out[n-1].Stop = t.uid
			continue
		}
		out = append(out, command.UIDRange{Start: t.uid, Stop: t.uid})
	}
	return out
}

func uidSetOf(uids []uint32) imap.UIDSet {
	var set imap.UIDSet
	for _, u := range uids {
		set.AddNum(imap.UID(u))
	}
	return set
}

func imapUID(u uint32) imap.UID { return imap.UID(u) }

func toIMAPFlags(fs []string) []imap.Flag {
	out := make([]imap.Flag, len(fs))
	for i, f := range fs {
		out[i] = imap.Flag(f)
	}
	return out
}

func fromIMAPFlags(fs []imap.Flag) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		if f == flagRecent || f == imap.FlagWildcard {
			continue
		}
		out = append(out, string(f))
	}
	return out
}
