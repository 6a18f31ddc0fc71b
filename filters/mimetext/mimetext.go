// Package mimetext turns a raw message into what content checks read:
// the decoded top-level header, the text of every text part (transfer
// encoding undone, HTML stripped to text) and the URLs and attachments it
// names. It is bounded by construction (depth, parts and bytes), tolerant
// of malformed MIME (what cannot be parsed is kept as plain text and
// Malformed is set) and never decompresses attachments, so a zip bomb is
// just bytes. RFC 2045 (encodings), RFC 2046 (multipart), RFC 2047
// (encoded words).
package mimetext

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"strings"

	"github.com/raftmail/raftmail/filters"
)

// Limits bound the work done on one message.
type Limits struct {
	// MaxDepth is the deepest multipart nesting followed (default 10);
	// deeper parts are skipped and Malformed is set.
	MaxDepth int
	// MaxParts is the most parts visited (default 100).
	MaxParts int
	// MaxText is the most decoded text kept, in bytes (default 256 KiB).
	MaxText int
}

func (l *Limits) setDefaults() {
	if l.MaxDepth <= 0 {
		l.MaxDepth = 10
	}
	if l.MaxParts <= 0 {
		l.MaxParts = 100
	}
	if l.MaxText <= 0 {
		l.MaxText = 256 << 10
	}
}

// Part is one decoded text part.
type Part struct {
	Type string // media type, lower case ("text/plain", "text/html")
	Text string // decoded; HTML stripped to text
}

// Attachment is a non-text part, never decoded.
type Attachment struct {
	Type, Name string
	Size       int
}

// Text is the content view of one message.
type Text struct {
	Header  textproto.MIMEHeader
	Subject string // RFC 2047 decoded
	Parts   []Part
	URLs    []string
	Attach  []Attachment
	// Malformed is set when some structure could not be parsed (the
	// unparsed bytes are then read as plain text).
	Malformed bool
	// Depth is the deepest multipart nesting seen.
	Depth int
}

// Body returns the text of every part, separated by newlines.
func (t *Text) Body() string {
	var b strings.Builder
	for _, p := range t.Parts {
		b.WriteString(p.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

type memoKey struct{}

// FromMessage parses m's body once per message with default limits (body
// checks running concurrently share the result).
func FromMessage(m *filters.Message) (*Text, error) {
	v, err := m.Memo(memoKey{}, func() (any, error) {
		raw, err := filters.ReadBody(m.Body)
		if err != nil {
			return nil, err
		}
		return Parse(raw, Limits{}), nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*Text), nil
}

// Parse parses a raw message (header and body).
func Parse(raw []byte, lim Limits) *Text {
	lim.setDefaults()
	p := &parser{lim: lim, t: &Text{}}
	hdr, body, err := readHeader(raw)
	if err != nil {
		p.t.Malformed = true
	}
	p.t.Header = hdr
	p.t.Subject = decodeWords(hdr.Get("Subject"))
	p.entity(hdr, body, 0)
	return p.t
}

type parser struct {
	lim   Limits
	t     *Text
	parts int
	text  int
}

// readHeader splits a header block from its body. A header that does not
// parse keeps what was read; the rest is the body.
func readHeader(raw []byte) (textproto.MIMEHeader, []byte, error) {
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	sep := 4
	if lf := bytes.Index(raw, []byte("\n\n")); lf >= 0 && (end < 0 || lf < end) {
		end, sep = lf, 2
	}
	head, body := raw, []byte(nil)
	if end >= 0 {
		head, body = raw[:end+sep/2], raw[end+sep:]
	}
	h, err := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(head), strings.NewReader("\r\n")))).ReadMIMEHeader()
	if h == nil {
		h = textproto.MIMEHeader{}
	}
	if err != nil && end < 0 {
		return h, raw, err
	}
	return h, body, err
}

func (p *parser) entity(h textproto.MIMEHeader, body []byte, depth int) {
	if p.parts >= p.lim.MaxParts {
		p.t.Malformed = true
		return
	}
	p.parts++
	if depth > p.t.Depth {
		p.t.Depth = depth
	}
	ct := h.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil {
		if err != nil {
			p.t.Malformed = true
		}
		mt, params = "text/plain", map[string]string{}
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		p.multipart(body, params["boundary"], depth)
	case mt == "message/rfc822" && depth < p.lim.MaxDepth:
		sub, subBody, err := readHeader(body)
		if err != nil {
			p.t.Malformed = true
		}
		p.entity(sub, subBody, depth+1)
	case strings.HasPrefix(mt, "text/") && !isAttachment(h):
		p.addText(mt, decode(h.Get("Content-Transfer-Encoding"), body))
	default:
		name := params["name"]
		if _, dp, err := mime.ParseMediaType(h.Get("Content-Disposition")); err == nil && dp["filename"] != "" {
			name = dp["filename"]
		}
		p.t.Attach = append(p.t.Attach, Attachment{Type: mt, Name: decodeWords(name), Size: len(body)})
	}
}

func isAttachment(h textproto.MIMEHeader) bool {
	d, _, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	return d == "attachment"
}

func (p *parser) multipart(body []byte, boundary string, depth int) {
	if boundary == "" || depth >= p.lim.MaxDepth {
		p.t.Malformed = true
		if depth >= p.lim.MaxDepth {
			return
		}
		p.addText("text/plain", body)
		return
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for p.parts < p.lim.MaxParts {
		part, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			p.t.Malformed = true
			return
		}
		data, err := io.ReadAll(io.LimitReader(part, int64(len(body))))
		if err != nil {
			p.t.Malformed = true
		}
		p.entity(part.Header, data, depth+1)
	}
}

func (p *parser) addText(mt string, b []byte) {
	room := p.lim.MaxText - p.text
	if room <= 0 {
		return
	}
	if len(b) > room {
		b = b[:room]
	}
	s := string(b)
	if mt == "text/html" {
		var urls []string
		s, urls = StripHTML(s)
		p.t.URLs = append(p.t.URLs, urls...)
	}
	p.t.URLs = append(p.t.URLs, findURLs(s)...)
	p.text += len(b)
	p.t.Parts = append(p.t.Parts, Part{Type: mt, Text: s})
}

// decode undoes a Content-Transfer-Encoding (RFC 2045 §6); what does not
// decode is returned as far as it went.
func decode(cte string, b []byte) []byte {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, b)
		out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, _ := base64.StdEncoding.Decode(out, clean)
		return out[:n]
	case "quoted-printable":
		out, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(b)))
		return out
	}
	return b
}

var wordDecoder = &mime.WordDecoder{CharsetReader: func(charset string, r io.Reader) (io.Reader, error) {
	return r, nil // unknown charsets pass through as bytes: good enough for tokens
}}

// decodeWords decodes RFC 2047 encoded words, keeping the input on error.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	d, err := wordDecoder.DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

// findURLs returns the http(s) URLs in plain text.
func findURLs(s string) []string {
	var out []string
	for {
		i := strings.Index(s, "http")
		if i < 0 || len(out) >= 50 {
			return out
		}
		s = s[i:]
		if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
			s = s[4:]
			continue
		}
		end := strings.IndexAny(s, " \t\r\n\"'<>()[]")
		if end < 0 {
			end = len(s)
		}
		out = append(out, s[:end])
		s = s[end:]
	}
}

// DecodeHeader decodes RFC 2047 encoded words in a header value, keeping
// the input where it does not decode.
func DecodeHeader(s string) string { return decodeWords(s) }
