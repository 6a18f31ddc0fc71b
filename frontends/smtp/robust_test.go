package smtp_test

import (
	"crypto/rand"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/frontends/smtp"
)

// TestBadInput feeds what broken or hostile clients send; every case must
// get its proper reply, the limits must hold, and the server must keep
// serving.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	cfg := e.baseConfig(smtp.ProfileMX)
	cfg.MaxLineLength = 4096
	cfg.WriteTimeout = 500 * time.Millisecond
	addr, _ := e.serve(cfg, nil)
	idle := e.baseConfig(smtp.ProfileMX)
	idle.IdleTimeout = 300 * time.Millisecond
	idle.SessionTimeout = 1500 * time.Millisecond
	idleAddr, _ := e.serve(idle, nil)
	perIP := e.baseConfig(smtp.ProfileMX)
	perIP.MaxConnectionsPerIP = 4
	perIPAddr, _ := e.serve(perIP, nil)

	alive := func(t *testing.T) {
		t.Helper()
		r := dialRaw(t, addr)
		r.send("EHLO client.test\r\n")
		r.expect(250, "")
		r.send("QUIT\r\n")
		r.expect(221, "")
	}

	t.Run("command over 512 bytes", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send("EHLO client.test\r\n")
		r.expect(250, "")
		r.send("MAIL FROM:<" + strings.Repeat("a", 600) + "@remote.test>\r\n")
		r.expect(553, "5.1.7")
		r.send("MAIL FROM:<s@remote.test>\r\nRCPT TO:<" + strings.Repeat("b", 600) + "@example.test>\r\n")
		r.expect(250, "")
		r.expect(501, "5.1.3")
		r.send("NOOP " + strings.Repeat("x", 5000) + "\r\n")
		r.expect(500, "")
		if !r.closed(5 * time.Second) {
			t.Fatal("line over MaxLineLength did not close the connection")
		}
		alive(t)
	})

	t.Run("1000 RCPTs", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send("EHLO client.test\r\nMAIL FROM:<s@remote.test>\r\n")
		r.expect(250, "")
		r.expect(250, "")
		var b strings.Builder
		for i := 0; i < 1000; i++ {
			fmt.Fprintf(&b, "RCPT TO:<alice@example.test>\r\n")
		}
		go func() { _, _ = r.c.Write([]byte(b.String())) }()
		for i := 0; i < 1000; i++ {
			if i < 100 {
				r.expect(250, "2.0.0")
			} else {
				r.expect(452, "4.5.3")
			}
		}
		r.send("DATA\r\n")
		r.expect(354, "")
		r.send(msg("many@test", "to one hundred") + ".\r\n")
		r.expect(250, "")
		e.waitStored("alice@example.test", "many@test")
	})

	t.Run("DATA before RCPT, RCPT before MAIL", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send("EHLO client.test\r\nDATA\r\nRCPT TO:<alice@example.test>\r\nMAIL FROM:<s@remote.test>\r\nDATA\r\nBDAT 5 LAST\r\nhello")
		r.expect(250, "")
		r.expect(502, "5.5.1")
		r.expect(502, "5.5.1")
		r.expect(250, "")
		r.expect(502, "5.5.1")
		r.expect(502, "5.5.1")
		r.send("NOOP\r\n")
		r.expect(250, "")
	})

	t.Run("NUL and bare LF in DATA", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send("EHLO client.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
		r.expect(250, "")
		r.expect(250, "")
		r.expect(250, "")
		r.expect(354, "")
		r.send("Subject: x\r\n\r\nsmuggle\n.\nMAIL FROM:<evil@x>\r\n.\r\n")
		r.expect(554, "5.6.0")
	})

	t.Run("binary garbage", func(t *testing.T) {
		r := dialRaw(t, addr)
		junk := make([]byte, 64<<10)
		rand.Read(junk)
		go func() { _, _ = r.c.Write(junk) }()
		got := 0
		for {
			code, _, err := r.reply()
			if err != nil {
				break
			}
			if code < 400 {
				t.Fatalf("garbage got %d", code)
			}
			got++
		}
		if got == 0 {
			t.Fatal("no error reply to garbage")
		}
		alive(t)
	})

	t.Run("failed commands before disconnect", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send("EHLO client.test\r\nMAIL FROM:<s@remote.test>\r\n")
		r.expect(250, "")
		r.expect(250, "")
		for i := 1; i < 10; i++ {
			r.send(fmt.Sprintf("RCPT TO:<nobody%d@example.test>\r\n", i))
			r.expect(550, "5.1.1")
		}
		r.send("RCPT TO:<nobody10@example.test>\r\n")
		r.expect(421, "4.7.0")
		if !r.closed(5 * time.Second) {
			t.Fatal("not closed after too many errors")
		}
	})

	t.Run("client that stops reading", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		// Pipeline NOOPs without reading a reply: the server's replies
		// fill the socket buffers, its write times out and it closes.
		noops := []byte(strings.Repeat("NOOP\r\n", 4096))
		start := time.Now()
		var werr error
		for time.Since(start) < 20*time.Second {
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, werr = c.Write(noops); werr != nil {
				break
			}
		}
		if werr == nil {
			t.Fatal("server still reading from a client that does not read")
		}
		t.Logf("stalled client cut off after %v (%v)", time.Since(start).Round(time.Millisecond), werr)
		alive(t)
	})

	t.Run("connections per IP", func(t *testing.T) {
		var held []*raw
		for i := 0; i < 4; i++ {
			held = append(held, dialRaw(t, perIPAddr))
		}
		c, err := net.Dial("tcp", perIPAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := &raw{t: t, c: c, r: newReader(c)}
		r.expect(421, "4.7.0")
		held[0].send("QUIT\r\n")
		held[0].expect(221, "")
		for _, h := range held {
			h.c.Close()
		}
	})

	t.Run("idle timeout", func(t *testing.T) {
		r := dialRaw(t, idleAddr)
		start := time.Now()
		r.expect(421, "4.4.2")
		t.Logf("idle client cut off after %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("session timeout", func(t *testing.T) {
		r := dialRaw(t, idleAddr)
		start := time.Now()
		for i := 0; ; i++ {
			r.send("NOOP\r\n")
			code, _, err := r.reply()
			if err != nil || code == 421 {
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatal("session not ended by SessionTimeout")
			}
		}
		if d := time.Since(start); d < time.Second {
			t.Fatalf("session ended after %v, before SessionTimeout", d)
		}
	})
}
