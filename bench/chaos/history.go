// Package chaos is the Jepsen-style fault harness behind "raftmail chaos": it
// runs a real cluster of node and MX frontend processes, drives SMTP and
// IMAP workloads through it while a seeded nemesis kills, pauses and
// partitions processes, and then checks, trusting only what it reads back
// from every node, that nothing acknowledged was lost or stored twice.
//
// The files split the work: history.go (what was observed), checker.go
// (the verdict over a history), netns.go (network namespaces, partitions,
// slow links), procs.go (child processes), nemesis.go (the fault
// schedule), smtpload.go and imapload.go (the workloads), observe.go
// (periodic UID observations, final read-back), report.go and plot.go
// (summary table, JSON, PNG) and run.go (the whole run).
package chaos

import (
	"sort"
	"time"
)

// Outcome classifies one SMTP delivery after all its attempts.
type Outcome string

const (
	// Acked: some attempt got 250; the message must be on every node once.
	Acked Outcome = "acked"
	// Rejected: an attempt got 5xx (and none 250); it must be nowhere.
	Rejected Outcome = "rejected"
	// Indeterminate: only 4xx replies or broken connections; it may be
	// stored at most once.
	Indeterminate Outcome = "indeterminate"
)

// Attempt is one SMTP transaction for a message.
type Attempt struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Frontend int       `json:"frontend"`
	// Code is the final SMTP reply code, 0 when no reply came (connection
	// refused or broken).
	Code int    `json:"code"`
	Err  string `json:"err,omitempty"`
}

// Send is the history of one message: a unique Message-ID, its recipient
// and every attempt to deliver it (retries resend identical bytes).
type Send struct {
	MsgID    string    `json:"msgid"`
	Rcpt     string    `json:"rcpt"`
	Attempts []Attempt `json:"attempts"`
}

// Outcome derives the message's outcome from its attempts.
func (s *Send) Outcome() Outcome {
	rejected := false
	for _, a := range s.Attempts {
		switch {
		case a.Code >= 200 && a.Code < 300:
			return Acked
		case a.Code >= 500:
			rejected = true
		}
	}
	if rejected {
		return Rejected
	}
	return Indeterminate
}

// AckTime is the end of the first 250 attempt (zero if none).
func (s *Send) AckTime() time.Time {
	for _, a := range s.Attempts {
		if a.Code >= 200 && a.Code < 300 {
			return a.End
		}
	}
	return time.Time{}
}

// UIDEntry is one message of a mailbox listing: its UID and content hash.
type UIDEntry struct {
	UID    uint32 `json:"uid"`
	SHA256 string `json:"sha256"`
}

// UIDObservation is one node's listing of one mailbox at one moment.
type UIDObservation struct {
	At          time.Time `json:"at"`
	Node        string    `json:"node"`
	Account     string    `json:"account"`
	Mailbox     string    `json:"mailbox"`
	UIDValidity uint32    `json:"uid_validity"`
	// UIDNextBefore was read before the listing, UIDNext after it, so
	// every listed UID is below UIDNext and every UID that appears in a
	// later listing must be at least UIDNextBefore.
	UIDNextBefore uint32     `json:"uid_next_before"`
	UIDNext       uint32     `json:"uid_next"`
	Entries       []UIDEntry `json:"entries"`
}

// Stored is one message read back over IMAP from one node at the end.
type Stored struct {
	Node    string   `json:"node"`
	Account string   `json:"account"`
	Mailbox string   `json:"mailbox"`
	UID     uint32   `json:"uid"`
	MsgID   string   `json:"msgid"`
	Flags   []string `json:"flags"`
}

// IMAPOpKind is what an IMAP workload operation did.
type IMAPOpKind string

const (
	// OpStore replaced the managed flags of a message.
	OpStore IMAPOpKind = "store"
	// OpMove moved a message to another mailbox.
	OpMove IMAPOpKind = "move"
)

// IMAPOp is one IMAP write by the single writer of an account.
type IMAPOp struct {
	At      time.Time  `json:"at"`
	Account string     `json:"account"`
	MsgID   string     `json:"msgid"`
	Kind    IMAPOpKind `json:"kind"`
	// Certain: the server confirmed the effect (STORE echoed the flags,
	// MOVE answered COPYUID). Otherwise the effect is unknown (NO, BYE,
	// broken connection) and the message's state is no longer predicted.
	Certain bool `json:"certain"`
	// Flags are the managed flags after a certain store; Mailbox is where
	// the message is after a certain move (or was found for a store).
	Flags   []string `json:"flags,omitempty"`
	Mailbox string   `json:"mailbox,omitempty"`
}

// Fault is one nemesis action.
type Fault struct {
	Kind   string    `json:"kind"`
	Target string    `json:"target"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	// Skipped says why a fault was not injected (e.g. no netns).
	Skipped string `json:"skipped,omitempty"`
}

// NodeDigest is a node's /digest answer after the quiet period.
type NodeDigest struct {
	Node         string `json:"node"`
	AppliedIndex uint64 `json:"applied_index"`
	Digest       string `json:"digest"`
	Err          string `json:"err,omitempty"`
}

// History is everything a run observed; the checker reads nothing else.
type History struct {
	Start, End   time.Time
	Nodes        []string
	Sends        []Send
	IMAPOps      []IMAPOp
	Observations []UIDObservation
	Final        []Stored
	// FinalErr lists nodes whose read-back failed.
	FinalErr map[string]string
	Digests  []NodeDigest
	Faults   []Fault
	// ManagedFlags are the flags the IMAP workload sets; only they are
	// compared against its model.
	ManagedFlags []string
}

// sortedFlags returns the flags of fl that are in managed, sorted.
func sortedFlags(fl, managed []string) []string {
	keep := map[string]bool{}
	for _, m := range managed {
		keep[m] = true
	}
	var out []string
	for _, f := range fl {
		if keep[f] {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}
