// Package mailmeta parses a message once, at delivery or APPEND, into the
// IMAP ENVELOPE and BODYSTRUCTURE (RFC 9051 §7.5.2) and encodes them in a
// small, stable msgpack form that the store keeps beside the compressed
// body. IMAP then answers ENVELOPE and BODYSTRUCTURE without decompressing
// a body.
//
// The encoded form holds only raftmail's own structs: no go-imap type is
// persisted, so a library upgrade cannot change stored data. Field tags are
// a persistent format: never rename a tag; add optional fields only.
package mailmeta

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
	"github.com/vmihailenco/msgpack/v5"
)

// Version is the format version written into every Meta.
const Version = 1

// maxDepth bounds the nesting of parts that is kept; deeper parts are
// replaced by an empty text/plain leaf so a hostile message cannot make the
// encoded form (or a FETCH response) arbitrarily deep.
const maxDepth = 32

// maxParts bounds the number of parts kept in one structure.
const maxParts = 2000

// Meta is the parsed description of one message.
type Meta struct {
	// V is the format version (Version).
	V uint8 `msgpack:"v"`
	// Env is the top-level envelope.
	Env *Envelope `msgpack:"e,omitempty"`
	// Body is the body structure.
	Body *Part `msgpack:"b,omitempty"`
	// Fallback is true when parsing failed and Body is the minimal
	// text/plain structure.
	Fallback bool `msgpack:"fb,omitempty"`
}

// Envelope mirrors the IMAP ENVELOPE with UTF-8 strings.
type Envelope struct {
	// Date is unix seconds; TZ the zone offset in seconds east of UTC.
	// HasDate distinguishes "no Date:" from the epoch.
	HasDate   bool      `msgpack:"hd,omitempty"`
	Date      int64     `msgpack:"d,omitempty"`
	TZ        int32     `msgpack:"tz,omitempty"`
	Subject   string    `msgpack:"s,omitempty"`
	From      []Address `msgpack:"f,omitempty"`
	Sender    []Address `msgpack:"sn,omitempty"`
	ReplyTo   []Address `msgpack:"rt,omitempty"`
	To        []Address `msgpack:"t,omitempty"`
	Cc        []Address `msgpack:"c,omitempty"`
	Bcc       []Address `msgpack:"bc,omitempty"`
	InReplyTo []string  `msgpack:"ir,omitempty"`
	MessageID string    `msgpack:"id,omitempty"`
}

// Address is one address of an envelope.
type Address struct {
	Name    string `msgpack:"n,omitempty"`
	Mailbox string `msgpack:"m,omitempty"`
	Host    string `msgpack:"h,omitempty"`
}

// Param is one MIME parameter; parameters are kept sorted by key so the
// encoding is deterministic (a Go map's order is not).
type Param struct {
	K string `msgpack:"k"`
	V string `msgpack:"v"`
}

// Part is one node of the body structure.
type Part struct {
	// Type and Subtype, lower case as go-message reports them.
	Type    string  `msgpack:"t"`
	Subtype string  `msgpack:"st"`
	Params  []Param `msgpack:"p,omitempty"`

	// Single-part fields.
	ID          string `msgpack:"id,omitempty"`
	Description string `msgpack:"ds,omitempty"`
	Encoding    string `msgpack:"en,omitempty"`
	Size        uint32 `msgpack:"sz,omitempty"`
	// Lines is the line count of text/* and message/rfc822 parts.
	Lines int64 `msgpack:"ln,omitempty"`
	// Env and Msg describe an embedded message/rfc822 or message/global.
	Env *Envelope `msgpack:"me,omitempty"`
	Msg *Part     `msgpack:"mb,omitempty"`

	// Children of a multipart.
	Children []*Part `msgpack:"ch,omitempty"`

	// Extension data (RFC 9051 §7.5.2 body-ext-1part / body-ext-mpart).
	Disposition string   `msgpack:"dp,omitempty"`
	DispParams  []Param  `msgpack:"dpp,omitempty"`
	Language    []string `msgpack:"lg,omitempty"`
	Location    string   `msgpack:"lc,omitempty"`
}

// IsMultipart reports whether the part is a multipart/*.
func (p *Part) IsMultipart() bool { return p.Type == "multipart" }

// Parse describes a raw RFC 5322 message and returns the encoded Meta. It
// never panics: a message go-message cannot make sense of gets a minimal
// text/plain structure (Meta.Fallback) and whatever envelope could be read.
// The output depends only on raw (deterministic).
func Parse(raw []byte) ([]byte, error) {
	m := Describe(raw)
	b, err := Encode(m)
	if err != nil {
		return nil, fmt.Errorf("mailmeta: %w", err)
	}
	return b, nil
}

// Describe parses a raw message into a Meta, with the same guarantees as
// Parse.
func Describe(raw []byte) *Meta {
	m := &Meta{V: Version}
	h, herr := safeHeader(raw) // read once: the envelope and the body check share it
	m.Env = safeEnvelope(h, herr)
	var body *Part
	ok := false
	if herr == nil {
		body, ok = safeBody(raw)
	}
	if !ok {
		body = fallbackPart(raw)
		m.Fallback = true
	}
	m.Body = body
	return m
}

// Encode serialises a Meta.
func Encode(m *Meta) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode meta: %w", err)
	}
	return buf.Bytes(), nil
}

// ErrEmpty is returned by Decode for an empty input.
var ErrEmpty = errors.New("mailmeta: empty")

// Decode parses an encoded Meta. It never panics on arbitrary input.
func Decode(b []byte) (m *Meta, err error) {
	if len(b) == 0 {
		return nil, ErrEmpty
	}
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("mailmeta: decode: %v", r)
		}
	}()
	m = new(Meta)
	if err := msgpack.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("mailmeta: decode: %w", err)
	}
	if m.V == 0 || m.V > Version {
		return nil, fmt.Errorf("mailmeta: unsupported version %d", m.V)
	}
	if m.Body == nil {
		m.Body = &Part{Type: "text", Subtype: "plain"}
	}
	return m, nil
}

// safeHeader reads the top-level header; a panic in the library is an
// error like any other.
func safeHeader(raw []byte) (h textproto.Header, err error) {
	defer func() {
		if r := recover(); r != nil {
			h, err = textproto.Header{}, fmt.Errorf("mailmeta: header: %v", r)
		}
	}()
	return textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
}

// safeEnvelope builds the envelope from what header could be read.
func safeEnvelope(h textproto.Header, err error) (env *Envelope) {
	defer func() {
		if r := recover(); r != nil {
			env = &Envelope{}
		}
	}()
	if err != nil && h.Len() == 0 {
		return &Envelope{}
	}
	return fromEnvelope(imapserver.ExtractEnvelope(h))
}

// safeBody builds the body structure of a message whose header reads.
func safeBody(raw []byte) (p *Part, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			p, ok = nil, false
		}
	}()
	bs := imapserver.ExtractBodyStructure(bytes.NewReader(raw))
	if bs == nil {
		return nil, false
	}
	n := 0
	return fromBodyStructure(bs, 0, &n), true
}

// fallbackPart is the structure of a message we could not parse: the whole
// input as one text/plain body.
func fallbackPart(raw []byte) *Part {
	return &Part{
		Type: "text", Subtype: "plain",
		Params:   []Param{{K: "charset", V: "us-ascii"}},
		Encoding: "7bit",
		Size:     uint32(min(len(raw), 1<<32-1)),
		Lines:    int64(bytes.Count(raw, []byte("\n"))),
	}
}

func sortedParams(m map[string]string) []Param {
	if len(m) == 0 {
		return nil
	}
	out := make([]Param, 0, len(m))
	for k, v := range m {
		out = append(out, Param{K: k, V: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].K < out[j].K })
	return out
}

func paramMap(ps []Param) map[string]string {
	if len(ps) == 0 {
		return nil
	}
	m := make(map[string]string, len(ps))
	for _, p := range ps {
		m[p.K] = p.V
	}
	return m
}

func splitType(t, st string) (string, string) {
	t, st = strings.ToLower(strings.TrimSpace(t)), strings.ToLower(strings.TrimSpace(st))
	if t == "" || st == "" {
		return "text", "plain"
	}
	return t, st
}
