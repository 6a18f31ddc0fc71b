package imap

import (
	"fmt"
	"maps"
	"strings"
	"testing"
)

// TestBadInput sends malformed and hostile commands: each gets a tagged NO
// or BAD, the server stays up, the connection stays usable and the store is
// unchanged.
func TestBadInput(t *testing.T) {
	e := newEnv(t, 1)
	e.deliver(0, testMail(1))
	e.deliver(0, multipartMail)
	mbBefore, before := mailboxState(t, e, 0, "INBOX")
	digestBefore, _, _ := e.c.Node(0).Store().Digest()

	r := e.raw(0)
	// Not authenticated yet.
	r.send("a1 SELECT INBOX")
	expectNotOK(t, r.expect("a1 "))
	r.send("a2 FETCH 1 (FLAGS)")
	expectNotOK(t, r.expect("a2 "))
	r.send("a3 LOGIN " + alice + " " + alicePw)
	r.expect("a3 OK")
	r.send("a4 FETCH 1 (FLAGS)")
	expectNotOK(t, r.expect("a4 ")) // nothing selected
	r.send("a5 SELECT INBOX")
	r.expect("a5 OK")

	cases := []struct {
		cmd string
		// "NO", "BAD", "OK", "NOBAD" (either: go-imap beta.8 answers
		// some parse errors, e.g. a malformed sequence set, with NO
		// [SERVERBUG] instead of BAD), "OKBAD", or a NO response code.
		want string
	}{
		{"FETCH 1:x (FLAGS)", "NOBAD"},
		{"UID FETCH 1:abc (FLAGS)", "NOBAD"},
		{"FETCH 1 (BOGUS)", "BAD"},
		{"FETCH 1 (BODY.PEEK[1.2.3.4.5.6.7.8.9.10.11.12])", "OK"},
		{"FETCH 2 (BODY.PEEK[3.1.7]<5.10> BINARY.PEEK[9])", "OK"},
		{"FETCH 1 (BODY.PEEK[99999999999999999999])", "OKBAD"},
		{"FETCH 1 (BODY[HEADER.FIELDS (])", "BAD"},
		{"STORE 1 +FLAGS (\\Seen", "BAD"},
		{"STORE 1 +BOGUS (\\Seen)", "BAD"},
		{"UID STORE 4000000000 +FLAGS (\\Seen)", "OK"}, // no such UID: nothing to do
		{"UID EXPUNGE abc", "NOBAD"},
		{"COPY 1 Nope", "[TRYCREATE]"},
		{"MOVE 1 Nope", "[TRYCREATE]"},
		{"SELECT Nope", "[NONEXISTENT]"},
		{"STATUS Nope (MESSAGES)", "[NONEXISTENT]"},
		{"DELETE Nope", "[NONEXISTENT]"},
		{"RENAME Nope Other", "[NONEXISTENT]"},
		{"CREATE \"a*b\"", "NO"},
		{"CREATE \"\"", "NO"},
		{"SEARCH CHARSET KOI8-R BODY x", "NO"},
		{"SEARCH BOGUS", "NOBAD"},
		{"SEARCH BEFORE 32-Foo-2020", "NOBAD"},
		{"LIST", "BAD"},
		{"ENABLE BOGUS", "OK"},
	}
	for i, tc := range cases {
		tag := fmt.Sprintf("b%d", i)
		r.send(tag + " " + tc.cmd)
		line := r.expect(tag + " ")
		got := strings.Fields(line)[1]
		switch tc.want {
		case "NOBAD", "OKBAD":
			if !strings.Contains(tc.want, got) {
				t.Errorf("%s: got %q, want %s", tc.cmd, line, tc.want)
			}
		case "OK", "NO", "BAD":
			if got != tc.want {
				t.Errorf("%s: got %q, want %s", tc.cmd, line, tc.want)
			}
		default:
			if got != "NO" || !strings.Contains(line, tc.want) {
				t.Errorf("%s: got %q, want NO %s", tc.cmd, line, tc.want)
			}
		}
		if tc.cmd == "SELECT Nope" { // a failed SELECT leaves no mailbox selected
			r.send(tag + "x SELECT INBOX")
			r.expect(tag + "x OK")
		}
	}

	// A synchronizing literal over the APPEND limit is refused before the
	// client sends it (RFC 7889 / RFC 9051 §7.1 TOOBIG).
	r.send("c1 APPEND INBOX {2000000}")
	if line := r.expect("c1 "); !strings.Contains(line, "NO") || !strings.Contains(line, "TOOBIG") {
		t.Errorf("oversized APPEND: %q", line)
	}
	// The connection still works.
	r.send("c2 NOOP")
	r.expect("c2 OK")
	r.send("c3 LOGOUT")
	r.expect("* BYE")

	mbAfter, after := mailboxState(t, e, 0, "INBOX")
	if !maps.Equal(before, after) || mbAfter.UIDNext != mbBefore.UIDNext {
		t.Errorf("bad input changed the mailbox: %v → %v", before, after)
	}
	if digestAfter, _, _ := e.c.Node(0).Store().Digest(); digestAfter != digestBefore {
		t.Errorf("bad input changed the replicated state")
	}
}

func expectNotOK(t *testing.T, line string) {
	t.Helper()
	if f := strings.Fields(line); len(f) < 2 || (f[1] != "NO" && f[1] != "BAD") {
		t.Errorf("expected NO or BAD, got %q", line)
	}
}

// TestUnknownCommandBeforeAuth: the library answers BYE and closes
// (cross-protocol attack mitigation).
func TestUnknownCommandBeforeAuth(t *testing.T) {
	e := newEnv(t, 1)
	r := e.raw(0)
	r.send("GET / HTTP/1.1")
	r.expect("* BYE")
	// The server still accepts new connections.
	r2 := e.raw(0)
	r2.send("a CAPABILITY")
	r2.expect("a OK")
}
