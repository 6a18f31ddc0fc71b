package imap

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// sampleMail returns the sample messages in CRLF form, as SMTP and IMAP
// APPEND store them.
func sampleMail(t *testing.T) [][]byte {
	t.Helper()
	files, _ := filepath.Glob("../mailmeta/testdata/*.eml")
	if len(files) == 0 {
		t.Fatal("no sample mail in ../mailmeta/testdata")
	}
	var out [][]byte
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		raw = bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		out = append(out, raw)
	}
	return out
}

// The fast path for whole-message sections must answer byte for byte what
// imapserver's parser answers, for every form it takes over.
func TestBodySectionMatchesLibrary(t *testing.T) {
	sections := []*imap.FetchItemBodySection{
		{},
		{Specifier: imap.PartSpecifierHeader},
		{Specifier: imap.PartSpecifierText},
		{Partial: &imap.SectionPartial{Offset: 0, Size: 100}},
		{Partial: &imap.SectionPartial{Offset: 37, Size: 1 << 20}},
		{Partial: &imap.SectionPartial{Offset: 1 << 30, Size: 10}},
		{Specifier: imap.PartSpecifierHeader, Partial: &imap.SectionPartial{Offset: 5, Size: 50}},
		{Specifier: imap.PartSpecifierText, Partial: &imap.SectionPartial{Offset: 3, Size: 7}},
		{Part: []int{1}},
		{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject", "From"}},
		{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"Received"}},
	}
	bodies := append(sampleMail(t),
		[]byte("Subject: no body\r\n\r\n"),
		[]byte("\r\nbody only, empty header\r\n"),
		[]byte("Subject: bare\nFrom: a@b\n\nLF line ends\n"),
		[]byte("Subject: no blank line\r\n"),
	)
	fast := 0
	var memo headerEndMemo // asked twice per body and section: the second answer is the memo's
	for i, body := range bodies {
		for j, bs := range sections {
			want := imapserver.ExtractBodySection(bytes.NewReader(body), bs)
			got := bodySection(body, memo.get(sha256.Sum256(body), body), bs)
			if len(bs.Part) == 0 && bs.HeaderFields == nil && bs.HeaderFieldsNot == nil {
				if _, ok := headerEnd(body); ok {
					fast++
				}
			}
			if !bytes.Equal(got, want) {
				t.Errorf("message %d section %d: fast path %d bytes %q…, library %d bytes %q…", i, j, len(got), head(got), len(want), head(want))
			}
		}
	}
	if fast < len(bodies)*5 {
		t.Fatalf("fast path taken %d times: the test no longer covers it", fast)
	}
}

func head(b []byte) string {
	if len(b) > 40 {
		b = b[:40]
	}
	return string(b)
}

func TestHeaderEnd(t *testing.T) {
	for _, c := range []struct {
		in   string
		end  int
		fast bool
	}{
		{"A: b\r\n\r\nbody", 8, true},
		{"\r\nbody", 2, true},
		{"A: b\nC: d\r\n\r\nbody", 0, false},
		{"A: b\r\n", 0, false},
		{"", 0, false},
	} {
		end, ok := headerEnd([]byte(c.in))
		if end != c.end || ok != c.fast {
			t.Errorf("headerEnd(%q) = %d, %v; want %d, %v", c.in, end, ok, c.end, c.fast)
		}
	}
	// The one-pass scan agrees with the plain definition (first CRLF CRLF,
	// no bare LF before it) on the sample mail and on every prefix and
	// one-byte damage of a small message.
	inputs := sampleMail(t)
	small := []byte("A: b\r\nC: d\r\n e\r\n\r\nbody\r\n\r\nmore\n")
	for i := range small {
		inputs = append(inputs, small[:i])
		for _, c := range []byte{'\r', '\n', 'x'} {
			inputs = append(inputs, append(append(append([]byte(nil), small[:i]...), c), small[i+1:]...))
		}
	}
	for _, in := range inputs {
		end, ok := headerEnd(in)
		wantEnd, wantOK := headerEndByDefinition(in)
		if end != wantEnd || ok != wantOK {
			t.Errorf("headerEnd(%.40q) = %d, %v; by definition %d, %v", in, end, ok, wantEnd, wantOK)
		}
	}
}

func headerEndByDefinition(body []byte) (int, bool) {
	if bytes.HasPrefix(body, crlf) {
		return 2, true
	}
	i := bytes.Index(body, []byte("\r\n\r\n"))
	if i < 0 {
		return 0, false
	}
	for k, c := range body[:i] {
		if c == '\n' && (k == 0 || body[k-1] != '\r') {
			return 0, false
		}
	}
	return i + 4, true
}

// recordConn counts the writes and write deadlines that reach the network.
type recordConn struct {
	net.Conn
	writes    [][]byte
	deadlines int
}

func (r *recordConn) SetWriteDeadline(time.Time) error {
	r.deadlines++
	return nil
}

func (r *recordConn) Write(p []byte) (int, error) {
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func TestCorkConnCollectsWrites(t *testing.T) {
	rec := &recordConn{}
	c := &corkConn{Conn: rec}
	if _, err := c.Write([]byte("uncorked\r\n")); err != nil || len(rec.writes) != 1 {
		t.Fatalf("an uncorked write must go straight through: %d writes, %v", len(rec.writes), err)
	}
	c.Cork()
	line := []byte(strings.Repeat("x", 1000) + "\r\n")
	for i := 0; i < 100; i++ {
		_ = c.SetWriteDeadline(time.Now().Add(time.Minute)) // as imapserver does per response
		if n, err := c.Write(line); n != len(line) || err != nil {
			t.Fatalf("corked write: %d, %v", n, err)
		}
		_ = c.SetWriteDeadline(time.Time{})
	}
	if rec.deadlines != 1 {
		t.Fatalf("200 deadlines asked while corked reached the network %d times; want once, with the one flush", rec.deadlines)
	}
	// 100,200 bytes: one write-through at corkMax, the rest at Uncork.
	if len(rec.writes) != 2 || len(rec.writes[1]) < corkMax {
		t.Fatalf("while corked: %d writes (want 2, the second ≥ %d bytes)", len(rec.writes), corkMax)
	}
	if err := c.Uncork(); err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, w := range rec.writes[1:] {
		all = append(all, w...)
	}
	if len(rec.writes) != 3 || !bytes.Equal(all, bytes.Repeat(line, 100)) {
		t.Fatalf("after Uncork: %d writes, %d bytes; want 3 writes carrying the 100 lines in order", len(rec.writes), len(all))
	}
	if _, err := c.Write([]byte("after\r\n")); err != nil || len(rec.writes) != 4 {
		t.Fatalf("after Uncork writes must go straight through: %d writes", len(rec.writes))
	}
}

// failConn fails every write.
type failConn struct{ net.Conn }

func (failConn) Write([]byte) (int, error)        { return 0, net.ErrClosed }
func (failConn) SetWriteDeadline(time.Time) error { return nil }

func TestCorkConnReportsWriteErrors(t *testing.T) {
	c := &corkConn{Conn: failConn{}}
	c.Cork()
	if _, err := c.Write(make([]byte, corkMax)); err == nil {
		t.Fatal("a failed write-through must be reported")
	}
	if _, err := c.Write([]byte("more")); err == nil {
		t.Fatal("writes after a failure must fail")
	}
	if err := c.Uncork(); err == nil {
		t.Fatal("Uncork after a failure must fail")
	}
}

func TestCorkOfFindsConnBelowTLS(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	cc := &corkConn{Conn: a}
	if corkOf(cc) != cc {
		t.Fatal("corkOf of a corkConn")
	}
	if corkOf(wrapped{cc}) != cc {
		t.Fatal("corkOf must unwrap NetConn()")
	}
	if corkOf(a) != nil {
		t.Fatal("corkOf of a plain conn must be nil")
	}
}

type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }

// TestHeaderEndMemo: the memo answers headerEnd by body ID (-1 for a
// header that is not canonical), a second time without the body, and
// stays bounded.
func TestHeaderEndMemo(t *testing.T) {
	var m headerEndMemo
	if got := m.get([32]byte{1}, []byte("A: b\r\n\r\nx")); got != 8 {
		t.Fatalf("canonical: %d, want 8", got)
	}
	if got := m.get([32]byte{2}, []byte("A: b\n\nx")); got != -1 {
		t.Fatalf("bare LF: %d, want -1", got)
	}
	if got := m.get([32]byte{1}, nil); got != 8 {
		t.Fatalf("second ask: %d, want the remembered 8", got)
	}
	for i := 0; i < maxHeaderEnds+10; i++ {
		var id [32]byte
		binary.BigEndian.PutUint64(id[:], uint64(i)+100)
		m.get(id, []byte("\r\n"))
	}
	if n := len(m.m); n > maxHeaderEnds {
		t.Fatalf("%d entries, bound %d", n, maxHeaderEnds)
	}
}

// TestCorkFlushIsBounded: imapserver clears the write deadline when a
// response ends, so a corked FETCH's last flush used to run with none: a
// client that stopped reading held the session's goroutine forever. The
// flush now runs under the deadline last asked for, or flushTimeout when
// that is none; and deadlines asked for while corked cost nothing until a
// flush.
func TestCorkFlushIsBounded(t *testing.T) {
	a, b := net.Pipe() // b never reads
	defer b.Close()
	defer a.Close()
	c := &corkConn{Conn: a, flushTimeout: 200 * time.Millisecond}
	c.Cork()
	_ = c.SetWriteDeadline(time.Now().Add(time.Hour)) // a response starts
	if _, err := c.Write([]byte("* 1 FETCH (BODY[] {5}\r\nhello)\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetWriteDeadline(time.Time{}) // the response ends
	done := make(chan error, 1)
	go func() { done <- c.Uncork() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a flush to a client that does not read succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Uncork blocked on a client that does not read")
	}
}
