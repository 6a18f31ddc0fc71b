package mailmeta

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func corpus(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("testdata/*.eml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	out := make(map[string][]byte)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = b
	}
	return out
}

// TestGolden pins the decoded Meta of each sample message: a change in
// go-message's parsing or in our conversion shows up as a diff.
func TestGolden(t *testing.T) {
	for path, raw := range corpus(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			enc, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Decode(enc)
			if err != nil {
				t.Fatal(err)
			}
			if m.Fallback {
				t.Errorf("fell back to text/plain for a well-formed message")
			}
			got, _ := json.MarshalIndent(m, "", "  ")
			golden := strings.TrimSuffix(path, ".eml") + ".golden"
			wire := strings.TrimSuffix(path, ".eml") + ".meta"
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(wire, enc, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			// The stored encoding is a persistent format: today's Parse
			// must produce the same bytes, and they must still decode.
			stored, err := os.ReadFile(wire)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(stored, enc) {
				t.Errorf("encoding of %s changed (persistent format!)", path)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(bytes.TrimSpace(want), bytes.TrimSpace(got)) {
				t.Errorf("meta differs from %s:\n%s", golden, got)
			}
		})
	}
}

// TestRoundTrip checks that what FETCH writes from the stored meta equals
// what go-imap would compute from the raw body.
func TestRoundTrip(t *testing.T) {
	for path, raw := range corpus(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			enc, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Decode(enc)
			if err != nil {
				t.Fatal(err)
			}
			wantBS := imapserver.ExtractBodyStructure(bytes.NewReader(raw))
			normBS(wantBS)
			gotBS := m.BodyStructure()
			normBS(gotBS)
			if !reflect.DeepEqual(wantBS, gotBS) {
				a, _ := json.Marshal(wantBS)
				b, _ := json.Marshal(gotBS)
				t.Errorf("body structure differs:\nwant %s\ngot  %s", a, b)
			}
			h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
			wantEnv := imapserver.ExtractEnvelope(h)
			gotEnv := m.Envelope()
			if !wantEnv.Date.Equal(gotEnv.Date) {
				t.Errorf("date %v, want %v", gotEnv.Date, wantEnv.Date)
			}
			if wantEnv.Date.Format(time3501) != gotEnv.Date.Format(time3501) {
				t.Errorf("date zone %v, want %v", gotEnv.Date, wantEnv.Date)
			}
			wantEnv.Date = gotEnv.Date
			normEnv(wantEnv)
			normEnv(gotEnv)
			if !reflect.DeepEqual(wantEnv, gotEnv) {
				t.Errorf("envelope differs:\nwant %+v\ngot  %+v", wantEnv, gotEnv)
			}
		})
	}
}

const time3501 = "Mon, 02 Jan 2006 15:04:05 -0700"

func TestDeterministic(t *testing.T) {
	for path, raw := range corpus(t) {
		a, _ := Parse(raw)
		for i := 0; i < 5; i++ {
			b, _ := Parse(raw)
			if !bytes.Equal(a, b) {
				t.Fatalf("%s: Parse is not deterministic", path)
			}
		}
	}
}

// TestMalformed feeds broken mail: Parse must not panic and must give a
// structure go-imap can encode.
func TestMalformed(t *testing.T) {
	cases := map[string]string{
		"empty":              "",
		"no header end":      "Subject: x",
		"binary":             "\x00\x01\x02\xff\xfe",
		"bad content-type":   "Content-Type: ;;;==\r\n\r\nbody\r\n",
		"multipart no bound": "Content-Type: multipart/mixed\r\n\r\nbody\r\n",
		"multipart empty":    "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x--\r\n",
		"rfc822 empty":       "Content-Type: message/rfc822\r\n\r\n",
		"bad date":           "Date: yesterday-ish\r\nFrom: <<<@@@>>>\r\n\r\nx\r\n",
		"header only lf":     "Subject: hi\n\nbody\n",
		"deep": strings.Repeat("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n", 200) +
			"\r\nleaf\r\n",
		"long line": "Subject: " + strings.Repeat("a", 100000) + "\r\n\r\nx",
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			enc, err := Parse([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			m, err := Decode(enc)
			if err != nil {
				t.Fatal(err)
			}
			assertWellFormed(t, m.BodyStructure(), 0)
			_ = m.Envelope()
		})
	}
}

func assertWellFormed(t *testing.T, bs imap.BodyStructure, depth int) {
	t.Helper()
	if depth > maxDepth+5 {
		t.Fatalf("structure deeper than %d", maxDepth)
	}
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		if len(bs.Children) == 0 || bs.Extended == nil {
			t.Fatalf("multipart without children or extension")
		}
		for _, c := range bs.Children {
			assertWellFormed(t, c, depth+1)
		}
	case *imap.BodyStructureSinglePart:
		if bs.Type == "" || bs.Subtype == "" || bs.Extended == nil {
			t.Fatalf("single part %q/%q ext %v", bs.Type, bs.Subtype, bs.Extended)
		}
		if bs.MessageRFC822 != nil {
			if bs.MessageRFC822.BodyStructure == nil {
				t.Fatalf("message/rfc822 without structure")
			}
			assertWellFormed(t, bs.MessageRFC822.BodyStructure, depth+1)
		}
	default:
		t.Fatalf("unknown structure %T", bs)
	}
}

func TestDecodeGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {0xc1}, {0x81, 0xa1, 'v', 0x09}, bytes.Repeat([]byte{0xdc}, 10)} {
		if _, err := Decode(b); err == nil {
			t.Errorf("Decode(%x) accepted garbage", b)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nhi\r\n--x--\r\n"))
	f.Add([]byte("Subject: x\r\n\r\nbody"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		enc, err := Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Decode(enc)
		if err != nil {
			t.Fatal(err)
		}
		assertWellFormed(t, m.BodyStructure(), 0)
	})
}

// normBS makes go-imap's structure comparable: empty maps and slices become
// nil, types lower case.
func normBS(bs imap.BodyStructure) {
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		for _, c := range bs.Children {
			normBS(c)
		}
		if bs.Extended != nil {
			if len(bs.Extended.Params) == 0 {
				bs.Extended.Params = nil
			}
			normDisp(bs.Extended.Disposition)
			if len(bs.Extended.Language) == 0 {
				bs.Extended.Language = nil
			}
		}
	case *imap.BodyStructureSinglePart:
		if len(bs.Params) == 0 {
			bs.Params = nil
		}
		if bs.Extended != nil {
			normDisp(bs.Extended.Disposition)
			if len(bs.Extended.Language) == 0 {
				bs.Extended.Language = nil
			}
		}
		if m := bs.MessageRFC822; m != nil {
			normBS(m.BodyStructure)
			normEnv(m.Envelope)
			m.Envelope.Date = time.Time{}
		}
	}
}

func normDisp(d *imap.BodyStructureDisposition) {
	if d != nil && len(d.Params) == 0 {
		d.Params = nil
	}
}

func normEnv(e *imap.Envelope) {
	if e == nil {
		return
	}
	if len(e.InReplyTo) == 0 {
		e.InReplyTo = nil
	}
}

// BenchmarkParse: Parse over the real mail of ../shared/corpus (what a
// frontend or an LMTP node does for every delivery).
//
//	go test ./frontends/mailmeta -run '^$' -bench Parse -cpu 1
func BenchmarkParse(b *testing.B) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "..", "shared", "corpus", "*", "*.eml"))
	if len(files) == 0 {
		b.Skip("no corpus at ../shared/corpus")
	}
	var msgs [][]byte
	size := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, raw)
		size += len(raw)
	}
	b.SetBytes(int64(size / len(msgs)))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := Parse(msgs[i%len(msgs)]); err != nil {
			b.Fatal(err)
		}
	}
}
