package imap

import (
	"context"
	"errors"
	"log/slog"

	"github.com/emersion/go-imap/v2"

	"github.com/raftmail/raftmail/raftstore"
)

// errKind says which response code a missing mailbox gets.
type errKind int

const (
	// opPlain: NO [NONEXISTENT] for a missing mailbox (RFC 5530).
	opPlain errKind = iota
	// opTarget: NO [TRYCREATE] for a missing destination (COPY, MOVE,
	// APPEND; RFC 9051 §6.3.12, §6.4.7).
	opTarget
)

// Response codes go-imap v2 beta.8 has no constant for.
const (
	codeServerBug imap.ResponseCode = "SERVERBUG"
	codeOverQuota imap.ResponseCode = "OVERQUOTA" // RFC 9208 §5.3
	codeUseAttr   imap.ResponseCode = "USEATTR"   // RFC 6154 §6
)

// flagRecent is the obsolete \Recent flag, never stored (RFC 9051 removed
// it; SEARCH NEW/RECENT match nothing).
const flagRecent imap.Flag = `\Recent`

// imapError maps a store or infrastructure error to the IMAP response,
// logging server-side failures. It is the one place where errors become
// protocol (STYLE.md §8). A nil error maps to nil.
func imapError(logger *slog.Logger, kind errKind, err error) error {
	if err == nil {
		return nil
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie
	}
	no := func(code imap.ResponseCode, text string) error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
	}
	switch {
	case errors.Is(err, raftstore.ErrNoSuchMailbox), errors.Is(err, errMailboxGone):
		if kind == opTarget {
			return no(imap.ResponseCodeTryCreate, "No such mailbox")
		}
		return no(imap.ResponseCodeNonExistent, "No such mailbox")
	case errors.Is(err, raftstore.ErrMailboxExists):
		return no(imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, raftstore.ErrQuotaExceeded):
		return no(codeOverQuota, "Quota exceeded")
	case errors.Is(err, raftstore.ErrMailboxProtect):
		return no(imap.ResponseCodeCannot, "This mailbox cannot be deleted or renamed")
	case errors.Is(err, raftstore.ErrNoSuchMessage):
		return no(imap.ResponseCodeNonExistent, "No such message")
	case errors.Is(err, raftstore.ErrInvalid):
		return no(imap.ResponseCodeCannot, "Invalid request: "+err.Error())
	case errors.Is(err, raftstore.ErrTooLarge):
		return no(imap.ResponseCodeTooBig, "Message too large")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, raftstore.ErrNotLeader), errors.Is(err, raftstore.ErrClosed):
		logger.Warn("write not completed", "err", err)
		return no(imap.ResponseCodeUnavailable, "Cluster unavailable, try again later")
	}
	if isUnavailable(err) {
		logger.Warn("write not completed", "err", err)
		return no(imap.ResponseCodeUnavailable, "Cluster unavailable, try again later")
	}
	logger.Error("command failed", "err", err)
	return no(codeServerBug, "Internal server error")
}

// isUnavailable recognises infrastructure errors of the cluster layer
// without importing it (frontends depend on the Store interface only): an
// error that says so through a Temporary or Unavailable method.
func isUnavailable(err error) bool {
	var t interface{ Temporary() bool }
	if errors.As(err, &t) && t.Temporary() {
		return true
	}
	var u interface{ Unavailable() bool }
	return errors.As(err, &u) && u.Unavailable()
}

func badRequest(text string) error {
	return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: text}
}

func noCode(code imap.ResponseCode, text string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
}
