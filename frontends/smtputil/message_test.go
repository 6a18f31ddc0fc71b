package smtputil

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestHasBareLF(t *testing.T) {
	for in, want := range map[string]bool{"a\r\nb\r\n": false, "a\nb": true, "\n": true, "a\r\n\n": true, "": false, "abc": false} {
		if got := HasBareLF([]byte(in)); got != want {
			t.Errorf("%q: got %v", in, got)
		}
	}
}

func TestReadMessage(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		code     int
	}{
		{"good", "Subject: x\r\n\r\nbody\r\n", 0},
		{"NUL", "Subject: x\r\n\r\nnul \x00\r\n", 554},
		{"bare LF", "Subject: x\r\n\r\na\nb\r\n", 554},
		{"no header", "just text without a colon\r\n", 554},
		{"empty", "\r\n", 554},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := ReadMessage(strings.NewReader(tc.in), "")
			var se *smtp.SMTPError
			switch {
			case tc.code == 0 && (err != nil || string(raw) != tc.in):
				t.Fatalf("got %q, %v", raw, err)
			case tc.code != 0 && (!errors.As(err, &se) || se.Code != tc.code):
				t.Fatalf("got %v, want %d", err, tc.code)
			}
		})
	}
}

func TestReadMessagePrefix(t *testing.T) {
	raw, err := ReadMessage(strings.NewReader("Subject: x\r\n\r\nbody\r\n"), "Return-Path: <a@b>\r\n")
	if err != nil || string(raw) != "Return-Path: <a@b>\r\nSubject: x\r\n\r\nbody\r\n" {
		t.Fatalf("got %q, %v", raw, err)
	}
	// The checks look at the body only: a prefix does not hide a missing header.
	if _, err := ReadMessage(strings.NewReader("no colon here\r\n"), "Return-Path: <a@b>\r\n"); err == nil {
		t.Fatal("a headerless body passed because of the prefix")
	}
}

// BenchmarkReadMessageCorpus reads real mail (CRLF) as DATA would.
func BenchmarkReadMessageCorpus(b *testing.B) {
	names, _ := filepath.Glob(filepath.Join("..", "..", "..", "shared", "corpus", "*", "*.eml"))
	if len(names) == 0 {
		b.Skip("no corpus")
	}
	var msgs [][]byte
	for _, n := range names[:min(len(names), 500)] {
		raw, err := os.ReadFile(n)
		if err != nil {
			b.Fatal(err)
		}
		lf := bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
		msgs = append(msgs, bytes.ReplaceAll(lf, []byte("\n"), []byte("\r\n")))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ReadMessage(bytes.NewReader(msgs[i%len(msgs)]), ""); err != nil {
			b.Fatal(err)
		}
	}
}
