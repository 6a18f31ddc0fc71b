package smtp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/pires/go-proxyproto"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/filters/mimetext"
	"github.com/raftmail/raftmail/frontends/smtp"
)

// TestMX drives the MX profile with real clients against a real 3-node
// cluster: one cluster, many subtests.
func TestMX(t *testing.T) {
	e := newEnv(t)
	addr, tlsAddr := e.serve(e.baseConfig(smtp.ProfileMX), nil)

	t.Run("plain delivery, unknown user refused at RCPT", func(t *testing.T) {
		cl := dial(t, addr)
		if err := cl.Mail("sender@remote.test", nil); err != nil {
			t.Fatal(err)
		}
		if err := cl.Rcpt("alice@example.test", nil); err != nil {
			t.Fatal(err)
		}
		wantCode(t, cl.Rcpt("nobody@example.test", nil), 550, "5.1.1")
		if err := cl.Rcpt("postmaster@example.test", nil); err != nil {
			t.Fatalf("alias: %v", err)
		}
		w, err := cl.Data()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, msg("plain@test", "hello"))
		resp, err := w.CloseWithResponse()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(resp.StatusText, "committed") {
			t.Fatalf("DATA reply %+v", resp)
		}
		m := e.waitStored("alice@example.test", "plain@test")
		for _, want := range []string{"Return-Path: <sender@remote.test>\r\n", "Received: from client.test ([127.0.0.1])",
			"by mx.test (raftmail) with ESMTP id "} {
			if !contains(m.body, want) {
				t.Fatalf("stored message lacks %q:\n%s", want, m.body)
			}
		}
		if m.mailbox != "INBOX" {
			t.Fatalf("stored in %s", m.mailbox)
		}
	})

	t.Run("extensions advertised", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send("EHLO client.test\r\n")
		text := r.expect(250, "")
		for _, ext := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING", "SMTPUTF8", "SIZE 1048576", "DSN", "STARTTLS", "LIMITS RCPTMAX=100"} {
			if !strings.Contains(text, ext) {
				t.Errorf("EHLO lacks %s:\n%s", ext, text)
			}
		}
		if strings.Contains(text, "AUTH") {
			t.Errorf("MX offers AUTH:\n%s", text)
		}
	})

	t.Run("pipelining", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send("EHLO client.test\r\n")
		r.expect(250, "")
		// RFC 2920: the whole envelope in one write.
		r.send("MAIL FROM:<sender@remote.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
		r.expect(250, "2.0.0")
		r.expect(250, "2.0.0")
		r.expect(550, "5.1.1")
		r.expect(250, "2.0.0")
		r.expect(354, "")
		r.send(msg("pipe@test", "pipelined") + ".\r\nQUIT\r\n")
		r.expect(250, "2.0.0")
		r.expect(221, "")
		e.waitStored("alice@example.test", "pipe@test")
		e.waitStored("bob@example.test", "pipe@test")
	})

	t.Run("8BITMIME with UTF-8 body", func(t *testing.T) {
		cl := dial(t, addr)
		if err := cl.Mail("sender@remote.test", &gosmtp.MailOptions{Body: gosmtp.Body8BitMIME}); err != nil {
			t.Fatal(err)
		}
		if err := cl.Rcpt("alice@example.test", nil); err != nil {
			t.Fatal(err)
		}
		w, _ := cl.Data()
		body := "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n" + msg("8bit@test", "Grüße aus Köln, 日本語")
		io.WriteString(w, body)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		m := e.waitStored("alice@example.test", "8bit@test")
		if !contains(m.body, "Grüße aus Köln, 日本語") {
			t.Fatalf("8-bit body mangled:\n%s", m.body)
		}
	})

	t.Run("SMTPUTF8 addresses", func(t *testing.T) {
		cl := dial(t, addr)
		if ok, _ := cl.Extension("SMTPUTF8"); !ok {
			t.Fatal("no SMTPUTF8")
		}
		if err := cl.Mail("müller@bücher.test", &gosmtp.MailOptions{UTF8: true}); err != nil {
			t.Fatal(err)
		}
		if err := cl.Rcpt("jörg@example.test", nil); err != nil {
			t.Fatal(err)
		}
		w, _ := cl.Data()
		io.WriteString(w, msg("utf8@test", "Hallo Jörg"))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		m := e.waitStored("jörg@example.test", "utf8@test")
		if !contains(m.body, "Return-Path: <müller@bücher.test>") || !contains(m.body, "with UTF8SMTP id") {
			t.Fatalf("stored:\n%s", m.body)
		}
	})

	t.Run("BDAT", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send("EHLO client.test\r\n")
		r.expect(250, "")
		r.send("MAIL FROM:<sender@remote.test>\r\n")
		r.expect(250, "")
		r.send("RCPT TO:<alice@example.test>\r\n")
		r.expect(250, "")
		body := msg("bdat@test", "chunked\r\n.leading dot stays\r\n")
		half := len(body) / 2
		r.send(fmt.Sprintf("BDAT %d\r\n%s", half, body[:half]))
		r.expect(250, "2.0.0")
		r.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body)-half, body[half:]))
		r.expect(250, "2.0.0")
		m := e.waitStored("alice@example.test", "bdat@test")
		if !contains(m.body, "\r\n.leading dot stays\r\n") {
			t.Fatalf("BDAT body:\n%s", m.body)
		}
	})

	t.Run("DSN parameters accepted", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send("EHLO client.test\r\n")
		r.expect(250, "")
		r.send("MAIL FROM:<sender@remote.test> RET=HDRS ENVID=abc123 SIZE=100 BODY=8BITMIME\r\n")
		r.expect(250, "2.0.0")
		r.send("RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@example.test\r\n")
		r.expect(250, "2.0.0")
		r.send("RSET\r\n")
		r.expect(250, "")
	})

	t.Run("relay refused", func(t *testing.T) {
		cl := dial(t, addr)
		if err := cl.Mail("sender@remote.test", nil); err != nil {
			t.Fatal(err)
		}
		wantCode(t, cl.Rcpt("someone@elsewhere.test", nil), 554, "5.7.1")
	})

	t.Run("over quota", func(t *testing.T) {
		cl := dial(t, addr)
		if err := cl.Mail("sender@remote.test", nil); err != nil {
			t.Fatal(err)
		}
		wantCode(t, cl.Rcpt("carol@example.test", nil), 452, "4.2.2")
	})

	t.Run("oversize by SIZE", func(t *testing.T) {
		cl := dial(t, addr)
		wantCode(t, cl.Mail("sender@remote.test", &gosmtp.MailOptions{Size: 2 << 20}), 552, "5.3.4")
	})

	t.Run("oversize during DATA", func(t *testing.T) {
		cl := dial(t, addr)
		if err := cl.Mail("sender@remote.test", nil); err != nil {
			t.Fatal(err)
		}
		if err := cl.Rcpt("alice@example.test", nil); err != nil {
			t.Fatal(err)
		}
		w, _ := cl.Data()
		io.WriteString(w, msg("big@test", strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 20000)))
		wantCode(t, w.Close(), 552, "5.3.4")
		if err := cl.Noop(); err != nil {
			t.Fatalf("connection unusable after 552: %v", err)
		}
		if n := len(stored(t, e.c, e.c.WaitLeader(), "alice@example.test")["big@test"]); n != 0 {
			t.Fatalf("oversize message stored %d times", n)
		}
	})

	t.Run("STARTTLS", func(t *testing.T) {
		cl, err := gosmtp.DialStartTLS(addr, e.clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := send(cl, "sender@remote.test", []string{"alice@example.test"}, msg("starttls@test", "secret")); err != nil {
			t.Fatal(err)
		}
		m := e.waitStored("alice@example.test", "starttls@test")
		if !contains(m.body, "(using TLS 1.3 with cipher TLS_") || !contains(m.body, "with ESMTPS id") {
			t.Fatalf("Received header lacks TLS:\n%s", m.body)
		}
	})

	t.Run("implicit TLS", func(t *testing.T) {
		cl, err := gosmtp.DialTLS(tlsAddr, e.clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := cl.Extension("STARTTLS"); ok {
			t.Error("STARTTLS offered inside TLS")
		}
		if err := send(cl, "sender@remote.test", []string{"bob@example.test"}, msg("implicit@test", "secret")); err != nil {
			t.Fatal(err)
		}
		m := e.waitStored("bob@example.test", "implicit@test")
		if !contains(m.body, "with ESMTPS id") {
			t.Fatalf("stored:\n%s", m.body)
		}
	})

	t.Run("AUTH not offered", func(t *testing.T) {
		cl, err := gosmtp.DialStartTLS(addr, e.clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if ok, _ := cl.Extension("AUTH"); ok {
			t.Fatal("MX offers AUTH over TLS")
		}
		wantCode(t, cl.Auth(sasl.NewPlainClient("", "alice@example.test", "alicepw")), 502, "")
	})
}

// TestSubmission checks AUTH and sender ownership.
func TestSubmission(t *testing.T) {
	e := newEnv(t)
	addr, tlsAddr := e.serve(e.baseConfig(smtp.ProfileSubmission), nil)
	devCfg := e.baseConfig(smtp.ProfileSubmission)
	devCfg.Dev = true
	devAddr, _ := e.serve(devCfg, nil)

	startTLS := func(t *testing.T) *gosmtp.Client {
		cl, err := gosmtp.DialStartTLS(addr, e.clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}

	t.Run("no AUTH on plain text", func(t *testing.T) {
		cl := dial(t, addr)
		if ok, _ := cl.Extension("AUTH"); ok {
			t.Fatal("AUTH offered without TLS")
		}
		wantCode(t, cl.Mail("alice@example.test", nil), 530, "5.7.0")
		r := dialRaw(t, addr)
		r.send("EHLO client.test\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZXB3\r\n")
		r.expect(250, "")
		r.expect(538, "5.7.11")
	})

	t.Run("MAIL before AUTH", func(t *testing.T) {
		cl := startTLS(t)
		wantCode(t, cl.Mail("alice@example.test", nil), 530, "5.7.0")
	})

	t.Run("AUTH PLAIN right, own address and alias", func(t *testing.T) {
		cl := startTLS(t)
		if ok, mechs := cl.Extension("AUTH"); !ok || !strings.Contains(mechs, "PLAIN") || !strings.Contains(mechs, "LOGIN") {
			t.Fatalf("AUTH %v %q", ok, mechs)
		}
		if err := cl.Auth(sasl.NewPlainClient("", "alice@example.test", "alicepw")); err != nil {
			t.Fatal(err)
		}
		if err := send(cl, "alice@example.test", []string{"bob@example.test"}, msg("sub1@test", "from alice")); err != nil {
			t.Fatal(err)
		}
		if err := send(cl, "postmaster@example.test", []string{"bob@example.test"}, msg("sub2@test", "from alias")); err != nil {
			t.Fatalf("alias sender: %v", err)
		}
		m := e.waitStored("bob@example.test", "sub1@test")
		if !contains(m.body, "with ESMTPSA id") {
			t.Fatalf("stored:\n%s", m.body)
		}
		e.waitStored("bob@example.test", "sub2@test")
	})

	t.Run("AUTH LOGIN right", func(t *testing.T) {
		cl := startTLS(t)
		if err := cl.Auth(sasl.NewLoginClient("bob@example.test", "bobpw")); err != nil {
			t.Fatal(err)
		}
		if err := send(cl, "bob@example.test", []string{"alice@example.test"}, msg("login@test", "from bob")); err != nil {
			t.Fatal(err)
		}
		e.waitStored("alice@example.test", "login@test")
	})

	t.Run("AUTH LOGIN without initial response", func(t *testing.T) {
		c, err := net.Dial("tcp", devAddr)
		if err != nil {
			t.Fatal(err)
		}
		r := &raw{t: t, c: c}
		r.r = newReader(c)
		defer c.Close()
		r.expect(220, "")
		r.send("EHLO client.test\r\n")
		if !strings.Contains(r.expect(250, ""), "AUTH PLAIN LOGIN") {
			t.Fatal("dev mode does not offer AUTH on loopback")
		}
		r.send("AUTH LOGIN\r\n")
		if !strings.Contains(r.expect(334, ""), "VXNlcm5hbWU6") { // "Username:"
			t.Fatal("no Username: challenge")
		}
		r.send("Ym9iQGV4YW1wbGUudGVzdA==\r\n") // bob@example.test
		r.expect(334, "")
		r.send("Ym9icHc=\r\n") // bobpw
		r.expect(235, "2.0.0")
	})

	t.Run("AUTH wrong", func(t *testing.T) {
		cl := startTLS(t)
		var took []time.Duration
		for i := 0; i < 3; i++ {
			start := time.Now()
			wantCode(t, cl.Auth(sasl.NewPlainClient("", "alice@example.test", "wrong")), 535, "5.7.8")
			took = append(took, time.Since(start))
		}
		wantCode(t, cl.Auth(sasl.NewLoginClient("alice@example.test", "wrong")), 535, "5.7.8")
		// go-smtp's client answers each failure with "*", which the server
		// counts as a bad command: use a fresh connection.
		cl = startTLS(t)
		wantCode(t, cl.Auth(sasl.NewPlainClient("bob@example.test", "alice@example.test", "alicepw")), 535, "5.7.8")
		// The growth itself is TestAuthThrottleGrows; here it is only
		// logged (password hashing on the nodes dominates the timing).
		t.Logf("AUTH failure answer times (delay 20ms doubling): %v", took)
	})

	t.Run("sender spoofing refused", func(t *testing.T) {
		cl := startTLS(t)
		if err := cl.Auth(sasl.NewPlainClient("", "alice@example.test", "alicepw")); err != nil {
			t.Fatal(err)
		}
		wantCode(t, cl.Mail("bob@example.test", nil), 553, "5.7.1")
		wantCode(t, cl.Mail("ceo@elsewhere.test", nil), 553, "5.7.1")
		wantCode(t, cl.Mail("", nil), 553, "5.7.1")
	})

	t.Run("remote recipient queued, malformed domain refused", func(t *testing.T) {
		cl, err := gosmtp.DialTLS(tlsAddr, e.clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.Auth(sasl.NewPlainClient("", "alice@example.test", "alicepw")); err != nil {
			t.Fatal(err)
		}
		if err := cl.Mail("alice@example.test", nil); err != nil {
			t.Fatal(err)
		}
		if err := cl.Rcpt("friend@elsewhere.test", nil); err != nil { // into the outbound queue
			t.Fatal(err)
		}
		wantCode(t, cl.Rcpt("friend@bad_domain..test", nil), 501, "5.1.2")
		wantCode(t, cl.Rcpt("nobody@example.test", nil), 550, "5.1.1")
		if err := cl.Rcpt("bob@example.test", nil); err != nil {
			t.Fatal(err)
		}
	})
}

// TestProxyProtocol checks that a PROXY header is used from a trusted
// source only.
func TestProxyProtocol(t *testing.T) {
	e := newEnv(t)
	cfg := e.baseConfig(smtp.ProfileMX)
	cfg.ProxyTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	addr, _ := e.serve(cfg, nil)
	untrusted := e.baseConfig(smtp.ProfileMX)
	untrusted.ProxyTrusted = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	uaddr, _ := e.serve(untrusted, nil)

	deliverVia := func(t *testing.T, header []byte, id string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(header); err != nil {
			t.Fatal(err)
		}
		r := &raw{t: t, c: c, r: newReader(c)}
		r.expect(220, "")
		r.send("EHLO lb.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
		r.expect(250, "")
		r.expect(250, "")
		r.expect(250, "")
		r.expect(354, "")
		r.send(msg(id, "proxied") + ".\r\n")
		r.expect(250, "")
	}

	t.Run("v1", func(t *testing.T) {
		deliverVia(t, []byte("PROXY TCP4 203.0.113.9 127.0.0.1 40000 25\r\n"), "proxy1@test")
		m := e.waitStored("alice@example.test", "proxy1@test")
		if !contains(m.body, "([203.0.113.9])") {
			t.Fatalf("client IP not from PROXY header:\n%s", m.body)
		}
	})
	t.Run("v2", func(t *testing.T) {
		h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 40000},
			&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 25})
		b, err := h.Format()
		if err != nil {
			t.Fatal(err)
		}
		deliverVia(t, b, "proxy2@test")
		m := e.waitStored("alice@example.test", "proxy2@test")
		if !contains(m.body, "([IPv6:2001:db8::7])") {
			t.Fatalf("client IP not from PROXY v2 header:\n%s", m.body)
		}
	})
	t.Run("trusted source without header dropped", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "EHLO x\r\n")
		r := &raw{t: t, c: c, r: newReader(c)}
		if !r.closed(10 * time.Second) {
			t.Fatal("connection without PROXY header from a trusted proxy not closed")
		}
	})
	t.Run("untrusted header is an unknown command", func(t *testing.T) {
		r := dialRaw(t, uaddr)
		r.send("PROXY TCP4 203.0.113.9 127.0.0.1 40000 25\r\n")
		r.expect(501, "5.5.2")
	})
}

// TestFilters checks the pipeline hooks end to end: deny list at connect,
// rate limit at MAIL, tag to Junk at DATA, a panicking check fails closed.
func TestFilters(t *testing.T) {
	e := newEnv(t)
	pipe := filters.New(filters.Config{Logger: testLogger(t)},
		filters.With(&filters.DenyList{Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}, filters.Policy{}),
		filters.With(&filters.RateLimit{Messages: filters.Rate{Count: 3, Per: time.Hour}}, filters.Policy{}),
		filters.With(subjectCheck{}, filters.Policy{}),
	)
	addr, _ := e.serve(e.baseConfig(smtp.ProfileMX), pipe)

	t.Run("deny list", func(t *testing.T) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Skipf("cannot bind 127.0.0.2: %v", err)
		}
		defer c.Close()
		r := &raw{t: t, c: c, r: newReader(c)}
		r.expect(554, "5.7.1")
	})
	t.Run("tag delivers to Junk", func(t *testing.T) {
		cl := dial(t, addr)
		body := strings.Replace(msg("junk@test", "buy now"), "Subject: test", "Subject: SPAM test", 1)
		if err := send(cl, "s@remote.test", []string{"alice@example.test"}, body); err != nil {
			t.Fatal(err)
		}
		m := e.waitStored("alice@example.test", "junk@test")
		if m.mailbox != "Junk" || !contains(m.body, "X-Test-Spam: yes") || !contains(m.body, "X-Raftmail-Reason: junk; check=subject") {
			t.Fatalf("tagged message in %s:\n%s", m.mailbox, m.body)
		}
	})
	t.Run("reject at DATA", func(t *testing.T) {
		cl := dial(t, addr)
		body := strings.Replace(msg("virus@test", "x"), "Subject: test", "Subject: VIRUS test", 1)
		wantCode(t, send(cl, "s@remote.test", []string{"alice@example.test"}, body), 550, "5.7.1")
	})
	t.Run("panic fails closed", func(t *testing.T) {
		cl := dial(t, addr)
		body := strings.Replace(msg("panic@test", "x"), "Subject: test", "Subject: PANIC test", 1)
		wantCode(t, send(cl, "s@remote.test", []string{"alice@example.test"}, body), 451, "4.7.1")
	})
	t.Run("message rate limit", func(t *testing.T) {
		cl := dial(t, addr)
		// 3 MAILs were used above; the 4th (this one) or 5th exceeds it.
		var err error
		for i := 0; i < 3 && err == nil; i++ {
			err = cl.Mail("s@remote.test", nil)
			_ = cl.Reset()
		}
		wantCode(t, err, 451, "4.7.1")
	})
}

// subjectCheck tags "SPAM", rejects "VIRUS" and panics on "PANIC" in the
// Subject.
type subjectCheck struct{}

func (subjectCheck) Name() string { return "subject" }
func (subjectCheck) NewState(context.Context, *filters.ConnInfo) (filters.State, error) {
	return subjectState{}, nil
}

type subjectState struct{ filters.NopState }

func (subjectState) Body(_ context.Context, m *filters.Message) filters.Verdict {
	txt, err := mimetext.FromMessage(m)
	if err != nil {
		return filters.Failure(err)
	}
	s := txt.Header.Get("Subject")
	switch {
	case strings.Contains(s, "SPAM"):
		return filters.Verdict{Action: filters.Tag, Headers: []filters.Header{{Key: "X-Test-Spam", Value: "yes"}}}
	case strings.Contains(s, "VIRUS"):
		return filters.Verdict{Action: filters.Reject, Err: errors.New("test virus")}
	case strings.Contains(s, "PANIC"):
		panic("test panic")
	}
	return filters.Verdict{}
}
