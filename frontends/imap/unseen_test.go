package imap

import (
	"strings"
	"testing"
)

// TestSelectFirstUnseen: SELECT names the first message without \Seen in
// an UNSEEN response code (IMAP4rev1), and none when every message is
// seen (the mailbox's count settles that without reading the messages).
func TestSelectFirstUnseen(t *testing.T) {
	e := newEnv(t, 1)
	for i := 1; i <= 3; i++ {
		e.deliver(0, testMail(i))
	}
	r := e.raw(0)
	r.send("a LOGIN " + alice + " " + alicePw)
	r.expect("a OK")
	selectLines := func(tag string) string {
		t.Helper()
		r.send(tag + " SELECT INBOX")
		var out []string
		for {
			line := r.expect("")
			out = append(out, line)
			if strings.HasPrefix(line, tag+" ") {
				if !strings.HasPrefix(line, tag+" OK") {
					t.Fatalf("SELECT: %q", out)
				}
				return strings.Join(out, "\n")
			}
		}
	}
	if got := selectLines("b"); !strings.Contains(got, "[UNSEEN 1]") {
		t.Fatalf("nothing seen, SELECT said:\n%s", got)
	}
	r.send(`c STORE 1 +FLAGS.SILENT (\Seen)`)
	r.expect("c OK")
	if got := selectLines("d"); !strings.Contains(got, "[UNSEEN 2]") {
		t.Fatalf("message 1 seen, SELECT said:\n%s", got)
	}
	r.send(`e STORE 2:3 +FLAGS.SILENT (\Seen)`)
	r.expect("e OK")
	if got := selectLines("f"); strings.Contains(got, "UNSEEN") {
		t.Fatalf("every message seen, SELECT said:\n%s", got)
	}
}
