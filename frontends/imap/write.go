package imap

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/frontends/mailmeta"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

func readOnlyErr() error {
	return noCode(imap.ResponseCodeCannot, "Mailbox is read-only (EXAMINE)")
}

// Store implements STORE and UID STORE (RFC 9051 §6.4.6). The change goes
// through the leader with this session as Origin, so the feed does not echo
// it back to this session; other sessions get FETCH FLAGS from their
// trackers. Unless .SILENT, the new flags are read back (read-your-writes)
// and written with the UID.
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, _ *imap.StoreOptions) error {
	sel, err := s.mustSelected()
	if err != nil {
		return err
	}
	if sel.readOnly {
		return readOnlyErr()
	}
	ts, err := s.resolve(sel, numSet)
	if err != nil || len(ts) == 0 {
		return err
	}
	op := map[imap.StoreFlagsOp]command.FlagOp{
		imap.StoreFlagsSet: command.FlagsReplace,
		imap.StoreFlagsAdd: command.FlagsAdd,
		imap.StoreFlagsDel: command.FlagsRemove,
	}[flags.Op]
	_, err = s.propose(&command.SetFlags{
		Account: s.account, MailboxID: sel.mb.id, UIDs: uidRanges(ts),
		Op: op, Flags: fromIMAPFlags(flags.Flags), Origin: s.id,
	})
	if err != nil {
		return s.fail(opPlain, err)
	}
	if flags.Silent {
		return nil
	}
	opts := &imap.FetchOptions{UID: true, Flags: true}
	for len(ts) > 0 {
		batch, n, err := s.loadBatch(sel.mb.id, ts, false, false)
		if err != nil {
			return s.fail(opPlain, err)
		}
		ts = ts[n:]
		for _, l := range batch {
			if err := writeMessage(w, l, opts, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// destination resolves a COPY/MOVE/APPEND target mailbox by name.
func (s *session) destination(name string) (raftstore.Mailbox, error) {
	var m raftstore.Mailbox
	err := s.view(func(tx *raftstore.ReadTx) error {
		var err error
		m, err = tx.MailboxByName(s.account, cleanName(name))
		return err
	})
	return m, err
}

// Copy implements COPY and UID COPY (RFC 9051 §6.4.7) with COPYUID (RFC
// 4315 §3). The store copies by reference: bodies are not duplicated.
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	return s.copyOrMove(numSet, dest, false)
}

// Move implements MOVE and UID MOVE (RFC 6851 §3) as one replicated
// command, so a message is never in both or neither mailbox. COPYUID comes
// first; the EXPUNGEs follow from the tracker in the command's poll.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	// The poll after MOVE writes the EXPUNGEs: copyOrMove waited until the
	// tracker queued them.
	data, err := s.copyOrMove(numSet, dest, true)
	if err != nil || data == nil {
		return err
	}
	return w.WriteCopyData(data)
}

func (s *session) copyOrMove(numSet imap.NumSet, dest string, move bool) (*imap.CopyData, error) {
	sel, err := s.mustSelected()
	if err != nil {
		return nil, err
	}
	if move && sel.readOnly {
		return nil, readOnlyErr()
	}
	dst, err := s.destination(dest)
	if err != nil {
		return nil, s.fail(opTarget, err)
	}
	ts, err := s.resolve(sel, numSet)
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, nil
	}
	if move && dst.ID == sel.mb.id {
		return nil, noCode(imap.ResponseCodeCannot, "Cannot move a message into its own mailbox")
	}
	res, err := s.propose(&command.Copy{Account: s.account, SrcID: sel.mb.id, DstID: dst.ID, UIDs: uidRanges(ts), Move: move})
	if err != nil {
		return nil, s.fail(opTarget, err)
	}
	s.junkMoved(sel.mb.id, dst, res.UIDs)
	if len(res.UIDs) > 0 && (move || dst.ID == sel.mb.id) {
		if err := s.waitView(sel.mb, res.Index); err != nil {
			return nil, s.fail(opPlain, err)
		}
	}
	if len(res.UIDs) == 0 {
		return nil, nil
	}
	return &imap.CopyData{
		UIDValidity: res.UIDValidity,
		SourceUIDs:  uidSetOf(res.SrcUIDs),
		DestUIDs:    uidSetOf(res.UIDs),
	}, nil
}

// Expunge implements EXPUNGE, UID EXPUNGE (RFC 9051 §6.4.3, §6.4.9) and
// the expunge of CLOSE. The store removes, at apply time, the messages that
// carry \Deleted then; the EXPUNGE responses come from the tracker in the
// poll that follows the command.
func (s *session) Expunge(_ *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	sel, err := s.mustSelected()
	if err != nil {
		return err
	}
	if sel.readOnly {
		return readOnlyErr()
	}
	p := &command.Expunge{Account: s.account, MailboxID: sel.mb.id, OnlyDeleted: true}
	if uids != nil {
		ts, err := s.resolve(sel, *uids)
		if err != nil || len(ts) == 0 {
			return err
		}
		p.UIDs = uidRanges(ts)
	}
	res, err := s.propose(p)
	if err != nil {
		return s.fail(opPlain, err)
	}
	if len(res.UIDs) > 0 {
		if err := s.waitView(sel.mb, res.Index); err != nil {
			return s.fail(opPlain, err)
		}
	}
	return nil
}

// Append implements APPEND (RFC 9051 §6.3.12) with APPENDUID (RFC 4315).
// The body is parsed (mailmeta) and compressed here, on this node, so the
// leader only orders the command.
func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if r.Size() > int64(s.srv.cfg.MaxAppendSize) {
		return nil, noCode(imap.ResponseCodeTooBig, "Message too large")
	}
	raw, err := io.ReadAll(io.LimitReader(r, int64(s.srv.cfg.MaxAppendSize)+1))
	if err != nil {
		return nil, fmt.Errorf("read literal: %w", err)
	}
	if len(raw) == 0 {
		return nil, badRequest("Empty message")
	}
	dst, err := s.destination(name)
	if err != nil {
		return nil, s.fail(opTarget, err)
	}
	meta, err := mailmeta.Parse(raw)
	if err != nil {
		return nil, s.fail(opPlain, err)
	}
	p := &command.Append{Account: s.account, MailboxID: dst.ID, Blob: s.srv.store.Codec().NewBlob(raw, meta)}
	if options != nil {
		p.Flags = fromIMAPFlags(options.Flags)
		if !options.Time.IsZero() {
			p.InternalDate = options.Time.UnixNano()
		}
	}
	if p.InternalDate == 0 {
		p.InternalDate = time.Now().UnixNano()
	}
	res, err := s.proposeAppend(p)
	if err != nil {
		return nil, s.fail(opTarget, err)
	}
	if sel := s.selection(); sel != nil && sel.mb.id == dst.ID {
		// The poll after APPEND must already report the new EXISTS.
		if err := s.waitView(sel.mb, res.Index); err != nil {
			return nil, s.fail(opPlain, err)
		}
	}
	var uid uint32
	if len(res.UIDs) > 0 {
		uid = res.UIDs[0]
	}
	s.logger.Debug("appended", "mailbox_id", dst.ID, "uid", uid, "bytes", len(raw), "raft_index", res.Index)
	return &imap.AppendData{UID: imap.UID(uid), UIDValidity: res.UIDValidity}, nil
}

// proposeAppend uploads a large body in pieces ahead of the Append (as
// deliveries do, so no raft entry is many megabytes), then commits it.
func (s *session) proposeAppend(p *command.Append) (raftstore.Result, error) {
	key := command.NewKey()
	if len(p.Blob.Data) > frontends.ChunkSize {
		ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.CommandTimeout)
		err := frontends.SendBlob(ctx, s.srv.store.Propose, &p.Blob, key)
		cancel()
		if err != nil {
			return raftstore.Result{}, &unavailableError{err}
		}
	}
	return s.proposeKey(key, p)
}
