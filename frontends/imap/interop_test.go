package imap

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// pythonIMAP drives the server with python3's imaplib: the client most
// scripts and many tools use.
const pythonIMAP = `
import imaplib, json, sys
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {}
m = imaplib.IMAP4(host, port)
out["caps"] = [c.decode() if isinstance(c, bytes) else c for c in m.capabilities]
m.login(user, pw)
typ, data = m.list()
out["list"] = [d.decode() for d in data]
msg = b"From: py@remote.test\r\nTo: alice@example.test\r\nSubject: from python\r\n\r\npython body line\r\n"
typ, data = m.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(1700000000), msg)
out["append"] = [typ, data[0].decode()]
typ, data = m.select("INBOX")
out["exists"] = int(data[0])
typ, data = m.search(None, "SUBJECT", '"from python"')
out["search"] = data[0].decode()
num = data[0].split()[-1]
typ, data = m.fetch(num, "(UID FLAGS RFC822.SIZE BODY.PEEK[] ENVELOPE)")
out["fetch_body"] = data[0][1].decode()
out["fetch_meta"] = data[0][0].decode()
typ, data = m.store(num, "+FLAGS", "(\\Deleted)")
out["store"] = data[0].decode()
typ, data = m.copy(num, "Archive")
out["copy"] = typ
typ, data = m.expunge()
out["expunge"] = [d.decode() for d in data if d]
typ, data = m.status("Archive", "(MESSAGES UIDNEXT)")
out["status"] = data[0].decode()
m.logout()
print(json.dumps(out))
`

func TestPythonImaplib(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed: imaplib interoperability not tested")
	}
	e := newEnv(t, 1)
	e.deliver(0, testMail(1))
	host, port, _ := net.SplitHostPort(e.addrs[0])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, py, "-c", pythonIMAP, host, port, alice, alicePw).CombinedOutput()
	if err != nil {
		t.Fatalf("imaplib: %v\n%s", err, b)
	}
	var out struct {
		Caps      []string `json:"caps"`
		List      []string `json:"list"`
		Append    []string `json:"append"`
		Exists    int      `json:"exists"`
		Search    string   `json:"search"`
		FetchBody string   `json:"fetch_body"`
		FetchMeta string   `json:"fetch_meta"`
		Store     string   `json:"store"`
		Copy      string   `json:"copy"`
		Expunge   []string `json:"expunge"`
		Status    string   `json:"status"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("imaplib output %q: %v", b, err)
	}
	t.Logf("imaplib: %+v", out)
	checks := []struct {
		ok   bool
		what string
	}{
		{strings.Contains(strings.ToUpper(strings.Join(out.Caps, " ")), "IMAP4REV1"), "capabilities"},
		{len(out.List) == 6, "LIST of the 6 default mailboxes"},
		{out.Append[0] == "OK" && strings.Contains(out.Append[1], "APPENDUID"), "APPEND with APPENDUID"},
		{out.Exists == 2, "SELECT EXISTS"},
		{out.Search == "2", "SEARCH SUBJECT"},
		{strings.Contains(out.FetchBody, "python body line"), "FETCH BODY.PEEK[]"},
		{strings.Contains(out.FetchMeta, `\Flagged`) && strings.Contains(out.FetchMeta, "UID 2"), "FETCH flags and UID"},
		{strings.Contains(out.Store, `\Deleted`), "STORE +FLAGS"},
		{out.Copy == "OK", "COPY"},
		{len(out.Expunge) == 1 && out.Expunge[0] == "2", "EXPUNGE"},
		{strings.Contains(out.Status, "MESSAGES 1"), "STATUS"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("imaplib: %s failed", c.what)
		}
	}
}

// TestCurlIMAP uses curl's imap:// URLs (RFC 5092): LIST, SEARCH and a UID
// fetch of a whole message.
func TestCurlIMAP(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed: imap:// interoperability not tested")
	}
	e := newEnv(t, 1)
	e.deliver(0, testMail(1))
	e.deliver(0, testMail(2))
	run := func(path string, extra ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		args := append([]string{"-sS", "--max-time", "20", "--user", alice + ":" + alicePw, "imap://" + e.addrs[0] + path}, extra...)
		b, err := exec.CommandContext(ctx, curl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", path, err, b)
		}
		return string(b)
	}
	if out := run("/"); !strings.Contains(out, "Archive") || !strings.Contains(out, "INBOX") {
		t.Errorf("curl LIST: %q", out)
	}
	if out := run("/INBOX?SUBJECT%20%22message%202%22"); !strings.Contains(out, "SEARCH 2") {
		t.Errorf("curl SEARCH: %q", out)
	}
	if out := run("/INBOX;UID=1"); !strings.Contains(out, "body of message 1") || !strings.Contains(out, "Subject: message 1") {
		t.Errorf("curl FETCH: %q", out)
	}
	if out := run("/INBOX", "-X", "EXAMINE INBOX"); !strings.Contains(out, "2 EXISTS") {
		t.Errorf("curl EXAMINE: %q", out)
	}
}
