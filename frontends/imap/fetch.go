package imap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/raftmail/raftmail/frontends/mailmeta"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// loaded is what one FETCH needs of one message, read in one transaction.
type loaded struct {
	msg  raftstore.Message
	meta *mailmeta.Meta
	body []byte // decompressed once per message per FETCH, if needed
}

// Fetch implements FETCH and UID FETCH (RFC 9051 §6.4.5). ENVELOPE and
// BODYSTRUCTURE come from the meta stored at delivery; the body is
// decompressed at most once per message, and only when a BODY[]/BINARY
// item asks for it. A non-PEEK body fetch sets \Seen through the leader
// first, so the answer already carries the new flags.
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	sel, err := s.mustSelected()
	if err != nil {
		return err
	}
	ts, err := s.resolve(sel, numSet)
	if err != nil || len(ts) == 0 {
		return err
	}
	var newlySeen map[uint32]bool
	if !sel.readOnly && setsSeen(options) {
		if newlySeen, err = s.markSeen(sel, ts); err != nil {
			return s.fail(opPlain, err)
		}
	}
	needMeta := options.Envelope || options.BodyStructure != nil
	needBody := len(options.BodySection) > 0 || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	for _, t := range ts {
		l, ok, err := s.load(sel.mb.id, t.uid, needMeta, needBody)
		if err != nil {
			return s.fail(opPlain, err)
		}
		if !ok {
			continue // expunged meanwhile; its EXPUNGE follows
		}
		if err := writeMessage(w, t.seq, l, options, newlySeen[t.uid]); err != nil {
			return err
		}
	}
	return nil
}

func setsSeen(o *imap.FetchOptions) bool {
	for _, bs := range o.BodySection {
		if !bs.Peek {
			return true
		}
	}
	for _, bs := range o.BinarySection {
		if !bs.Peek {
			return true
		}
	}
	return false
}

// markSeen proposes \Seen for the targets that lack it (RFC 9051 §6.4.5
// BODY[]) and returns those UIDs.
func (s *session) markSeen(sel *selection, ts []target) (map[uint32]bool, error) {
	var unseen []target
	err := s.view(func(tx *raftstore.ReadTx) error {
		for _, t := range ts {
			m, err := tx.Message(sel.mb.id, t.uid)
			if err == nil && !m.HasFlag(raftstore.FlagSeen) {
				unseen = append(unseen, t)
			}
		}
		return nil
	})
	if err != nil || len(unseen) == 0 {
		return nil, err
	}
	_, err = s.propose(&command.SetFlags{
		Account: s.account, MailboxID: sel.mb.id, UIDs: uidRanges(unseen),
		Op: command.FlagsAdd, Flags: []string{raftstore.FlagSeen}, Origin: s.id,
	})
	if err != nil {
		return nil, err
	}
	out := make(map[uint32]bool, len(unseen))
	for _, t := range unseen {
		out[t.uid] = true
	}
	return out, nil
}

// load reads one message (ok false if it is gone), its meta and body as
// asked, in one read transaction.
func (s *session) load(mboxID uint64, uid uint32, needMeta, needBody bool) (l loaded, ok bool, err error) {
	err = s.view(func(tx *raftstore.ReadTx) error {
		m, err := tx.Message(mboxID, uid)
		if errors.Is(err, raftstore.ErrNoSuchMessage) {
			return nil
		}
		if err != nil {
			return err
		}
		ok, l.msg = true, m
		if needBody {
			if m.Size > s.srv.cfg.MaxFetchBodyBytes {
				return noCode(imap.ResponseCodeLimit, fmt.Sprintf("Message of %d bytes exceeds the fetch limit", m.Size))
			}
			if l.body, err = tx.Body(m.BlobID); err != nil {
				return fmt.Errorf("body of uid %d: %w", uid, err)
			}
		}
		if needMeta {
			l.meta = s.meta(tx, &l)
		}
		return nil
	})
	return l, ok, err
}

// meta decodes the stored structure. Mail stored without one (or with an
// unreadable one) is parsed from its body instead, and logged, since that
// costs a decompression.
func (s *session) meta(tx *raftstore.ReadTx, l *loaded) *mailmeta.Meta {
	b, err := tx.BlobMeta(l.msg.BlobID)
	if err == nil && len(b) > 0 {
		if m, derr := mailmeta.Decode(b); derr == nil {
			return m
		}
	}
	s.logger.Warn("message has no usable stored structure, parsing body", "uid", l.msg.UID, "err", err)
	body := l.body
	if body == nil {
		if body, err = tx.Body(l.msg.BlobID); err != nil {
			return mailmeta.Describe(nil)
		}
	}
	return mailmeta.Describe(body)
}

// writeMessage writes one FETCH response. Everything is loaded before the
// response starts, so no store access happens while the connection's
// writer is held.
func writeMessage(w *imapserver.FetchWriter, seq uint32, l loaded, o *imap.FetchOptions, seen bool) error {
	rw := w.CreateMessage(seq)
	if o.UID {
		rw.WriteUID(imap.UID(l.msg.UID))
	}
	if o.Flags || seen {
		rw.WriteFlags(toIMAPFlags(l.msg.Flags))
	}
	if o.InternalDate {
		rw.WriteInternalDate(time.Unix(0, l.msg.InternalDate))
	}
	if o.RFC822Size {
		rw.WriteRFC822Size(l.msg.Size)
	}
	if o.Envelope {
		rw.WriteEnvelope(l.meta.Envelope())
	}
	if o.BodyStructure != nil {
		rw.WriteBodyStructure(l.meta.BodyStructure())
	}
	for _, bs := range o.BodySection {
		buf := imapserver.ExtractBodySection(bytes.NewReader(l.body), bs)
		if err := writeSection(rw.WriteBodySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bs := range o.BinarySection {
		buf := imapserver.ExtractBinarySection(bytes.NewReader(l.body), bs)
		if err := writeSection(rw.WriteBinarySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bss := range o.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(l.body), bss))
	}
	return rw.Close()
}

func writeSection(wc io.WriteCloser, b []byte) error {
	_, werr := wc.Write(b)
	cerr := wc.Close()
	if werr != nil {
		return werr
	}
	return cerr
}
