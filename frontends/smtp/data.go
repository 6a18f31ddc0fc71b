package smtp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/raftstore"
)

// deliver runs the body filters, builds the stored message (trace headers
// on top) and commits it; 250 only after the commit (DESIGN.md invariant
// 1). One log line per transaction.
func (ss *session) deliver(tx *transaction, raw []byte) error {
	key := contentKey(tx.from, tx.rcpts, raw)
	log := lazyLog{l: ss.logger, a: []any{"tx", tx.id, "delivery_id", key, "from", tx.from, "rcpts", len(tx.rcpts), "size", len(raw)}}

	fctx, cancel := context.WithTimeout(ss.s.ctx, ss.s.cfg.CommitTimeout)
	v := ss.gc.filters.Data(fctx, &filters.Message{From: tx.from, Rcpts: tx.rcpts, Body: filters.BytesBody(raw)})
	cancel()
	log = log.With("score", v.Score, "scores", scoreList(v.Scores))
	if v.Action >= filters.TempFail {
		e := verdictError(v, filters.StageData)
		log.Info("smtp transaction", "verdict", v.Action.String(), "check", v.Check, "code", e.Code, "err", v.Err,
			"ms", time.Since(tx.start).Milliseconds())
		return e
	}

	var buf bytes.Buffer
	buf.Grow(len(raw) + 512)
	buf.WriteString("Return-Path: <" + tx.from + ">\r\n") // RFC 5321 §4.4, at final delivery
	for _, h := range v.Headers {
		buf.WriteString(headerLine(h.Key, h.Value))
	}
	buf.WriteString(ss.received(tx, key))
	buf.Write(raw)

	cmd, err := ss.newCommand(tx, key, buf.Bytes(), v.Action == filters.Tag)
	if err != nil {
		log.Error("build delivery", "err", err)
		return errLocalTemp
	}
	ctx, cancel := context.WithTimeout(ss.s.ctx, ss.s.cfg.CommitTimeout)
	defer cancel()
	res, err := commitCommand(ctx, ss.s.committer, cmd)
	log = log.With("verdict", v.Action.String(), "ms", time.Since(tx.start).Milliseconds())
	if err != nil {
		e := commitError(err)
		log.Warn("smtp transaction", "code", e.Code, "err", err)
		return e
	}
	if err := res.Err(); err != nil {
		e := storeError(err)
		log.Warn("smtp transaction", "code", e.Code, "raft_index", res.Index, "err", err)
		return e
	}
	ok := 0
	var first error
	for _, rr := range res.Rcpts {
		if err := rr.Status.Err(); err != nil {
			if first == nil {
				first = err
			}
			log.Warn("recipient refused by store after RCPT", "rcpt", rr.Rcpt, "err", err)
			continue
		}
		ok++
	}
	if ok == 0 && first != nil {
		e := storeError(first)
		log.Warn("smtp transaction", "code", e.Code, "raft_index", res.Index, "err", first)
		return e
	}
	log.Info("smtp transaction", "code", 250, "raft_index", res.Index, "accepted", ok, "duplicate", res.Duplicate,
		"junk", v.Action == filters.Tag)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: committed as " + key}
}

// lazyLog collects a transaction's log attributes and formats them only
// when a record is written: slog.Logger.With formats at once, which cost
// every transaction three formattings even at log level warn.
type lazyLog struct {
	l *slog.Logger
	a []any
}

func (g lazyLog) With(args ...any) lazyLog { return lazyLog{l: g.l, a: g.args(args)} }

// args appends to a copy, so sibling loggers never share a backing array.
func (g lazyLog) args(args []any) []any {
	return append(g.a[:len(g.a):len(g.a)], args...)
}

func (g lazyLog) Info(msg string, args ...any)  { g.log(slog.LevelInfo, msg, args) }
func (g lazyLog) Warn(msg string, args ...any)  { g.log(slog.LevelWarn, msg, args) }
func (g lazyLog) Error(msg string, args ...any) { g.log(slog.LevelError, msg, args) }

func (g lazyLog) log(level slog.Level, msg string, args []any) {
	if ctx := context.Background(); g.l.Enabled(ctx, level) {
		g.l.Log(ctx, level, msg, g.args(args)...)
	}
}

// contentKey is the idempotency key of a delivery: a hash of the envelope
// and the message as received. A retry inside the cluster reuses it (a
// leader change never stores twice), and so does a client that resends
// the same message after a 451 whose commit went through after all: the
// store remembers keys for 24 hours and answers the remembered result.
func contentKey(from string, rcpts []string, raw []byte) string {
	h := sha256.New()
	h.Write([]byte(from))
	for _, r := range rcpts {
		h.Write([]byte{0})
		h.Write([]byte(strings.ToLower(r)))
	}
	h.Write([]byte{0, 0})
	h.Write(raw)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// received builds the trace header. RFC 5321 §4.4; protocol names RFC 3848
// and RFC 6531 §3.7.3.
func (ss *session) received(tx *transaction, key string) string {
	proto := "ESMTP"
	if tx.opts.UTF8 {
		proto = "UTF8SMTP"
	}
	tlsInfo := ""
	if st, ok := ss.conn.TLSConnectionState(); ok {
		proto += "S"
		tlsInfo = fmt.Sprintf("\r\n\t(using %s with cipher %s)", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	}
	ss.mu.Lock()
	if ss.account != "" {
		proto += "A"
	}
	ss.mu.Unlock()
	ip := ss.gc.ip
	lit := "[" + ip.String() + "]"
	if ip.Is6() {
		lit = "[IPv6:" + ip.String() + "]"
	}
	forClause := ""
	if len(tx.rcpts) == 1 {
		forClause = "\r\n\tfor <" + tx.rcpts[0] + ">"
	}
	return fmt.Sprintf("Received: from %s (%s)%s\r\n\tby %s (raftmail) with %s id %s%s;\r\n\t%s\r\n",
		sanitize(ss.helo), lit, tlsInfo, ss.s.cfg.Hostname, proto, key, forClause, time.Now().Format(time.RFC1123Z))
}

// headerLine formats one header field, refusing to let a value inject
// line breaks.
func headerLine(k, v string) string {
	return sanitize(k) + ": " + sanitize(v) + "\r\n"
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, s)
}

// commitError maps a failed commit to the reply: 552 for a body the store
// refuses as too large, else 451 4.3.0 (the client retries; the key makes
// the retry safe).
func commitError(err error) *smtp.SMTPError {
	if errors.Is(err, raftstore.ErrTooLarge) {
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too big for the store"}
	}
	return errCommitTemp
}

// storeError maps a business outcome of the Deliver to a reply.
func storeError(err error) *smtp.SMTPError {
	switch {
	case errors.Is(err, raftstore.ErrNoSuchUser), errors.Is(err, raftstore.ErrNoSuchDomain):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	case errors.Is(err, raftstore.ErrQuotaExceeded):
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full, try again later"}
	case errors.Is(err, raftstore.ErrInvalid):
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message refused by the store"}
	}
	return errLocalTemp
}
