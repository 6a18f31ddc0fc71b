package pop3

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Test messages. msgDots has lines that begin with "." (dot-stuffing);
// msgLF uses bare LF (sent and counted as CRLF); msgNoEOL lacks a final
// line terminator (one is added and counted).
const (
	msgDots  = "From: a@example.org\r\nTo: u@example.org\r\nSubject: dots\r\n\r\nHello\r\n.hidden\r\n..two\r\n.\r\nend\r\n"
	msgLF    = "Subject: bare LF\n\nline1\nline2\n.dot\n"
	msgNoEOL = "Subject: no eol\r\n\r\nfirst\r\nlast"
)

// Their wire forms: dot-stuffed, CRLF, with the ".\r\n" terminator.
const (
	wireDots  = "From: a@example.org\r\nTo: u@example.org\r\nSubject: dots\r\n\r\nHello\r\n..hidden\r\n...two\r\n..\r\nend\r\n.\r\n"
	wireLF    = "Subject: bare LF\r\n\r\nline1\r\nline2\r\n..dot\r\n.\r\n"
	wireNoEOL = "Subject: no eol\r\n\r\nfirst\r\nlast\r\n.\r\n"
)

// Sizes the client is told: octets before dot-stuffing, CRLF counted.
var (
	sizeDots  = len(msgDots)
	sizeLF    = len("Subject: bare LF\r\n\r\nline1\r\nline2\r\n.dot\r\n")
	sizeNoEOL = len(msgNoEOL) + 2
	sizeAll   = sizeDots + sizeLF + sizeNoEOL
)

// threeMessages sets up user "u" with the three test messages.
func threeMessages(t *testing.T) (*fakeBackend, *testServer) {
	t.Helper()
	be := newFakeBackend()
	be.addUser("u", "secret pw")
	be.deliver("u", msgDots)
	be.deliver("u", msgLF)
	be.deliver("u", msgNoEOL)
	return be, startServer(t, testConfig(t), be)
}

func TestCAPA(t *testing.T) {
	_, srv := threeMessages(t)
	c := greeted(t, srv.addr)
	c.send("CAPA")
	c.expectMulti("+OK capability list follows",
		"TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN\r\nEXPIRE NEVER\r\nIMPLEMENTATION raftmail\r\n.\r\n")
	c.cmd("CAPA x", "-ERR*")
	c.login("u", "secret pw")
	c.send("capa")
	c.expectMulti("+OK capability list follows",
		"TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\nIMPLEMENTATION raftmail\r\n.\r\n")
	c.cmd("QUIT", "+OK*")
	c.expectClosed()
}

func TestTransaction(t *testing.T) {
	be, srv := threeMessages(t)
	c := greeted(t, srv.addr)
	c.cmd("USER u", "+OK*")
	c.cmd("PASS secret pw", fmt.Sprintf("+OK maildrop locked and ready, 3 messages (%d octets)", sizeAll))
	if h := be.leaseHolder("pop3:u"); !strings.HasPrefix(h, "n1/") {
		t.Fatalf("lease holder %q, want n1/…", h)
	}

	t.Run("STAT", func(t *testing.T) {
		c.t = t
		c.cmd("STAT", fmt.Sprintf("+OK 3 %d", sizeAll))
		c.cmd("STAT 1", "-ERR*")
	})
	t.Run("LIST", func(t *testing.T) {
		c.t = t
		c.send("LIST")
		c.expectMulti(fmt.Sprintf("+OK 3 messages (%d octets)", sizeAll),
			fmt.Sprintf("1 %d\r\n2 %d\r\n3 %d\r\n.\r\n", sizeDots, sizeLF, sizeNoEOL))
		c.cmd("LIST 2", fmt.Sprintf("+OK 2 %d", sizeLF))
		c.cmd("LIST 4", "-ERR no such message")
		c.cmd("LIST 1 2", "-ERR*")
	})
	t.Run("UIDL", func(t *testing.T) {
		c.t = t
		c.send("UIDL")
		c.expectMulti("+OK*", "1 1234.1\r\n2 1234.2\r\n3 1234.3\r\n.\r\n")
		c.cmd("UIDL 3", "+OK 3 1234.3")
		c.cmd("UIDL 0", "-ERR invalid message number")
	})
	t.Run("RETR", func(t *testing.T) {
		c.t = t
		for i, want := range []struct {
			size int
			wire string
		}{{sizeDots, wireDots}, {sizeLF, wireLF}, {sizeNoEOL, wireNoEOL}} {
			c.send(fmt.Sprintf("RETR %d", i+1))
			c.expectMulti(fmt.Sprintf("+OK %d octets", want.size), want.wire)
		}
		c.cmd("RETR", "-ERR*")
		c.cmd("RETR 9", "-ERR no such message")
	})
	t.Run("TOP", func(t *testing.T) {
		c.t = t
		c.send("TOP 1 0")
		c.expectMulti("+OK*", "From: a@example.org\r\nTo: u@example.org\r\nSubject: dots\r\n\r\n.\r\n")
		c.send("TOP 1 2")
		c.expectMulti("+OK*", "From: a@example.org\r\nTo: u@example.org\r\nSubject: dots\r\n\r\nHello\r\n..hidden\r\n.\r\n")
		c.send("TOP 2 100")
		c.expectMulti("+OK*", wireLF)
		c.send("TOP 3 999999999")
		c.expectMulti("+OK*", wireNoEOL)
		c.cmd("TOP 1", "-ERR*")
		c.cmd("TOP 1 -1", "-ERR invalid line count")
		c.cmd("TOP 1 x", "-ERR invalid line count")
		c.cmd("TOP 4 1", "-ERR no such message")
	})
	t.Run("DELE and RSET", func(t *testing.T) {
		c.t = t
		c.cmd("DELE 1", "+OK message 1 deleted")
		c.cmd("DELE 1", "-ERR no such message")
		c.cmd("RETR 1", "-ERR no such message")
		c.cmd("LIST 1", "-ERR no such message")
		c.cmd("STAT", fmt.Sprintf("+OK 2 %d", sizeLF+sizeNoEOL))
		c.send("LIST")
		c.expectMulti("+OK 2 messages*", fmt.Sprintf("2 %d\r\n3 %d\r\n.\r\n", sizeLF, sizeNoEOL))
		c.send("UIDL")
		c.expectMulti("+OK*", "2 1234.2\r\n3 1234.3\r\n.\r\n")
		c.cmd("RSET", fmt.Sprintf("+OK maildrop has 3 messages (%d octets)", sizeAll))
		c.cmd("RSET x", "-ERR*")
		c.cmd("LIST 1", fmt.Sprintf("+OK 1 %d", sizeDots))
		c.cmd("DELE", "-ERR*")
		c.cmd("DELE 1", "+OK*")
		c.cmd("DELE 3", "+OK*")
	})
	t.Run("NOOP", func(t *testing.T) {
		c.t = t
		c.cmd("NOOP", "+OK")
		c.cmd("NOOP x", "-ERR*")
	})
	t.Run("QUIT expunges the marked messages", func(t *testing.T) {
		c.t = t
		c.cmd("QUIT", "+OK*1 messages left*")
		c.expectClosed()
		if got := be.uids("u"); len(got) != 1 || got[0] != 2 {
			t.Fatalf("uids after QUIT = %v, want [2]", got)
		}
		ex := be.expunges()
		if len(ex) != 1 || len(ex[0].UIDs) != 2 || ex[0].OnlyDeleted {
			t.Fatalf("expunges = %+v, want one with two explicit ranges", ex)
		}
		waitFor(t, 5*time.Second, "lease release", func() bool { return be.leaseHolder("pop3:u") == "" })
	})
}

func TestQUITWithoutDeletions(t *testing.T) {
	be, srv := threeMessages(t)
	c := greeted(t, srv.addr)
	c.cmd("QUIT", "+OK*") // AUTHORIZATION: just sign off
	c.expectClosed()
	c = greeted(t, srv.addr)
	c.login("u", "secret pw")
	c.cmd("QUIT", "+OK*")
	c.expectClosed()
	if n := len(be.expunges()); n != 0 {
		t.Fatalf("%d expunges proposed without deletions", n)
	}
	if got := be.uids("u"); len(got) != 3 {
		t.Fatalf("uids = %v", got)
	}
}

func TestDropDeletesNothing(t *testing.T) {
	be, srv := threeMessages(t)
	c := greeted(t, srv.addr)
	c.login("u", "secret pw")
	c.cmd("DELE 1", "+OK*")
	c.cmd("DELE 2", "+OK*")
	c.c.Close()
	waitFor(t, 5*time.Second, "session end", func() bool { return srv.Sessions() == 0 })
	if got := be.uids("u"); len(got) != 3 {
		t.Fatalf("uids after drop = %v, want all three", got)
	}
	if n := len(be.expunges()); n != 0 {
		t.Fatalf("%d expunges proposed by a dropped session", n)
	}
	if h := be.leaseHolder("pop3:u"); h != "" {
		t.Fatalf("lease still held by %q after drop", h)
	}
}

func TestQUITCommitFails(t *testing.T) {
	be, srv := threeMessages(t)
	be.setExpungeErr(errors.New("raft apply: leadership lost"))
	c := greeted(t, srv.addr)
	c.login("u", "secret pw")
	c.cmd("DELE 2", "+OK*")
	c.cmd("QUIT", "-ERR [SYS/TEMP] *")
	c.expectClosed()
	if got := be.uids("u"); len(got) != 3 {
		t.Fatalf("uids after failed commit = %v", got)
	}
	// The lock is released all the same.
	be.setExpungeErr(nil)
	c = greeted(t, srv.addr)
	c.login("u", "secret pw")
}

func TestInUse(t *testing.T) {
	_, srv := threeMessages(t)
	a := greeted(t, srv.addr)
	a.login("u", "secret pw")
	b := greeted(t, srv.addr)
	b.cmd("USER u", "+OK*")
	b.cmd("PASS secret pw", "-ERR [IN-USE] *")
	// RFC 1939 §7: b stays in AUTHORIZATION and may try again.
	b.cmd("STAT", "-ERR*")
	a.cmd("QUIT", "+OK*")
	a.expectClosed()
	b.login("u", "secret pw")
	b.cmd("STAT", "+OK 3 *")
}

func TestLeaseLostEndsSession(t *testing.T) {
	be, srv := threeMessages(t)
	c := greeted(t, srv.addr)
	c.login("u", "secret pw")
	c.cmd("DELE 1", "+OK*")
	be.stealLease("pop3:u")
	// The next renewal (every TTL/3 = 1s) finds the lease held.
	waitFor(t, 10*time.Second, "lease loss", func() bool {
		c.send("NOOP")
		return c.line() != "+OK"
	})
	c.expectClosed()
	if got := be.uids("u"); len(got) != 3 {
		t.Fatalf("uids = %v; a session that lost its lock deleted", got)
	}
}

func TestWrongState(t *testing.T) {
	_, srv := threeMessages(t)
	c := greeted(t, srv.addr)
	for _, cmd := range []string{"STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL", "UIDL 1"} {
		c.cmd(cmd, "-ERR command not valid before login")
	}
	c.cmd("PASS x", "-ERR USER first")
	c.cmd("STLS", "-ERR STLS not available")
	c.cmd("XYZZ", "-ERR unknown command")
	c.login("u", "secret pw")
	for _, cmd := range []string{"USER u", "PASS x", "AUTH PLAIN", "STLS"} {
		c.cmd(cmd, "-ERR already logged in")
	}
	c.cmd("APOP u 0123456789abcdef0123456789abcdef", "-ERR unknown command")
	c.cmd("STAT", "+OK*")
}

func TestBadInput(t *testing.T) {
	_, srv := threeMessages(t)
	c := greeted(t, srv.addr)
	c.login("u", "secret pw")
	for _, tc := range []struct{ line, want string }{
		{"RETR 0", "-ERR invalid message number"},
		{"RETR -1", "-ERR invalid message number"},
		{"RETR +1", "-ERR invalid message number"},
		{"RETR 1.0", "-ERR invalid message number"},
		{"RETR 4", "-ERR no such message"},
		{"RETR 99999999999999999999", "-ERR invalid message number"},
		{"RETR 999999999", "-ERR no such message"},
		{"DELE 0x1", "-ERR invalid message number"},
		{"LIST " + strings.Repeat("9", 200), "-ERR invalid message number"},
		{"TOP 1 " + strings.Repeat("9", 200), "-ERR invalid line count"},
		{"RETR 1 2 3", "-ERR too many arguments"},
		{"", "-ERR empty command line"},
		{"   ", "-ERR empty command line"},
		{"RE\x00TR 1", "-ERR control characters*"},
		{"RETR\x001", "-ERR control characters*"},
		{"\x01\x02\x03\xff\xfe", "-ERR control characters*"},
		{"\xff\xfe\xfd\xfc", "-ERR command keyword*"},
		{"ÄÖÜ 1", "-ERR command keyword*"},
		{"R", "-ERR command keyword*"},
		{"RETRIEVE 1", "-ERR command keyword*"},
		{"retr 7", "-ERR no such message"},
	} {
		c.cmd(tc.line, tc.want)
	}
	// An overlong line gets -ERR and the session goes on.
	c.cmd("NOOP "+strings.Repeat("x", 300), "-ERR line too long*")
	c.cmd("LIST "+strings.Repeat("1", 5000), "-ERR line too long*")
	c.cmd("STAT", "+OK 3 *")
	// A bare-LF terminated command is accepted.
	c.sendRaw("NOOP\n")
	c.expect("+OK")
	c.send("QUIT")
	c.expect("+OK*")
	c.expectClosed()
}

func TestFlooding(t *testing.T) {
	_, srv := threeMessages(t)
	t.Run("endless line", func(t *testing.T) {
		c := greeted(t, srv.addr)
		junk := strings.Repeat("A", 32<<10)
		go func() {
			for i := 0; i < 8; i++ {
				if _, err := c.c.Write([]byte(junk)); err != nil {
					return
				}
			}
		}()
		c.expect("-ERR line too long, closing connection")
		c.expectClosed()
	})
	t.Run("many long lines", func(t *testing.T) {
		c := greeted(t, srv.addr)
		var b strings.Builder
		for range 25 {
			b.WriteString(strings.Repeat("B", 300) + "\r\n")
		}
		c.sendRaw(b.String())
		for range 20 {
			c.expect("-ERR line too long*")
		}
		c.expect("-ERR too many overlong lines, closing connection")
		c.expectClosed()
	})
	t.Run("garbage", func(t *testing.T) {
		c := greeted(t, srv.addr)
		var b strings.Builder
		for i := range 25 {
			b.WriteString(fmt.Sprintf("\x00\x01garbage%d\r\n", i))
		}
		c.sendRaw(b.String())
		for range 20 {
			c.expect("-ERR*")
		}
		c.expect("-ERR too many bad commands, closing connection")
		c.expectClosed()
	})
}

func TestMaxCommands(t *testing.T) {
	be := newFakeBackend()
	cfg := testConfig(t)
	cfg.MaxCommands = 5
	srv := startServer(t, cfg, be)
	c := greeted(t, srv.addr)
	for range 5 {
		c.cmd("CAPA", "+OK*")
		c.multi()
	}
	c.cmd("NOOP", "-ERR too many commands*")
	c.expectClosed()
}

func TestAuthFailures(t *testing.T) {
	be := newFakeBackend()
	be.addUser("u", "pw")
	cfg := testConfig(t)
	cfg.LoginFailLimit = 4
	srv := startServer(t, cfg, be)
	t.Run("connection closes after MaxAuthFailures", func(t *testing.T) {
		c := greeted(t, srv.addr)
		c.cmd("USER u", "+OK*")
		c.cmd("PASS wrong", "-ERR [AUTH] invalid user name or password")
		c.cmd("USER nobody", "+OK*")
		c.cmd("PASS pw", "-ERR [AUTH] invalid user name or password")
		c.cmd("USER u", "+OK*")
		c.cmd("PASS wrong", "-ERR [AUTH] *closing connection")
		c.expectClosed()
	})
	t.Run("IP refused past the limit", func(t *testing.T) {
		c := greeted(t, srv.addr)
		c.cmd("USER u", "+OK*")
		c.cmd("PASS wrong", "-ERR [AUTH] *") // fourth failure from 127.0.0.1
		c.cmd("USER u", "+OK*")
		// Even the right password is refused now.
		c.cmd("PASS pw", "-ERR [LOGIN-DELAY] *")
	})
	t.Run("delay grows", func(t *testing.T) {
		l := newFailLimiter(&Config{LoginFailDelay: time.Second, LoginFailMaxDelay: 5 * time.Second, LoginFailLimit: 10, LoginFailWindow: time.Minute})
		now := time.Unix(1000, 0)
		l.now = func() time.Time { return now }
		var got []time.Duration
		for range 5 {
			got = append(got, l.fail("1.2.3.4"))
		}
		want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("delays %v, want %v", got, want)
		}
		if l.blocked("1.2.3.4") || l.blocked("5.6.7.8") {
			t.Fatal("blocked below the limit")
		}
		for range 5 {
			l.fail("1.2.3.4")
		}
		if !l.blocked("1.2.3.4") {
			t.Fatal("not blocked at the limit")
		}
		now = now.Add(2 * time.Minute)
		if l.blocked("1.2.3.4") {
			t.Fatal("still blocked after the window")
		}
		if d := l.fail("1.2.3.4"); d != time.Second {
			t.Fatalf("delay after window %v, want 1s", d)
		}
	})
}

func TestAuthPlain(t *testing.T) {
	be := newFakeBackend()
	be.addUser("u", "pw")
	cfg := testConfig(t)
	cfg.MaxAuthFailures = 100
	cfg.LoginFailLimit = 100
	srv := startServer(t, cfg, be)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	t.Run("list mechanisms", func(t *testing.T) {
		c := greeted(t, srv.addr)
		c.send("AUTH")
		c.expectMulti("+OK*", "PLAIN\r\n.\r\n")
	})
	t.Run("initial response", func(t *testing.T) {
		c := greeted(t, srv.addr)
		c.cmd("AUTH PLAIN "+b64("\x00u\x00pw"), "+OK maildrop locked*")
		c.cmd("QUIT", "+OK*")
	})
	t.Run("continuation", func(t *testing.T) {
		c := greeted(t, srv.addr)
		c.cmd("auth plain", "+ ")
		c.cmd(b64("u\x00u\x00pw"), "+OK maildrop locked*")
		c.cmd("QUIT", "+OK*")
	})
	t.Run("errors", func(t *testing.T) {
		c := greeted(t, srv.addr)
		c.cmd("AUTH PLAIN", "+ ")
		c.cmd("*", "-ERR authentication cancelled")
		c.cmd("AUTH PLAIN", "+ ")
		c.cmd("!!!notbase64", "-ERR invalid base64*")
		c.cmd("AUTH PLAIN !!!", "-ERR invalid base64*")
		c.cmd("AUTH PLAIN =", "-ERR [AUTH] *")
		c.cmd("AUTH PLAIN "+b64("u\x00pw"), "-ERR [AUTH] *")
		c.cmd("AUTH PLAIN "+b64("\x00u\x00wrong"), "-ERR [AUTH] *")
		c.cmd("AUTH PLAIN "+b64("other\x00u\x00pw"), "-ERR [AUTH] *")
		c.cmd("AUTH CRAM-MD5", "-ERR unsupported*")
		c.cmd("AUTH PLAIN", "+ ")
		c.cmd(strings.Repeat("A", 5000), "-ERR line too long*")
		c.cmd("AUTH PLAIN "+b64("\x00u\x00pw"), "+OK*")
	})
}

func TestInsecureAuthRefused(t *testing.T) {
	be := newFakeBackend()
	be.addUser("u", "pw")
	cfg := testConfig(t)
	cfg.AllowInsecureAuth = false
	srv := startServer(t, cfg, be)
	c := greeted(t, srv.addr)
	c.send("CAPA")
	c.expectMulti("+OK*", "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\nIMPLEMENTATION raftmail\r\n.\r\n")
	c.cmd("USER u", "-ERR [AUTH] plaintext authentication disallowed*")
	c.cmd("PASS pw", "-ERR [AUTH] plaintext authentication disallowed*")
	c.cmd("AUTH PLAIN AHUAcHc=", "-ERR [AUTH] plaintext authentication disallowed*")
	c.send("AUTH")
	c.expectMulti("+OK*", ".\r\n")
}

func TestSTLS(t *testing.T) {
	be := newFakeBackend()
	be.addUser("u", "pw")
	be.deliver("u", msgDots)
	serverTLS, clientTLS, _ := selfSigned(t)
	cfg := testConfig(t)
	cfg.AllowInsecureAuth = false
	cfg.TLSConfig = serverTLS
	srv := startServer(t, cfg, be)

	t.Run("upgrade", func(t *testing.T) {
		c := greeted(t, srv.addr)
		c.send("CAPA")
		c.expectMulti("+OK*", "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nEXPIRE NEVER\r\nIMPLEMENTATION raftmail\r\n.\r\n")
		c.cmd("USER u", "-ERR [AUTH]*")
		c.cmd("STLS x", "-ERR*")
		c.cmd("STLS", "+OK begin TLS negotiation")
		c.starttls(clientTLS)
		c.send("CAPA")
		c.expectMulti("+OK*", "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN\r\nEXPIRE NEVER\r\nIMPLEMENTATION raftmail\r\n.\r\n")
		c.cmd("STLS", "-ERR command not permitted when TLS active")
		c.login("u", "pw")
		c.send("RETR 1")
		c.expectMulti("+OK*", wireDots)
		c.cmd("QUIT", "+OK*")
	})
	t.Run("pipelined plaintext after STLS is discarded", func(t *testing.T) {
		c := greeted(t, srv.addr)
		c.sendRaw("STLS\r\nUSER injected\r\n")
		c.expect("+OK begin TLS negotiation")
		// The server must not read the injected line as if sent over TLS;
		// its TLS layer sees it as garbage and the handshake fails.
		tc := tlsClient(c, clientTLS)
		if err := tc.Handshake(); err == nil {
			c.c = tc
			c.r.Reset(tc)
			c.cmd("PASS pw", "-ERR USER first")
		}
	})
	t.Run("implicit TLS", func(t *testing.T) {
		c := dialTLS(t, srv.tlsAddr, clientTLS)
		c.expect("+OK raftmail*")
		c.send("CAPA")
		c.expectMulti("+OK*", "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN\r\nEXPIRE NEVER\r\nIMPLEMENTATION raftmail\r\n.\r\n")
		c.cmd("STLS", "-ERR command not permitted when TLS active")
		c.login("u", "pw")
		c.cmd("QUIT", "+OK*")
	})
	t.Run("plaintext on the TLS port", func(t *testing.T) {
		c := dial(t, srv.tlsAddr)
		c.send("USER u")
		c.expectClosed()
	})
}

func TestIdleTimeout(t *testing.T) {
	be := newFakeBackend()
	be.addUser("u", "pw")
	be.deliver("u", msgDots)
	cfg := testConfig(t)
	cfg.IdleTimeout = time.Second
	srv := startServer(t, cfg, be)
	c := greeted(t, srv.addr)
	c.login("u", "pw")
	c.cmd("DELE 1", "+OK*")
	c.expect("-ERR autologout*")
	c.expectClosed()
	if got := be.uids("u"); len(got) != 1 {
		t.Fatalf("autologout deleted: uids %v", got)
	}
	waitFor(t, 5*time.Second, "lease release", func() bool { return be.leaseHolder("pop3:u") == "" })
}

func TestMaxSessions(t *testing.T) {
	be := newFakeBackend()
	cfg := testConfig(t)
	cfg.MaxSessions = 2
	srv := startServer(t, cfg, be)
	a := greeted(t, srv.addr)
	greeted(t, srv.addr)
	c := dial(t, srv.addr)
	c.expect("-ERR [SYS/TEMP] too many connections*")
	c.expectClosed()
	a.cmd("QUIT", "+OK*")
	waitFor(t, 5*time.Second, "a slot", func() bool { return srv.Sessions() < 2 })
	greeted(t, srv.addr)
}

func TestCloseEndsSessions(t *testing.T) {
	be := newFakeBackend()
	be.addUser("u", "pw")
	be.deliver("u", msgDots)
	srv, err := newServer(testConfig(t), be)
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	c := greeted(t, ln.Addr().String())
	c.login("u", "pw")
	c.cmd("DELE 1", "+OK*")
	idle := greeted(t, ln.Addr().String())
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	c.expectClosed()
	idle.expectClosed()
	if got := be.uids("u"); len(got) != 1 {
		t.Fatalf("shutdown deleted: %v", got)
	}
	if h := be.leaseHolder("pop3:u"); h != "" {
		t.Fatalf("lease %q not released at Close", h)
	}
	if err := srv.Serve(listen(t)); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

func TestMessageExpungedElsewhere(t *testing.T) {
	be, srv := threeMessages(t)
	c := greeted(t, srv.addr)
	c.login("u", "secret pw")
	// Another client (IMAP) removes message 2 and its body goes away.
	be.mu.Lock()
	delete(be.bodies, be.inbox["u"][1].blob)
	be.inbox["u"] = append(be.inbox["u"][:1], be.inbox["u"][2])
	be.mu.Unlock()
	// Numbers and sizes do not move.
	c.cmd("STAT", fmt.Sprintf("+OK 3 %d", sizeAll))
	c.cmd("RETR 2", "-ERR message was deleted by another client")
	c.send("RETR 3")
	c.expectMulti(fmt.Sprintf("+OK %d octets", sizeNoEOL), wireNoEOL)
	c.cmd("DELE 2", "+OK*")
	c.cmd("QUIT", "+OK*")
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"short line", func(c *Config) { c.MaxLineLength = 10 }},
		{"auth line below command line", func(c *Config) { c.MaxLineLength = 300; c.MaxAuthLineLength = 200 }},
		{"tiny idle", func(c *Config) { c.IdleTimeout = time.Millisecond }},
		{"tiny lease", func(c *Config) { c.LeaseTTL = time.Millisecond }},
		{"negative commands", func(c *Config) { c.MaxCommands = -1 }},
		{"max delay below delay", func(c *Config) { c.LoginFailDelay = time.Second; c.LoginFailMaxDelay = time.Millisecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{}
			tc.mod(&cfg)
			cfg.setDefaults()
			if err := cfg.Validate(); err == nil {
				t.Fatal("Validate accepted it")
			}
		})
	}
	cfg := Config{}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if cfg.IdleTimeout != 10*time.Minute || cfg.MaxLineLength != 255 {
		t.Fatalf("defaults: idle %v, line %d", cfg.IdleTimeout, cfg.MaxLineLength)
	}
	if _, err := New(cfg, nil); err == nil {
		t.Fatal("New accepted a nil store")
	}
}
