package mailmeta

import (
	"time"

	"github.com/emersion/go-imap/v2"
)

// ---- go-imap → raftmail ----

func fromEnvelope(e *imap.Envelope) *Envelope {
	if e == nil {
		return &Envelope{}
	}
	out := &Envelope{
		Subject:   e.Subject,
		From:      fromAddrs(e.From),
		Sender:    fromAddrs(e.Sender),
		ReplyTo:   fromAddrs(e.ReplyTo),
		To:        fromAddrs(e.To),
		Cc:        fromAddrs(e.Cc),
		Bcc:       fromAddrs(e.Bcc),
		InReplyTo: append([]string(nil), e.InReplyTo...),
		MessageID: e.MessageID,
	}
	if !e.Date.IsZero() {
		_, off := e.Date.Zone()
		out.HasDate, out.Date, out.TZ = true, e.Date.Unix(), int32(off)
	}
	return out
}

func fromAddrs(l []imap.Address) []Address {
	if len(l) == 0 {
		return nil
	}
	out := make([]Address, len(l))
	for i, a := range l {
		out[i] = Address{Name: a.Name, Mailbox: a.Mailbox, Host: a.Host}
	}
	return out
}

// fromBodyStructure converts go-imap's structure, bounding depth and the
// number of parts (n counts parts converted so far).
func fromBodyStructure(bs imap.BodyStructure, depth int, n *int) *Part {
	*n++
	if depth > maxDepth || *n > maxParts {
		return &Part{Type: "text", Subtype: "plain"}
	}
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		return fromMultiPart(bs, depth, n)
	case *imap.BodyStructureSinglePart:
		return fromSinglePart(bs, depth, n)
	}
	return &Part{Type: "text", Subtype: "plain"}
}

func fromMultiPart(bs *imap.BodyStructureMultiPart, depth int, n *int) *Part {
	p := &Part{Type: "multipart", Subtype: bs.Subtype}
	if p.Subtype == "" {
		p.Subtype = "mixed"
	}
	for _, c := range bs.Children {
		if c == nil {
			continue
		}
		p.Children = append(p.Children, fromBodyStructure(c, depth+1, n))
	}
	if ext := bs.Extended; ext != nil {
		p.Params = sortedParams(ext.Params)
		p.Language = append([]string(nil), ext.Language...)
		p.Location = ext.Location
		if d := ext.Disposition; d != nil {
			p.Disposition, p.DispParams = d.Value, sortedParams(d.Params)
		}
	}
	return p
}

func fromSinglePart(bs *imap.BodyStructureSinglePart, depth int, n *int) *Part {
	t, st := splitType(bs.Type, bs.Subtype)
	p := &Part{
		Type: t, Subtype: st,
		Params:      sortedParams(bs.Params),
		ID:          bs.ID,
		Description: bs.Description,
		Encoding:    bs.Encoding,
		Size:        bs.Size,
	}
	if bs.Text != nil {
		p.Lines = bs.Text.NumLines
	}
	if m := bs.MessageRFC822; m != nil {
		p.Lines = m.NumLines
		p.Env = fromEnvelope(m.Envelope)
		if m.BodyStructure != nil {
			p.Msg = fromBodyStructure(m.BodyStructure, depth+1, n)
		}
	}
	if ext := bs.Extended; ext != nil {
		p.Language = append([]string(nil), ext.Language...)
		p.Location = ext.Location
		if d := ext.Disposition; d != nil {
			p.Disposition, p.DispParams = d.Value, sortedParams(d.Params)
		}
	}
	return p
}

// ---- raftmail → go-imap ----

// Envelope returns the top-level ENVELOPE for FETCH.
func (m *Meta) Envelope() *imap.Envelope { return m.Env.IMAP() }

// BodyStructure returns the BODYSTRUCTURE for FETCH, always with extension
// data and always well-formed for go-imap's encoder (a multipart has at
// least one child, an embedded message has a structure).
func (m *Meta) BodyStructure() imap.BodyStructure { return m.Body.IMAP() }

// IMAP converts an envelope to go-imap's type. A nil envelope gives an
// empty one.
func (e *Envelope) IMAP() *imap.Envelope {
	if e == nil {
		return &imap.Envelope{}
	}
	out := &imap.Envelope{
		Subject:   e.Subject,
		From:      toAddrs(e.From),
		Sender:    toAddrs(e.Sender),
		ReplyTo:   toAddrs(e.ReplyTo),
		To:        toAddrs(e.To),
		Cc:        toAddrs(e.Cc),
		Bcc:       toAddrs(e.Bcc),
		InReplyTo: append([]string(nil), e.InReplyTo...),
		MessageID: e.MessageID,
	}
	if e.HasDate {
		out.Date = time.Unix(e.Date, 0).In(time.FixedZone("", int(e.TZ)))
	}
	return out
}

func toAddrs(l []Address) []imap.Address {
	if len(l) == 0 {
		return nil
	}
	out := make([]imap.Address, len(l))
	for i, a := range l {
		out[i] = imap.Address{Name: a.Name, Mailbox: a.Mailbox, Host: a.Host}
	}
	return out
}

// IMAP converts a part to go-imap's body structure. A nil part gives an
// empty text/plain.
func (p *Part) IMAP() imap.BodyStructure {
	return p.toIMAP(0)
}

func (p *Part) toIMAP(depth int) imap.BodyStructure {
	if p == nil || depth > maxDepth+2 {
		p = &Part{Type: "text", Subtype: "plain"}
	}
	if p.IsMultipart() {
		return p.toMultiPart(depth)
	}
	t, st := splitType(p.Type, p.Subtype)
	bs := &imap.BodyStructureSinglePart{
		Type: t, Subtype: st,
		Params:      paramMap(p.Params),
		ID:          p.ID,
		Description: p.Description,
		Encoding:    p.Encoding,
		Size:        p.Size,
		Extended:    &imap.BodyStructureSinglePartExt{Disposition: p.disposition(), Language: p.Language, Location: p.Location},
	}
	switch {
	case t == "message" && (st == "rfc822" || st == "global"):
		bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      p.Env.IMAP(),
			BodyStructure: p.Msg.toIMAP(depth + 1),
			NumLines:      p.Lines,
		}
	case t == "text":
		bs.Text = &imap.BodyStructureText{NumLines: p.Lines}
	}
	return bs
}

func (p *Part) toMultiPart(depth int) imap.BodyStructure {
	bs := &imap.BodyStructureMultiPart{
		Subtype:  p.Subtype,
		Extended: &imap.BodyStructureMultiPartExt{Params: paramMap(p.Params), Disposition: p.disposition(), Language: p.Language, Location: p.Location},
	}
	if bs.Subtype == "" {
		bs.Subtype = "mixed"
	}
	for _, c := range p.Children {
		bs.Children = append(bs.Children, c.toIMAP(depth+1))
	}
	if len(bs.Children) == 0 {
		// RFC 9051 §9 body-type-mpart needs one body at least.
		bs.Children = append(bs.Children, (*Part)(nil).toIMAP(depth+1))
	}
	return bs
}

func (p *Part) disposition() *imap.BodyStructureDisposition {
	if p.Disposition == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: p.Disposition, Params: paramMap(p.DispParams)}
}
