package imap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/raftmail/raftmail/frontends/mailmeta"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// loaded is what one FETCH needs of one message, read in one transaction.
type loaded struct {
	seq  uint32
	msg  raftstore.Message
	meta *mailmeta.Meta
	body []byte // decompressed at most once per FETCH (read-only: may be the body cache's)
	hdr  int    // headerEnd of body; -1 when its header is not in canonical form
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
	if s.cork != nil {
		s.cork.Cork()
		defer func() { _ = s.cork.Uncork() }()
	}
	for len(ts) > 0 {
		batch, n, lerr := s.loadBatch(sel.mb.id, ts, needMeta, needBody)
		for _, l := range batch {
			if err := writeMessage(w, l, options, newlySeen[l.msg.UID]); err != nil {
				return err
			}
		}
		if lerr != nil {
			return s.fail(opPlain, lerr)
		}
		ts = ts[n:]
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

// Bounds of one loadBatch: its read transaction stays short, and the bodies
// it holds (shared with the body cache, or fresh when too large for it)
// stay bounded.
const (
	batchMessages = 256
	batchBytes    = 16 << 20
)

// loadBatch reads the first messages of ts (a gone one is skipped: its
// EXPUNGE follows), with meta and bodies as asked, in one read transaction.
// It returns what it loaded, how many targets it consumed, and the error
// that stopped it, if any; what was loaded before the error is still
// returned.
func (s *session) loadBatch(mboxID uint64, ts []target, needMeta, needBody bool) (out []loaded, n int, err error) {
	err = s.view(func(tx *raftstore.ReadTx) error {
		var bytes int64
		mr := tx.MessageReader(mboxID)
		for n < len(ts) && n < batchMessages && bytes < batchBytes {
			t := ts[n]
			m, err := mr.Message(t.uid)
			if errors.Is(err, raftstore.ErrNoSuchMessage) {
				n++
				continue
			}
			if err != nil {
				return err
			}
			l := loaded{seq: t.seq, msg: m}
			if needBody {
				if m.Size > s.srv.cfg.MaxFetchBodyBytes {
					return noCode(imap.ResponseCodeLimit, fmt.Sprintf("Message of %d bytes exceeds the fetch limit", m.Size))
				}
				if l.body, err = tx.SharedBody(m.BlobID); err != nil {
					return fmt.Errorf("body of uid %d: %w", t.uid, err)
				}
				l.hdr = s.srv.headerEnds.get(m.BlobID, l.body)
				bytes += int64(len(l.body))
			}
			if needMeta {
				l.meta = s.meta(tx, &l)
			}
			out = append(out, l)
			n++
		}
		return nil
	})
	return out, n, err
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
		if body, err = tx.SharedBody(l.msg.BlobID); err != nil {
			return mailmeta.Describe(nil)
		}
	}
	return mailmeta.Describe(body)
}

// writeMessage writes one FETCH response. Everything is loaded before the
// response starts, so no store access happens while the connection's
// writer is held.
func writeMessage(w *imapserver.FetchWriter, l loaded, o *imap.FetchOptions, seen bool) error {
	rw := w.CreateMessage(l.seq)
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
		buf := bodySection(l.body, l.hdr, bs)
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

// bodySection answers a BODY[...] item. The common whole-message forms —
// BODY[], BODY[HEADER], BODY[TEXT], with or without <partial> — are slices
// of the stored bytes when the header is in canonical CRLF form; everything
// else (parts, header field lists, MIME, a header with bare LFs, which the
// parser rewrites) goes through imapserver's parser. Measured: parsing
// and re-serialising the header was 40% of a FETCH BODY[]'s server CPU.
// hdr is the body's headerEnd, -1 when not canonical.
func bodySection(body []byte, hdr int, bs *imap.FetchItemBodySection) []byte {
	end, ok := hdr, hdr >= 0
	if !ok || len(bs.Part) > 0 || len(bs.HeaderFields) > 0 || len(bs.HeaderFieldsNot) > 0 {
		return imapserver.ExtractBodySection(bytes.NewReader(body), bs)
	}
	var b []byte
	switch bs.Specifier {
	case imap.PartSpecifierNone:
		b = body
	case imap.PartSpecifierHeader:
		b = body[:end]
	case imap.PartSpecifierText:
		b = body[end:]
	default:
		return imapserver.ExtractBodySection(bytes.NewReader(body), bs)
	}
	return partial(b, bs.Partial)
}

// headerEnd returns the offset just past the blank line that ends the
// top-level header. ok is false unless the header is in canonical CRLF form
// (no bare LF) and ends with CRLF CRLF; the library's parser handles the
// rest. One pass, line by line: it runs for every message a FETCH sends
// (a search for CRLF CRLF plus a second pass over the lines was 17% of a
// follower's CPU under bench compare's FETCH load).
func headerEnd(body []byte) (int, bool) {
	if bytes.HasPrefix(body, crlf) {
		return 2, true
	}
	for i := 0; ; {
		k := bytes.IndexByte(body[i:], '\n')
		if k < 0 {
			return 0, false
		}
		k += i
		if k == 0 || body[k-1] != '\r' {
			return 0, false
		}
		if len(body) >= k+3 && body[k+1] == '\r' && body[k+2] == '\n' {
			return k + 3, true
		}
		i = k + 1
	}
}

// headerEndMemo remembers headerEnd per body, keyed by the body's SHA-256
// (never stale). Scanning the header of every message a FETCH sends was
// 17% of a follower's CPU under 16 FETCH clients even in one pass; a map
// lookup replaces it for mail read before. Bounded: at maxHeaderEnds
// entries (~3 MB) the map starts over.
type headerEndMemo struct {
	mu sync.RWMutex
	m  map[[32]byte]int32
}

const maxHeaderEnds = 1 << 16

// get returns headerEnd(body), or -1 when the header is not canonical.
func (h *headerEndMemo) get(id [32]byte, body []byte) int {
	h.mu.RLock()
	v, ok := h.m[id]
	h.mu.RUnlock()
	if ok {
		return int(v)
	}
	end, canonical := headerEnd(body)
	v = -1
	if canonical && end <= math.MaxInt32 {
		v = int32(end)
	}
	h.mu.Lock()
	if h.m == nil || len(h.m) >= maxHeaderEnds {
		h.m = make(map[[32]byte]int32)
	}
	h.m[id] = v
	h.mu.Unlock()
	return int(v)
}

var crlf = []byte("\r\n")

// partial applies a <offset.size> range as imapserver does.
func partial(b []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	if p.Offset > int64(len(b)) {
		return nil
	}
	end := p.Offset + p.Size
	if end > int64(len(b)) {
		end = int64(len(b))
	}
	return b[p.Offset:end]
}

func writeSection(wc io.WriteCloser, b []byte) error {
	_, werr := wc.Write(b)
	cerr := wc.Close()
	if werr != nil {
		return werr
	}
	return cerr
}
