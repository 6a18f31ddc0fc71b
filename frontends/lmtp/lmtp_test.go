package lmtp_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/frontends/lmtp"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

const msg = "From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: test\r\nMessage-ID: <1@remote.test>\r\n\r\nHello Alice.\r\n"

// serve starts an LMTP server on node i and returns its address.
func serve(t *testing.T, c *clustertest.Cluster, i int, cfg lmtp.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := lmtp.New(cfg, c.Node(i))
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cl := smtp.NewClientLMTP(conn)
	t.Cleanup(func() { cl.Close() })
	if err := cl.Hello("mta.test"); err != nil {
		t.Fatal(err)
	}
	return cl
}

func newCluster(t *testing.T) *clustertest.Cluster {
	c := clustertest.New(t, 3)
	c.AddAccount("alice@example.test", "pw")
	c.AddAccount("bob@example.test", "pw")
	return c
}

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// counts returns the number of messages in every mailbox of an account on
// node i, plus the number of distinct bodies stored there.
func counts(t *testing.T, c *clustertest.Cluster, i int, acct string) (msgs uint32, blobs int) {
	t.Helper()
	err := c.Node(i).View(func(r *raftstore.ReadTx) error {
		mbs, err := r.Mailboxes(acct)
		for _, m := range mbs {
			msgs += m.Messages
		}
		blobs, _, _, _ = r.BlobStats()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return msgs, blobs
}

// send runs one transaction and returns the RCPT errors and the per
// recipient DATA outcome.
func send(t *testing.T, cl *smtp.Client, rcpts []string, body string) (rcptErrs []error, dataErr error) {
	t.Helper()
	if err := cl.Mail("sender@remote.test", nil); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	accepted := 0
	for _, r := range rcpts {
		err := cl.Rcpt(r, nil)
		rcptErrs = append(rcptErrs, err)
		if err == nil {
			accepted++
		}
	}
	if accepted == 0 {
		_ = cl.Reset()
		return rcptErrs, nil
	}
	w, err := cl.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return rcptErrs, err
	}
	return rcptErrs, w.Close()
}

func TestDeliverPerRecipientReplies(t *testing.T) {
	c := newCluster(t)
	cl := dial(t, serve(t, c, c.Follower(), lmtp.Config{}))
	rcptErrs, dataErr := send(t, cl, []string{"alice@example.test", "nobody@example.test", "bob+news@example.test", "x@elsewhere.test"}, msg)
	if rcptErrs[0] != nil || rcptErrs[2] != nil {
		t.Fatalf("known recipients refused: %v", rcptErrs)
	}
	var se *smtp.SMTPError
	if !errors.As(rcptErrs[1], &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Fatalf("unknown user: got %v, want 550 5.1.1", rcptErrs[1])
	}
	if smtpCode(rcptErrs[3]) != 550 {
		t.Fatalf("foreign domain: got %v, want 550", rcptErrs[3])
	}
	if dataErr != nil {
		t.Fatalf("DATA: %v", dataErr)
	}
	c.WaitConverged(10 * time.Second)
	for i := 0; i < 3; i++ {
		a, blobs := counts(t, c, i, "alice@example.test")
		b, _ := counts(t, c, i, "bob@example.test")
		if a != 1 || b != 1 || blobs != 1 {
			t.Fatalf("node %d: alice %d bob %d blobs %d, want 1 1 1", i+1, a, b, blobs)
		}
	}
	// The stored body is the message with the Return-Path of final delivery.
	err := c.Node(0).View(func(r *raftstore.ReadTx) error {
		m, _ := r.MailboxByName("alice@example.test", "INBOX")
		msg1, err := r.Message(m.ID, 1)
		if err != nil {
			return err
		}
		body, err := r.Body(msg1.BlobID)
		if err != nil {
			return err
		}
		if want := "Return-Path: <sender@remote.test>\r\n" + msg; string(body) != want {
			return fmt.Errorf("stored body %q, want %q", body, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	c := newCluster(t)
	addr := serve(t, c, 0, lmtp.Config{MaxMessageBytes: 64 << 10, MaxRecipients: 3, MaxLineLength: 4096})
	_, _, _, before := digest(t, c)

	t.Run("oversize", func(t *testing.T) {
		cl := dial(t, addr)
		big := msg + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n", 2000)
		_, err := send(t, cl, []string{"alice@example.test"}, big)
		if smtpCode(err) != 552 {
			t.Fatalf("oversize DATA: got %v, want 552", err)
		}
	})
	t.Run("too many recipients", func(t *testing.T) {
		cl := dial(t, addr)
		if err := cl.Mail("s@remote.test", nil); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if err := cl.Rcpt("alice@example.test", nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.Rcpt("bob@example.test", nil); smtpCode(err) != 452 {
			t.Fatalf("4th RCPT: got %v, want 452", err)
		}
		_ = cl.Reset()
	})
	t.Run("malformed addresses", func(t *testing.T) {
		cl := dial(t, addr)
		if err := cl.Mail("s@remote.test", nil); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"no-at-sign", "a b@example.test", "@example.test"} {
			if err := cl.Rcpt(bad, nil); smtpCode(err) < 500 {
				t.Fatalf("RCPT %q: got %v, want 5xx", bad, err)
			}
		}
	})
	t.Run("bare LF", func(t *testing.T) {
		// go-smtp's client turns LF into CRLF, so speak LMTP by hand.
		reply := rawSession(t, addr, "LHLO mta.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"+
			"Subject: x\r\n\r\nline one\nline two\r\n.\r\nQUIT\r\n")
		if !strings.Contains(reply, "554 5.6.0") {
			t.Fatalf("bare LF: transcript %q lacks 554 5.6.0", reply)
		}
	})
	t.Run("NUL bytes", func(t *testing.T) {
		cl := dial(t, addr)
		_, err := send(t, cl, []string{"alice@example.test"}, "Subject: x\r\n\r\nnul \x00 here\r\n")
		if smtpCode(err) != 554 {
			t.Fatalf("NUL: got %v, want 554", err)
		}
	})
	t.Run("10 MB line", func(t *testing.T) {
		cl := dial(t, addr)
		_, err := send(t, cl, []string{"alice@example.test"}, "Subject: x\r\n\r\n"+strings.Repeat("x", 10<<20)+"\r\n")
		if err == nil || smtpCode(err) < 500 && smtpCode(err) != 0 {
			t.Fatalf("10 MB line: got %v, want a 5xx", err)
		}
	})
	t.Run("DATA before RCPT", func(t *testing.T) {
		cl := dial(t, addr)
		if err := cl.Mail("s@remote.test", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Data(); smtpCode(err) != 502 && smtpCode(err) != 503 {
			t.Fatalf("DATA without RCPT: got %v, want 502/503", err)
		}
	})
	_, _, _, after := digest(t, c)
	if before != after {
		t.Fatal("refused input changed the replicated state")
	}
	// The server still works after all that.
	cl := dial(t, addr)
	if _, err := send(t, cl, []string{"alice@example.test"}, msg); err != nil {
		t.Fatalf("good delivery after bad input: %v", err)
	}
}

// rawSession writes a whole LMTP conversation and returns what the server
// answered until it closed the connection.
func rawSession(t *testing.T, addr, script string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write([]byte(script)); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, _ = out.ReadFrom(conn)
	return out.String()
}

func digest(t *testing.T, c *clustertest.Cluster) (string, uint64, int, string) {
	t.Helper()
	c.WaitConverged(10 * time.Second)
	d, idx, err := c.Node(0).Store().Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d, idx, 0, d
}

func TestOverQuota(t *testing.T) {
	c := newCluster(t)
	c.Propose(0, &command.SetQuota{Address: "bob@example.test", Quota: 300})
	cl := dial(t, serve(t, c, 1, lmtp.Config{}))
	body := msg + strings.Repeat("padding line to exceed the quota of bob\r\n", 10)
	rcptErrs, dataErr := send(t, cl, []string{"alice@example.test", "bob@example.test"}, body)
	if rcptErrs[0] != nil || rcptErrs[1] != nil {
		t.Fatalf("RCPT: %v", rcptErrs)
	}
	var lerr smtp.LMTPDataError
	if !errors.As(dataErr, &lerr) {
		t.Fatalf("want per-recipient errors, got %v", dataErr)
	}
	if e, ok := lerr["bob@example.test"]; !ok || e.Code != 552 || e.EnhancedCode != (smtp.EnhancedCode{5, 2, 2}) {
		t.Fatalf("bob over quota: got %v, want 552 5.2.2", lerr)
	}
	if _, failed := lerr["alice@example.test"]; failed {
		t.Fatalf("alice refused: %v", lerr)
	}
	// Now bob is over quota: refused at RCPT already.
	if err := cl.Mail("s@remote.test", nil); err != nil {
		t.Fatal(err)
	}
	c.Propose(0, &command.SetQuota{Address: "bob@example.test", Quota: 1})
	c.Deliver(0, "x@remote.test", []string{"alice@example.test"}, []byte(msg)) // advance
	if b, _ := counts(t, c, 1, "bob@example.test"); b != 0 {
		t.Fatalf("bob has %d messages, want 0", b)
	}
}

func TestNoQuorumAnswers451ThenSucceedsOnce(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{CommitTimeout: 2 * time.Second})
	c.AddAccount("alice@example.test", "pw")
	li := c.WaitLeader()
	c.WaitConverged(10 * time.Second)
	for _, i := range c.Running() {
		if i != li {
			c.Stop(i)
		}
	}
	cl := dial(t, serve(t, c, li, lmtp.Config{CommitTimeout: 2 * time.Second}))
	start := time.Now()
	_, err := send(t, cl, []string{"alice@example.test"}, msg)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 0}) {
		t.Fatalf("without quorum: got %v, want 451 4.3.0", err)
	}
	t.Logf("451 after %v", time.Since(start).Round(time.Millisecond))
	for i := 0; i < 3; i++ {
		if i != li {
			c.Restart(i)
		}
	}
	li = c.WaitLeader()
	cl2 := dial(t, serve(t, c, li, lmtp.Config{}))
	if _, err := send(t, cl2, []string{"alice@example.test"}, msg); err != nil {
		t.Fatalf("after quorum is back: %v", err)
	}
	c.WaitConverged(15 * time.Second)
	for i := 0; i < 3; i++ {
		if n, _ := counts(t, c, i, "alice@example.test"); n != 1 && n != 2 {
			t.Fatalf("node %d: %d messages", i+1, n)
		}
	}
}

func TestThirtyMiBMessageCommits(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a 30 MiB message is too slow under -race; the process test in cmd/raftmail covers it")
	}
	c := newCluster(t)
	cl := dial(t, serve(t, c, c.Follower(), lmtp.Config{}))
	raw := make([]byte, 22<<20)
	_, _ = rand.Read(raw)
	var b bytes.Buffer
	b.WriteString("From: s@remote.test\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	if b.Len() < 29<<20 {
		t.Fatalf("test message is only %d bytes", b.Len())
	}
	if _, err := send(t, cl, []string{"alice@example.test"}, b.String()); err != nil {
		t.Fatalf("30 MiB message: %v", err)
	}
	c.WaitConverged(30 * time.Second)
	if n, _ := counts(t, c, 2, "alice@example.test"); n != 1 {
		t.Fatalf("node 3 has %d messages", n)
	}
}
