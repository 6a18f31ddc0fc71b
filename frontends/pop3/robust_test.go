package pop3

import (
	"errors"
	"math/rand"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
)

// TestGarbageSessions throws random bytes and random command-shaped lines
// at the server over many connections, before and after login. The server
// must answer or close, never crash, and leave no goroutine behind (the
// TestMain check and the Close in cleanup prove the latter).
func TestGarbageSessions(t *testing.T) {
	be := newFakeBackend()
	be.addUser("u", "pw")
	for i := 0; i < 5; i++ {
		be.deliver("u", msgDots)
	}
	cfg := testConfig(t)
	cfg.IdleTimeout = 2 * time.Second
	cfg.LoginFailLimit = 1000
	cfg.MaxBadLines = 1000
	cfg.MaxAuthFailures = 1000
	srv := startServer(t, cfg, be)
	words := []string{"USER", "PASS", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "CAPA", "AUTH", "STLS",
		"u", "pw", "0", "1", "5", "6", "-1", "4294967296", "PLAIN", "=", "*", "\x00", "\xff", strings.Repeat("9", 50)}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			c, err := net.Dial("tcp", srv.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			// Drain whatever the server says until it closes.
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				buf := make([]byte, 4096)
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
			defer func() { <-drained }()
			var b strings.Builder
			if seed%2 == 0 {
				b.WriteString("USER u\r\nPASS pw\r\n")
			}
			for i := 0; i < 200; i++ {
				switch rng.Intn(3) {
				case 0: // raw bytes
					raw := make([]byte, rng.Intn(64))
					rng.Read(raw)
					b.Write(raw)
					b.WriteString("\r\n")
				default: // command-shaped
					n := 1 + rng.Intn(4)
					for j := 0; j < n; j++ {
						if j > 0 {
							b.WriteByte(' ')
						}
						b.WriteString(words[rng.Intn(len(words))])
					}
					b.WriteString("\r\n")
				}
			}
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			_, _ = c.Write([]byte(b.String()))
			// Half-close, so the server reads everything before EOF.
			_ = c.(*net.TCPConn).CloseWrite()
		}(int64(g))
	}
	wg.Wait()
	waitFor(t, 15*time.Second, "every garbage session to end", func() bool { return srv.Sessions() == 0 })
	// The server still works.
	c := greeted(t, srv.addr)
	c.login("u", "pw")
	c.cmd("QUIT", "+OK*")
}

func TestListenAndServe(t *testing.T) {
	be := newFakeBackend()
	serverTLS, clientTLS, _ := selfSigned(t)
	cfg := testConfig(t)
	cfg.TLSConfig = serverTLS
	cfg.Listen = clustertest.FreeAddr(t)
	cfg.ListenTLS = clustertest.FreeAddr(t)
	srv, err := newServer(cfg, be)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe() }()
	waitFor(t, 10*time.Second, "listeners", func() bool {
		c, err := net.Dial("tcp", cfg.ListenTLS)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	c := greeted(t, cfg.Listen)
	c.cmd("STLS", "+OK*")
	c.starttls(clientTLS)
	c.cmd("NOOP", "-ERR*")
	tc := dialTLS(t, cfg.ListenTLS, clientTLS)
	tc.expect("+OK raftmail*")
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe returned %v", err)
	}

	t.Run("bind errors", func(t *testing.T) {
		busy := listen(t)
		defer busy.Close()
		for _, cfg := range []Config{
			{Listen: busy.Addr().String()},
			{Listen: clustertest.FreeAddr(t), ListenTLS: clustertest.FreeAddr(t)}, // no TLSConfig
			{},
		} {
			cfg.Logger = testLogger(t)
			srv, err := newServer(cfg, be)
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.ListenAndServe(); err == nil || errors.Is(err, ErrServerClosed) {
				t.Fatalf("ListenAndServe(%q, %q) = %v", cfg.Listen, cfg.ListenTLS, err)
			}
			srv.Close()
		}
	})
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:110": true, "[::1]:110": true, "127.1.2.3:5": true,
		"192.0.2.1:110": false, "[2001:db8::1]:110": false, "garbage": false,
	} {
		var a net.Addr = strAddr(addr)
		if ta, err := net.ResolveTCPAddr("tcp", addr); err == nil {
			if got := isLoopback(ta); got != want {
				t.Errorf("isLoopback(TCPAddr %s) = %v", addr, got)
			}
		}
		if got := isLoopback(a); got != want {
			t.Errorf("isLoopback(%s) = %v", addr, got)
		}
	}
}

type strAddr string

func (a strAddr) Network() string { return "tcp" }
func (a strAddr) String() string  { return string(a) }

// TestInsecureAuthLoopbackOnly checks that dev mode's plaintext login is
// refused to a client that is not on loopback.
func TestInsecureAuthLoopbackOnly(t *testing.T) {
	var ip net.IP
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			ip = n.IP
			break
		}
	}
	if ip == nil {
		t.Skip("no non-loopback IPv4 address on this host")
	}
	be := newFakeBackend()
	be.addUser("u", "pw")
	srv, err := newServer(testConfig(t), be) // AllowInsecureAuth: true
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() { srv.Close(); <-done }()
	c := greeted(t, ln.Addr().String())
	c.cmd("USER u", "-ERR [AUTH] plaintext authentication disallowed*")
	c.cmd("AUTH PLAIN AHUAcHc=", "-ERR [AUTH] plaintext authentication disallowed*")
	c.send("CAPA")
	c.expectMulti("+OK*", "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\nIMPLEMENTATION raftmail\r\n.\r\n")
}
