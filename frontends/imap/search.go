package imap

import (
	"bytes"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
)

// maxSearchPartBytes bounds how much of one decoded text part body search
// reads.
const maxSearchPartBytes = 16 << 20

// Search implements SEARCH and UID SEARCH (RFC 9051 §6.4.4) with ESEARCH
// results (RFC 4731, done by the server from SearchData) and SEARCHRES
// (RFC 5182). Flags, sizes, dates and sets are answered from the message
// records; SENTBEFORE/SENTON/SENTSINCE from the stored envelope; HEADER,
// BODY and TEXT decompress the body (once per message).
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	sel, err := s.mustSelected()
	if err != nil {
		return nil, err
	}
	uids, seqs, _ := sel.mb.snapshot(sel.st)
	var maxSeq, maxUID uint32
	for i, q := range seqs {
		if q != 0 {
			maxSeq, maxUID = max(maxSeq, q), uids[i]
		}
	}
	c := staticCriteria(criteria, sel.searchRes, maxSeq, maxUID)
	needMeta, needBody := criteriaNeeds(&c)
	data := &imap.SearchData{}
	var seqSet imap.SeqSet
	var uidSet imap.UIDSet
	ts := make([]target, 0, len(uids))
	for i, uid := range uids {
		if seqs[i] != 0 {
			ts = append(ts, target{uid: uid, seq: seqs[i]})
		}
	}
	for len(ts) > 0 {
		batch, n, err := s.loadBatch(sel.mb.id, ts, needMeta, needBody)
		if err != nil {
			return nil, s.fail(opPlain, err)
		}
		ts = ts[n:]
		for i := range batch {
			l := &batch[i]
			if !matches(&c, &candidate{seq: l.seq, l: l}) {
				continue
			}
			uid := l.msg.UID
			uidSet.AddNum(imap.UID(uid))
			num := uid
			if kind == imapserver.NumKindSeq {
				num = l.seq
				seqSet.AddNum(num)
			}
			if data.Min == 0 || num < data.Min {
				data.Min = num
			}
			data.Max = max(data.Max, num)
			data.Count++
		}
	}
	data.All = uidSet
	if kind == imapserver.NumKindSeq {
		data.All = seqSet
	}
	if options != nil && options.ReturnSave {
		sel.searchRes = uidSet
	}
	return data, nil
}

// staticCriteria copies the criteria with "*" and "$" resolved.
func staticCriteria(c *imap.SearchCriteria, saved imap.UIDSet, maxSeq, maxUID uint32) imap.SearchCriteria {
	out := *c
	out.SeqNum, out.UID = nil, nil
	for _, set := range c.SeqNum {
		out.SeqNum = append(out.SeqNum, staticSeq(set, maxSeq))
	}
	for _, set := range c.UID {
		if imap.IsSearchRes(set) {
			set = saved
		}
		out.UID = append(out.UID, staticUID(set, maxUID))
	}
	out.Not = make([]imap.SearchCriteria, len(c.Not))
	for i := range c.Not {
		out.Not[i] = staticCriteria(&c.Not[i], saved, maxSeq, maxUID)
	}
	out.Or = make([][2]imap.SearchCriteria, len(c.Or))
	for i := range c.Or {
		out.Or[i][0] = staticCriteria(&c.Or[i][0], saved, maxSeq, maxUID)
		out.Or[i][1] = staticCriteria(&c.Or[i][1], saved, maxSeq, maxUID)
	}
	return out
}

func criteriaNeeds(c *imap.SearchCriteria) (meta, body bool) {
	meta = !c.SentSince.IsZero() || !c.SentBefore.IsZero()
	body = len(c.Header) > 0 || len(c.Body) > 0 || len(c.Text) > 0
	for i := range c.Not {
		m, b := criteriaNeeds(&c.Not[i])
		meta, body = meta || m, body || b
	}
	for i := range c.Or {
		for j := 0; j < 2; j++ {
			m, b := criteriaNeeds(&c.Or[i][j])
			meta, body = meta || m, body || b
		}
	}
	return meta, body
}

// candidate is a message under test; the parsed body is built lazily and
// shared by every criterion.
type candidate struct {
	seq    uint32
	l      *loaded
	header *mail.Header
}

func (c *candidate) parsedHeader() *mail.Header {
	if c.header == nil {
		h := mail.Header{}
		if e, err := gomessage.Read(bytes.NewReader(c.l.body)); e != nil && (err == nil || gomessage.IsUnknownCharset(err) || gomessage.IsUnknownEncoding(err)) {
			h = mail.Header{Header: e.Header}
		}
		c.header = &h
	}
	return c.header
}

func (c *candidate) entity() *gomessage.Entity {
	e, err := gomessage.Read(bytes.NewReader(c.l.body))
	if e == nil || (err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err)) {
		return nil
	}
	return e
}

// matches evaluates the criteria (all must hold: RFC 9051 §6.4.4).
func matches(c *imap.SearchCriteria, m *candidate) bool {
	msg := &m.l.msg
	for _, set := range c.SeqNum {
		if !set.Contains(m.seq) {
			return false
		}
	}
	for _, set := range c.UID {
		if !set.Contains(imap.UID(msg.UID)) {
			return false
		}
	}
	if !matchDate(time.Unix(0, msg.InternalDate).UTC(), c.Since, c.Before) {
		return false
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		if m.l.meta == nil || m.l.meta.Env == nil || !m.l.meta.Env.HasDate ||
			!matchDate(m.l.meta.Envelope().Date, c.SentSince, c.SentBefore) {
			return false
		}
	}
	for _, f := range c.Flag {
		if f == flagRecent || !msg.HasFlag(string(f)) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if f != flagRecent && msg.HasFlag(string(f)) {
			return false
		}
	}
	if (c.Larger != 0 && msg.Size <= c.Larger) || (c.Smaller != 0 && msg.Size >= c.Smaller) {
		return false
	}
	return matchText(c, m) && matchLogic(c, m)
}

func matchText(c *imap.SearchCriteria, m *candidate) bool {
	for _, hf := range c.Header {
		if !matchHeaderFields(m.parsedHeader().FieldsByKey(hf.Key), hf.Value) {
			return false
		}
	}
	for _, t := range c.Body {
		if !matchEntity(m.entity(), t, false) {
			return false
		}
	}
	for _, t := range c.Text {
		if !matchEntity(m.entity(), t, true) {
			return false
		}
	}
	return true
}

func matchLogic(c *imap.SearchCriteria, m *candidate) bool {
	for i := range c.Not {
		if matches(&c.Not[i], m) {
			return false
		}
	}
	for i := range c.Or {
		if !matches(&c.Or[i][0], m) && !matches(&c.Or[i][1], m) {
			return false
		}
	}
	return true
}

// matchDate compares dates only, disregarding time and zone (RFC 9051
// §6.4.4 SINCE/BEFORE/ON).
func matchDate(t, since, before time.Time) bool {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && d.Before(time.Date(since.Year(), since.Month(), since.Day(), 0, 0, 0, 0, time.UTC)) {
		return false
	}
	if !before.IsZero() && !d.Before(time.Date(before.Year(), before.Month(), before.Day(), 0, 0, 0, 0, time.UTC)) {
		return false
	}
	return true
}

// matchHeaderFields: an empty pattern matches any message with the field
// (RFC 9051 §6.4.4 HEADER); otherwise a case-insensitive substring of the
// decoded value.
func matchHeaderFields(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		if strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

// matchEntity searches decoded text parts (and headers for TEXT),
// recursing into multiparts.
func matchEntity(e *gomessage.Entity, pattern string, withHeader bool) bool {
	if e == nil {
		return false
	}
	if pattern == "" {
		return true
	}
	if withHeader && matchHeaderFields(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if p == nil || (err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err)) {
				return false
			}
			if matchEntity(p, pattern, withHeader) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	b, _ := io.ReadAll(io.LimitReader(e.Body, maxSearchPartBytes))
	return strings.Contains(strings.ToLower(string(b)), strings.ToLower(pattern))
}
