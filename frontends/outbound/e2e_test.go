package outbound_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/frontends/smtp"
	"github.com/raftmail/raftmail/raftstore"
)

// submission starts a submission frontend (dev mode: AUTH on loopback
// without TLS) over the cluster's node APIs.
func (e *env) submission() string {
	e.t.Helper()
	var urls []string
	for i := 0; i < e.c.N(); i++ {
		urls = append(urls, "http://"+e.c.Config(i).HTTPAddr)
	}
	nc, err := smtp.NewNodesCommitter(smtp.NodesConfig{Nodes: urls, Logger: testLogger()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	srv, err := smtp.New(smtp.Config{Profile: smtp.ProfileSubmission, Hostname: "submit.example.test", Dev: true,
		CommitTimeout: 10 * time.Second, Logger: testLogger()}, nc, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	e.t.Cleanup(func() { srv.Close(); wg.Wait() })
	return ln.Addr().String()
}

// TestSubmissionToTheWorld: an authenticated user sends to a local and a
// remote recipient with DSN parameters; 250 comes after the commit, the
// local copy is in the INBOX, the remote one reaches the MX signed and
// with NOTIFY/ORCPT/ENVID passed on; the MX profile's tests keep proving
// it never relays.
func TestSubmissionToTheWorld(t *testing.T) {
	e := newEnv(t, 1, nil)
	e.c.AddAccount("bob@example.test", "pw")
	e.in.mx("remote.test", 10, "mx.remote.test", "127.0.0.2")
	s := e.in.sink("127.0.0.2")
	txt := e.dkimKey("example.test", "sel")
	addr := e.submission()

	cl, err := gosmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Auth(sasl.NewPlainClient("", "alice@example.test", "pw")); err != nil {
		t.Fatal(err)
	}
	if err := cl.Mail("alice@example.test", &gosmtp.MailOptions{Return: gosmtp.DSNReturnHeaders, EnvelopeID: "ENV-7"}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Rcpt("bob@example.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := cl.Rcpt("x@remote.test", &gosmtp.RcptOptions{Notify: []gosmtp.DSNNotify{gosmtp.DSNNotifyFailure},
		OriginalRecipientType: gosmtp.DSNAddressTypeRFC822, OriginalRecipient: "X@remote.test"}); err != nil {
		t.Fatal(err)
	}
	var se *gosmtp.SMTPError
	if err := cl.Rcpt("y@bad_domain..test", nil); !asSMTP(err, &se) || se.Code != 501 {
		t.Fatalf("malformed domain: %v", err)
	}
	w, err := cl.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, strings.Replace(message("sub@test", "to the world"), "Return-Path: <alice@example.test>\r\n", "", 1))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := e.waitInbox("bob@example.test", 1); !strings.Contains(got[0], "Hello sub@test") {
		t.Fatalf("local copy:\n%s", got[0])
	}
	clustertest.Eventually(t, 20*time.Second, "remote delivery", func() bool { return len(s.messages()) == 1 })
	m := s.messages()[0]
	if m.Opts.EnvelopeID != "ENV-7" || len(m.RcOpt) != 1 || m.RcOpt[0].OriginalRecipient != "X@remote.test" ||
		len(m.RcOpt[0].Notify) != 1 || hasHeader(m.Data, "Return-Path") {
		t.Fatalf("remote transaction %+v\n%s", m, m.Data)
	}
	v, err := dkim.VerifyWithOptions(bytes.NewReader(m.Data), &dkim.VerifyOptions{LookupTXT: func(string) ([]string, error) { return []string{txt}, nil }})
	if err != nil || len(v) != 1 || v[0].Err != nil {
		t.Fatalf("dkim %v %+v", err, v)
	}
	e.waitEmpty(10 * time.Second)
	_ = e.c.Node(0).View(func(r *raftstore.ReadTx) error {
		if n, _, _, _ := r.BlobStats(); n != 1 {
			t.Errorf("%d bodies stored, want 1 (bob's copy)", n)
		}
		return nil
	})
}

func asSMTP(err error, se **gosmtp.SMTPError) bool {
	e, ok := err.(*gosmtp.SMTPError)
	*se = e
	return ok
}

// TestPostfixSmtpSink delivers to Postfix's smtp-sink (Debian package
// postfix; CI installs it) and checks the dumped messages.
func TestPostfixSmtpSink(t *testing.T) {
	bin, err := exec.LookPath("smtp-sink")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/smtp-sink"); serr != nil {
			t.Skip("smtp-sink not installed (apt-get install postfix); skipping the Postfix interop test")
		}
		bin = "/usr/sbin/smtp-sink"
	}
	e := newEnv(t, 1, nil)
	e.in.mx("postfix.test", 10, "mx.postfix.test", "127.0.0.3")
	txt := e.dkimKey("example.test", "pf")
	// smtp-sink drops to nobody when run as root: its dump directory must
	// be reachable for nobody, which t.TempDir's parent is not.
	dir, err := os.MkdirTemp("", "smtp-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	args := []string{"-d", filepath.Join(dir, "%Y/%M."), "-h", "mx.postfix.test"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	args = append(args, "127.0.0.3:"+strconv.Itoa(e.in.port), "16")
	cmd := exec.Command(bin, args...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	clustertest.Eventually(t, 10*time.Second, "smtp-sink listening", func() bool {
		c, err := net.Dial("tcp", e.in.addr("127.0.0.3"))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	const n = 5
	for i := 0; i < n; i++ {
		e.queue("alice@example.test", rcpts(fmt.Sprintf("u%d@postfix.test", i), "v@postfix.test"), message(fmt.Sprintf("pf%d@test", i), "to postfix"))
	}
	if !waitFor(30*time.Second, func() bool { return len(e.entries()) == 0 }) {
		t.Fatalf("queue not empty; smtp-sink said: %s", out.String())
	}
	var files []string
	clustertest.Eventually(t, 10*time.Second, "dump files", func() bool {
		files, _ = filepath.Glob(filepath.Join(dir, "*", "*"))
		return len(files) >= n
	})
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// The dump is the message preceded by X-Client-*/X-Mail-Args/X-Rcpt-Args lines.
		if !bytes.Contains(b, []byte("u")) || !bytes.Contains(b, []byte("Subject: to postfix")) {
			t.Fatalf("dump %s:\n%s", f, b)
		}
		i := bytes.Index(b, []byte("DKIM-Signature:"))
		if i < 0 {
			t.Fatalf("dump %s not signed:\n%s", f, b)
		}
		v, err := dkim.VerifyWithOptions(bytes.NewReader(b[i:]), &dkim.VerifyOptions{LookupTXT: func(string) ([]string, error) { return []string{txt}, nil }})
		if err != nil || len(v) != 1 || v[0].Err != nil {
			t.Fatalf("dkim of %s: %v %+v", f, err, v)
		}
	}
	if st := e.stats(); st.Counters["delivered"] != 2*n {
		t.Fatalf("counters %v (smtp-sink said %s)", st.Counters, out.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls cond every 20ms until it holds or the timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
