package pop3

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/frontends"
)

// Independent clients download from a real node and must get the bytes
// the store holds. CI needs the Debian packages python3 and curl (with
// pop3 support, as Debian builds it); fetchmail or mpop are used when
// installed.

const poplibScript = `
import json, os, poplib, ssl, sys
host, port, user, pw, out, ca = sys.argv[1:]
p = poplib.POP3(host, int(port), timeout=20)
p.stls(context=ssl.create_default_context(cafile=ca))
p.user(user)
p.pass_(pw)
n, size = p.stat()
sizes = [int(l.split()[1]) for l in p.list()[1]]
uidl = [l.decode() for l in p.uidl()[1]]
octets = []
for i in range(1, n + 1):
    resp, lines, o = p.retr(i)
    octets.append(o)
    with open(os.path.join(out, "%d.eml" % i), "wb") as f:
        f.write(b"\r\n".join(lines) + b"\r\n")
top = b"\r\n".join(p.top(1, 0)[1]).decode()
p.quit()
print(json.dumps({"n": n, "size": size, "sizes": sizes, "uidl": uidl, "octets": octets, "top": top}))
`

// checkPoplib runs python3's poplib against addr (STLS, USER/PASS, STAT,
// LIST, UIDL, RETR, TOP, QUIT).
func checkPoplib(t *testing.T, addr, caFile string, st frontends.Store, account, pass string) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed (Debian package python3)")
	}
	uv, uids, bodies := inbox(t, st, account)
	host, port, _ := strings.Cut(addr, ":")
	out := t.TempDir()
	cmd := exec.Command(py, "-c", poplibScript, host, port, account, pass, out, caFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	res, err := runTimeout(cmd, 60*time.Second)
	if err != nil {
		t.Fatalf("poplib: %v\n%s", err, stderr.String())
	}
	var got struct {
		N      int
		Size   int64
		Sizes  []int64
		UIDL   []string
		Octets []int64
		Top    string
	}
	if err := json.Unmarshal(res, &got); err != nil {
		t.Fatalf("poplib output %q: %v", res, err)
	}
	if got.N != len(bodies) {
		t.Fatalf("poplib STAT %d messages, store has %d", got.N, len(bodies))
	}
	var total int64
	for i, b := range bodies {
		total += int64(len(b))
		dl, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("%d.eml", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dl, b) {
			t.Fatalf("poplib message %d differs from the store:\n got %q\nwant %q", i+1, dl, b)
		}
		if got.Sizes[i] != int64(len(b)) || got.Octets[i] != int64(len(b)) {
			t.Fatalf("message %d: LIST %d, octets received %d, store %d", i+1, got.Sizes[i], got.Octets[i], len(b))
		}
		if want := fmt.Sprintf("%d %d.%d", i+1, uv, uids[i]); got.UIDL[i] != want {
			t.Fatalf("UIDL %q, want %q", got.UIDL[i], want)
		}
	}
	if got.Size != total {
		t.Fatalf("STAT size %d, want %d", got.Size, total)
	}
	hdr, _, _ := strings.Cut(string(bodies[0]), "\r\n\r\n")
	if got.Top != hdr+"\r\n" {
		t.Fatalf("TOP 1 0 = %q, want %q", got.Top, hdr+"\r\n")
	}
}

// checkCurl fetches every message with curl's pop3:// over STLS
// (--ssl-reqd) and compares it with the store, and the UIDL listing.
func checkCurl(t *testing.T, addr, caFile string, st frontends.Store, account, pass string) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed (Debian package curl)")
	}
	if v, err := exec.Command(curl, "--version").Output(); err != nil || !bytes.Contains(v, []byte("pop3")) {
		t.Skip("curl lacks pop3 support")
	}
	uv, uids, bodies := inbox(t, st, account)
	run := func(args ...string) []byte {
		t.Helper()
		base := []string{"--silent", "--show-error", "--max-time", "30", "--ssl-reqd", "--cacert", caFile,
			"--user", account + ":" + pass}
		cmd := exec.Command(curl, append(base, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := runTimeout(cmd, 60*time.Second)
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	for i, b := range bodies {
		got := run(fmt.Sprintf("pop3://%s/%d", addr, i+1))
		if !bytes.Equal(got, b) {
			t.Fatalf("curl message %d differs from the store:\n got %q\nwant %q", i+1, got, b)
		}
	}
	var want strings.Builder
	for i, uid := range uids {
		fmt.Fprintf(&want, "%d %d.%d\r\n", i+1, uv, uid)
	}
	if got := run("--request", "UIDL", fmt.Sprintf("pop3://%s/", addr)); string(got) != want.String() {
		t.Fatalf("curl UIDL %q, want %q", got, want.String())
	}
}

// checkMpop downloads with mpop into an mbox file when mpop is installed
// (Debian package mpop; not installed on the machine this was written on,
// so this path is unverified). fetchmail is not driven: it wants an MDA or
// an SMTP listener to hand mail to.
func checkMpop(t *testing.T, addr, caFile string, st frontends.Store, account, pass string) {
	mpop, err := exec.LookPath("mpop")
	if err != nil {
		t.Skip("mpop not installed (Debian package mpop)")
	}
	_, _, bodies := inbox(t, st, account)
	host, port, _ := strings.Cut(addr, ":")
	dir := t.TempDir()
	mbox := filepath.Join(dir, "mbox")
	conf := filepath.Join(dir, "mpoprc")
	rc := fmt.Sprintf("account default\nhost %s\nport %s\nuser %s\npassword %s\ntls on\ntls_starttls on\ntls_trust_file %s\n"+
		"keep on\nuidls_file %s\ndelivery mbox %s\n", host, port, account, pass, caFile, filepath.Join(dir, "uidls"), mbox)
	if err := os.WriteFile(conf, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mbox, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mpop, "-C", conf, "-q")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if _, err := runTimeout(cmd, 60*time.Second); err != nil {
		t.Fatalf("mpop: %v\n%s", err, stderr.String())
	}
	got, err := os.ReadFile(mbox)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range bodies {
		// mbox delivery turns CRLF into LF and adds a From_ line.
		if !bytes.Contains(got, bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))) {
			t.Fatalf("mpop mbox lacks message %d", i+1)
		}
	}
}

// runTimeout runs cmd and returns its stdout, killing it after d.
func runTimeout(cmd *exec.Cmd, d time.Duration) ([]byte, error) {
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-done:
		return stdout.Bytes(), err
	case <-t.C:
		_ = cmd.Process.Kill()
		<-done
		return stdout.Bytes(), fmt.Errorf("%s timed out after %v", cmd.Path, d)
	}
}
