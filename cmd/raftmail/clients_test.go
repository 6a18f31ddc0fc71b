package main

import (
	"bytes"
	"context"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// need skips the test when an independent client is missing (.ci/run
// installs them from Debian's packages).
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian package %s); .ci/run installs it", tool, tool)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (pc *procCluster) raw(i int, acct, mailbox string, uid int) []byte {
	pc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, pc.url(i)+"/admin/accounts/"+acct+"/mailboxes/"+mailbox+"/messages/"+itoa(uid), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		pc.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		pc.t.Fatalf("raw message: %d %s", resp.StatusCode, b.String())
	}
	return b.Bytes()
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestIndependentClients drives the real node processes with clients that
// share no code with raftmail: swaks delivers over LMTP to one node; curl
// (imap://, pop3://) and python3's imaplib/poplib read on the others and get
// the bytes the store holds; a flag set with imaplib on one node is seen by
// curl on another.
func TestIndependentClients(t *testing.T) {
	needTools(t, "swaks", "curl", "python3")
	pc := startProcCluster(t, 3)
	setupAccounts(pc)
	out := run(t, "swaks", "--server", pc.nodes[1].lmtp, "--protocol", "LMTP", "--from", "someone@remote.test",
		"--to", "alice@example.test", "--header", "Subject: independent clients", "--body", "line one\n.leading dot\nlast line")
	if !strings.Contains(out, "<alice@example.test> OK") {
		t.Fatalf("swaks did not get a 250 for alice:\n%s", out)
	}
	pc.waitConverged(20 * time.Second)
	stored := pc.raw(0, "alice@example.test", "INBOX", 1)

	got := run(t, "curl", "-s", "--max-time", "20", "imap://"+pc.nodes[2].imap+"/INBOX;UID=1", "-u", "alice@example.test:pw")
	if got != string(stored) {
		t.Fatalf("curl imap:// from node 3 returned %q, store holds %q", got, stored)
	}
	got = run(t, "curl", "-s", "--max-time", "20", "pop3://"+pc.nodes[0].pop3+"/1", "-u", "alice@example.test:pw")
	if got != string(stored) {
		t.Fatalf("curl pop3:// from node 1 returned %q, store holds %q", got, stored)
	}
	script := `
import imaplib, poplib, sys
host, port = sys.argv[1].rsplit(":", 1)
m = imaplib.IMAP4(host, int(port))
m.login("alice@example.test", "pw")
m.select("INBOX")
typ, data = m.uid("FETCH", "1", "(BODY.PEEK[])")
sys.stdout.buffer.write(data[0][1])
typ, _ = m.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
assert typ == "OK", typ
m.logout()
host, port = sys.argv[2].rsplit(":", 1)
p = poplib.POP3(host, int(port))
p.user("alice@example.test"); p.pass_("pw")
resp, lines, octets = p.retr(1)
sys.stderr.write("pop3 octets %d\n" % octets)
p.quit()
`
	pyOut, err := exec.Command("python3", "-c", script, pc.nodes[0].imap, pc.nodes[1].pop3).Output()
	if err != nil {
		t.Fatalf("python3 imaplib/poplib: %v", err)
	}
	if !bytes.Equal(pyOut, stored) {
		t.Fatalf("imaplib got %q, store holds %q", pyOut, stored)
	}
	// The flag set through node 1 is visible through node 3.
	deadline := time.Now().Add(10 * time.Second)
	for {
		flags := run(t, "curl", "-s", "--max-time", "20", "imap://"+pc.nodes[2].imap+"/INBOX", "-u", "alice@example.test:pw", "-X", "FETCH 1 FLAGS")
		if strings.Contains(flags, `\Flagged`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 3 does not show the flag set on node 1: %q", flags)
		}
		time.Sleep(100 * time.Millisecond) // poll the other node
	}
}
