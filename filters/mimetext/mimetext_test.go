package mimetext_test

import (
	"strings"
	"testing"

	"github.com/raftmail/raftmail/filters/mimetext"
)

func TestParse(t *testing.T) {
	raw := "From: a@x.test\r\nSubject: =?utf-8?b?SGVsbG8gd29ybGQ=?=\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=A\r\n\r\n" +
		"--A\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 au lait\r\n" +
		"--A\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"PHA+QnV5IDxiPm5vdzwvYj48c2NyaXB0PmV2aWwoKTwvc2NyaXB0PiA8YSBocmVmPSJodHRwOi8vc3BhbS5leGFtcGxlL3giPmxpbms8L2E+ICZhbXA7IG1vcmU8L3A+\r\n" +
		"--A\r\nContent-Type: application/pdf; name=x.pdf\r\n\r\n%PDF\r\n--A--\r\n"
	txt := mimetext.Parse([]byte(raw), mimetext.Limits{})
	if txt.Subject != "Hello world" || txt.Malformed {
		t.Fatalf("subject %q malformed %v", txt.Subject, txt.Malformed)
	}
	body := txt.Body()
	for _, want := range []string{"café au lait", "Buy", "now", "& more"} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q: %q", want, body)
		}
	}
	if strings.Contains(body, "evil") || strings.Contains(body, "<b>") {
		t.Errorf("script or tags kept: %q", body)
	}
	if len(txt.URLs) != 1 || txt.URLs[0] != "http://spam.example/x" {
		t.Errorf("urls %v", txt.URLs)
	}
	if len(txt.Attach) != 1 || txt.Attach[0].Name != "x.pdf" {
		t.Errorf("attachments %+v", txt.Attach)
	}
}

func TestLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("Subject: deep\r\n")
	for i := 0; i < 50; i++ {
		b.WriteString("Content-Type: multipart/mixed; boundary=b" + string(rune('A'+i%26)) + string(rune('a'+i/26)) + "\r\n\r\n--b" + string(rune('A'+i%26)) + string(rune('a'+i/26)) + "\r\n")
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ndeepest\r\n")
	txt := mimetext.Parse([]byte(b.String()), mimetext.Limits{MaxDepth: 5})
	if !txt.Malformed || txt.Depth > 5 || strings.Contains(txt.Body(), "deepest") {
		t.Fatalf("depth %d malformed %v body %q", txt.Depth, txt.Malformed, txt.Body())
	}
	big := "Subject: big\r\n\r\n" + strings.Repeat("word ", 100_000)
	if got := len(mimetext.Parse([]byte(big), mimetext.Limits{MaxText: 1000}).Body()); got > 1001 {
		t.Fatalf("kept %d bytes of text", got)
	}
}
