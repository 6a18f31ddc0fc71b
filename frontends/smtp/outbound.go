package smtp

import (
	"context"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/frontends/outbound"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// acceptRemote accepts a remote recipient on the submission profile (the
// user authenticated at MAIL). The message will be committed into the
// replicated outbound queue before 250 (DESIGN.md invariant 1), with the
// recipient's DSN parameters (RFC 3461 §4.1 NOTIFY, §4.2 ORCPT).
func (ss *session) acceptRemote(ctx context.Context, tx *transaction, to string, opts *smtp.RcptOptions) error {
	ss.mu.Lock()
	authed := ss.account != ""
	ss.mu.Unlock()
	if !authed {
		return ss.refuse(&smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"})
	}
	addr, err := raftstore.NormalizeAddress(to)
	if err != nil || !outbound.ValidDomain(addr[strings.LastIndexByte(addr, '@')+1:]) {
		return ss.refuse(&smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 2}, Message: "Malformed recipient domain"})
	}
	if v := ss.gc.filters.Rcpt(ctx, filters.Rcpt{To: to}); v.Action >= filters.TempFail {
		return ss.refuse(verdictError(v, filters.StageRcpt))
	}
	qr := command.QueueRcpt{Addr: to}
	if opts != nil {
		for _, n := range opts.Notify {
			qr.Notify = append(qr.Notify, string(n))
		}
		if opts.OriginalRecipient != "" {
			qr.ORcpt = fmt.Sprintf("%s;%s", opts.OriginalRecipientType, opts.OriginalRecipient)
		}
	}
	ss.mu.Lock()
	tx.rcpts = append(tx.rcpts, to)
	tx.remote = append(tx.remote, qr)
	ss.mu.Unlock()
	return nil
}

// newCommand builds what the transaction commits: a Deliver when every
// recipient is local, else one QueueAdd that queues the remote recipients
// and delivers the local ones in the same apply, the body stored once.
func (ss *session) newCommand(tx *transaction, key string, body []byte, junk bool) (*command.Command, error) {
	codec := ss.s.committer.Codec()
	if len(tx.remote) == 0 {
		return frontends.NewDeliver(codec, frontends.Envelope{From: tx.from, Rcpts: tx.rcpts, Junk: junk, Key: key}, body)
	}
	meta, err := frontends.ParseMeta(body)
	if err != nil {
		return nil, fmt.Errorf("parse message: %w", err)
	}
	remote := map[string]bool{}
	for _, r := range tx.remote {
		remote[strings.ToLower(r.Addr)] = true
	}
	var local []string
	for _, r := range tx.rcpts {
		if !remote[strings.ToLower(r)] {
			local = append(local, r)
		}
	}
	ss.mu.Lock()
	acct := ss.account
	ss.mu.Unlock()
	return &command.Command{Key: key, Payload: &command.QueueAdd{From: tx.from, Rcpts: tx.remote, Local: local,
		Blob: codec.NewBlob(body, meta), Ret: string(tx.opts.Return), EnvID: tx.opts.EnvelopeID, Account: acct}}, nil
}

// commitCommand commits a Deliver or QueueAdd, uploading a large body in
// pieces first.
func commitCommand(ctx context.Context, c frontends.Committer, cmd *command.Command) (raftstore.Result, error) {
	q, ok := cmd.Payload.(*command.QueueAdd)
	if !ok {
		return frontends.CommitDeliver(ctx, c, cmd)
	}
	commit := func(ctx context.Context, cc *command.Command) (raftstore.Result, error) {
		data, err := command.Marshal(cc)
		if err != nil {
			return raftstore.Result{}, err
		}
		return c.Commit(ctx, data)
	}
	if err := frontends.SendBlob(ctx, commit, &q.Blob, cmd.Key); err != nil {
		return raftstore.Result{}, err
	}
	return commit(ctx, cmd)
}
