package raftstore

import (
	"errors"
	"fmt"
)

// Business errors: deterministic outcomes of a command, identical on every
// node. They travel in Result.Code so they survive forwarding.
var (
	ErrNoSuchUser     = errors.New("no such user")
	ErrNoSuchDomain   = errors.New("no such domain")
	ErrNoSuchMailbox  = errors.New("no such mailbox")
	ErrMailboxExists  = errors.New("mailbox already exists")
	ErrAccountExists  = errors.New("account already exists")
	ErrAliasExists    = errors.New("address already in use")
	ErrDomainInUse    = errors.New("domain still has accounts or aliases")
	ErrQuotaExceeded  = errors.New("quota exceeded")
	ErrInvalid        = errors.New("invalid argument")
	ErrLeaseHeld      = errors.New("lease held by another holder")
	ErrNoSuchMessage  = errors.New("no such message")
	ErrMailboxProtect = errors.New("mailbox cannot be deleted or renamed")
)

// Infrastructure errors: the command's outcome is not known or it was never
// proposed.
var (
	// ErrNotLeader means this node cannot apply; forward to the leader.
	ErrNotLeader = errors.New("not the leader")
	// ErrTooLarge means the encoded command exceeds the entry size limit.
	ErrTooLarge = errors.New("command too large")
	// ErrClosed means the store has shut down.
	ErrClosed = errors.New("store closed")
)

// codes maps business errors to their wire codes. Codes are persistent: they
// are stored in the dedupe table and sent between nodes.
var codes = map[string]error{
	"no_user":      ErrNoSuchUser,
	"no_domain":    ErrNoSuchDomain,
	"no_mailbox":   ErrNoSuchMailbox,
	"mbox_exists":  ErrMailboxExists,
	"acct_exists":  ErrAccountExists,
	"alias_exists": ErrAliasExists,
	"domain_used":  ErrDomainInUse,
	"quota":        ErrQuotaExceeded,
	"invalid":      ErrInvalid,
	"lease_held":   ErrLeaseHeld,
	"no_message":   ErrNoSuchMessage,
	"mbox_protect": ErrMailboxProtect,
}

func codeOf(err error) string {
	for c, e := range codes {
		if errors.Is(err, e) {
			return c
		}
	}
	return "invalid"
}

// Status is a deterministic business outcome: empty Code means success.
type Status struct {
	Code string `msgpack:"c,omitempty" json:"code,omitempty"`
	Msg  string `msgpack:"m,omitempty" json:"msg,omitempty"`
}

func statusOf(err error) Status {
	if err == nil {
		return Status{}
	}
	return Status{Code: codeOf(err), Msg: err.Error()}
}

// Err returns the status as an error that matches the sentinel with
// errors.Is, or nil on success.
func (s Status) Err() error {
	if s.Code == "" {
		return nil
	}
	base, ok := codes[s.Code]
	if !ok {
		base = ErrInvalid
	}
	if s.Msg == "" || s.Msg == base.Error() {
		return base
	}
	return &codedError{base: base, msg: s.Msg}
}

type codedError struct {
	base error
	msg  string
}

func (e *codedError) Error() string { return e.msg }
func (e *codedError) Unwrap() error { return e.base }

func errf(base error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{base}, args...)...)
}

// RcptResult is the outcome of a delivery for one recipient.
type RcptResult struct {
	Rcpt      string `msgpack:"r" json:"rcpt"`
	Account   string `msgpack:"a,omitempty" json:"account,omitempty"`
	MailboxID uint64 `msgpack:"m,omitempty" json:"mailbox_id,omitempty"`
	UID       uint32 `msgpack:"u,omitempty" json:"uid,omitempty"`
	Status    Status `msgpack:"s,omitempty" json:"status,omitempty"`
}

// Result is what applying one command produced, identical on every node.
type Result struct {
	// Index is the Raft log index of the command; a reader on any node
	// waits for its applied index to reach it for read-your-writes.
	Index uint64 `msgpack:"-" json:"index"`
	// Duplicate is true when the key had been applied before and this is
	// the remembered result.
	Duplicate bool `msgpack:"-" json:"duplicate,omitempty"`
	// Status is the command's business outcome.
	Status Status `msgpack:"s,omitempty" json:"status,omitempty"`
	// Rcpts holds per-recipient outcomes of a Deliver.
	Rcpts []RcptResult `msgpack:"rc,omitempty" json:"rcpts,omitempty"`
	// MailboxID and UIDValidity name the target mailbox of Append, Copy and
	// CreateMailbox.
	MailboxID   uint64 `msgpack:"mb,omitempty" json:"mailbox_id,omitempty"`
	UIDValidity uint32 `msgpack:"uv,omitempty" json:"uid_validity,omitempty"`
	// UIDs are the UIDs assigned (Append, Copy) or affected (SetFlags,
	// Expunge), ascending; SrcUIDs the source UIDs of a Copy, in the same
	// order as UIDs.
	UIDs    []uint32 `msgpack:"u,omitempty" json:"uids,omitempty"`
	SrcUIDs []uint32 `msgpack:"su,omitempty" json:"src_uids,omitempty"`
	// Failed holds UIDs skipped by a SetFlags with UnchangedSince.
	Failed []uint32 `msgpack:"f,omitempty" json:"failed,omitempty"`
	// ModSeq is the MODSEQ the command assigned (its log index).
	ModSeq uint64 `msgpack:"ms,omitempty" json:"modseq,omitempty"`
}

// Err returns the command's business error, if any.
func (r Result) Err() error { return r.Status.Err() }

// Account is a mail account.
type Account struct {
	Address  string `msgpack:"addr" json:"address"`
	PassHash string `msgpack:"hash" json:"-"`
	Quota    int64  `msgpack:"quota,omitempty" json:"quota"`
	Used     int64  `msgpack:"used,omitempty" json:"used"`
	Created  int64  `msgpack:"created" json:"created"`
	// PassSeq changes with every password change; auth caches key on it.
	PassSeq uint64 `msgpack:"pseq,omitempty" json:"-"`
}

// OverQuota reports whether adding n bytes would exceed the quota.
func (a Account) OverQuota(n int64) bool {
	return a.Quota > 0 && a.Used+n > a.Quota
}

// Mailbox is one mailbox of an account.
type Mailbox struct {
	ID            uint64 `msgpack:"id" json:"id"`
	Account       string `msgpack:"acct" json:"account"`
	Name          string `msgpack:"name" json:"name"`
	SpecialUse    string `msgpack:"use,omitempty" json:"special_use,omitempty"`
	Subscribed    bool   `msgpack:"sub,omitempty" json:"subscribed"`
	UIDValidity   uint32 `msgpack:"uv" json:"uid_validity"`
	UIDNext       uint32 `msgpack:"un" json:"uid_next"`
	HighestModSeq uint64 `msgpack:"hms" json:"highest_modseq"`
	Messages      uint32 `msgpack:"n" json:"messages"`
	Bytes         int64  `msgpack:"bytes" json:"bytes"`
	Unseen        uint32 `msgpack:"unseen" json:"unseen"`
	Deleted       uint32 `msgpack:"deleted" json:"deleted"`
}

// Message is one message in a mailbox, without its body.
type Message struct {
	UID          uint32   `msgpack:"u" json:"uid"`
	ModSeq       uint64   `msgpack:"ms" json:"modseq"`
	Flags        []string `msgpack:"f,omitempty" json:"flags,omitempty"`
	InternalDate int64    `msgpack:"d" json:"internal_date"`
	Size         int64    `msgpack:"s" json:"size"`
	BlobID       [32]byte `msgpack:"b" json:"-"`
}

// HasFlag reports whether the message carries a flag (case-insensitive, as
// IMAP flags are).
func (m *Message) HasFlag(f string) bool {
	return hasFlag(m.Flags, f)
}

// Node is a cluster member's record in the replicated state.
type Node struct {
	ID       string `msgpack:"id" json:"id"`
	RaftAddr string `msgpack:"raft" json:"raft_addr"`
	APIAddr  string `msgpack:"api" json:"api_addr"`
}

// Well-known flags.
const (
	FlagSeen    = `\Seen`
	FlagDeleted = `\Deleted`
	FlagJunk    = `$Junk`
)

// DefaultMailboxes are created with every account, with their special use
// (RFC 6154).
var DefaultMailboxes = []struct{ Name, SpecialUse string }{
	{"INBOX", ""},
	{"Sent", `\Sent`},
	{"Drafts", `\Drafts`},
	{"Trash", `\Trash`},
	{"Junk", `\Junk`},
	{"Archive", `\Archive`},
}
