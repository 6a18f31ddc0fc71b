package pop3

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the package if a server, session or lease goroutine
// outlives the tests (a small goleak).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitNoLeaks(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func waitNoLeaks(within time.Duration) string {
	deadline := time.Now().Add(within)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "frontends/pop3.(*session)") || strings.Contains(g, "frontends/pop3.(*lease)") ||
				strings.Contains(g, "frontends/pop3.(*Server)") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		<-time.After(50 * time.Millisecond) // poll interval of a deadline wait
	}
}

// testLogger writes through t.Log so a failing test shows the server side.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testConfig is a config for fast tests on loopback.
func testConfig(t testing.TB) Config {
	return Config{
		AllowInsecureAuth: true,
		LoginFailDelay:    time.Millisecond,
		LoginFailMaxDelay: 4 * time.Millisecond,
		LeaseTTL:          3 * time.Second,
		CommitTimeout:     5 * time.Second,
		Logger:            testLogger(t),
	}
}

type testServer struct {
	*Server
	addr    string
	tlsAddr string
}

// startServer serves be on a loopback listener (and an implicit-TLS one
// when cfg has a TLS config) until the test ends.
func startServer(t testing.TB, cfg Config, be backend) *testServer {
	t.Helper()
	srv, err := newServer(cfg, be)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: srv}
	done := make(chan error, 2)
	n := 1
	ln := listen(t)
	ts.addr = ln.Addr().String()
	go func() { done <- srv.Serve(ln) }()
	if cfg.TLSConfig != nil {
		n++
		tln := listen(t)
		ts.tlsAddr = tln.Addr().String()
		go func() { done <- srv.ServeTLS(tln) }()
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		for range n {
			if err := <-done; !errors.Is(err, ErrServerClosed) {
				t.Errorf("serve returned %v, want ErrServerClosed", err)
			}
		}
		if s := srv.Sessions(); s != 0 {
			t.Errorf("%d sessions left after Close", s)
		}
	})
	return ts
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// tconn is the transcript helper: send a line, expect a response pattern.
type tconn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

const ioTimeout = 20 * time.Second

func dial(t testing.TB, addr string) *tconn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &tconn{t: t, c: c, r: bufio.NewReader(c)}
}

func dialTLS(t testing.TB, addr string, cfg *tls.Config) *tconn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &tconn{t: t, c: c, r: bufio.NewReader(c)}
}

// greeted dials and consumes the greeting.
func greeted(t testing.TB, addr string) *tconn {
	t.Helper()
	c := dial(t, addr)
	c.expect(`+OK raftmail POP3 server ready`)
	return c
}

// starttls upgrades the connection after +OK to STLS.
func (c *tconn) starttls(cfg *tls.Config) {
	c.t.Helper()
	tc := tls.Client(c.c, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("client handshake: %v", err)
	}
	c.c = tc
	c.r = bufio.NewReader(tc)
}

func (c *tconn) send(line string) {
	c.t.Helper()
	c.sendRaw(line + "\r\n")
}

func (c *tconn) sendRaw(s string) {
	c.t.Helper()
	_ = c.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// line reads one response line without CRLF, insisting on the CRLF.
func (c *tconn) line() string {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read response: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("response line %q does not end in CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// expect reads a line and matches it against a glob: "*" matches any run
// of characters, everything else is literal.
func (c *tconn) expect(glob string) string {
	c.t.Helper()
	l := c.line()
	if !globMatch(glob, l) {
		c.t.Fatalf("got %q, want %q", l, glob)
	}
	return l
}

func globMatch(glob, s string) bool {
	re := "^" + strings.ReplaceAll(regexp.QuoteMeta(glob), `\*`, ".*") + "$"
	return regexp.MustCompile(re).MatchString(s)
}

// cmd sends a line and expects one response line.
func (c *tconn) cmd(line, glob string) string {
	c.t.Helper()
	c.send(line)
	return c.expect(glob)
}

// multi reads the raw octets of a multi-line body up to and including the
// ".\r\n" terminator line.
func (c *tconn) multi() []byte {
	c.t.Helper()
	var out []byte
	for {
		_ = c.c.SetReadDeadline(time.Now().Add(ioTimeout))
		l, err := c.r.ReadBytes('\n')
		if err != nil {
			c.t.Fatalf("read multi-line: %v (so far %q)", err, out)
		}
		out = append(out, l...)
		if string(l) == ".\r\n" {
			return out
		}
	}
}

// expectMulti expects a first line matching glob, then exactly want.
func (c *tconn) expectMulti(glob string, want string) {
	c.t.Helper()
	c.expect(glob)
	if got := c.multi(); !bytes.Equal(got, []byte(want)) {
		c.t.Fatalf("multi-line response:\n got %q\nwant %q", got, want)
	}
}

// expectClosed expects the server to close the connection.
func (c *tconn) expectClosed() {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	b, err := c.r.ReadString('\n')
	if err == nil {
		c.t.Fatalf("expected close, got %q", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open")
	}
}

// login logs in with USER/PASS.
func (c *tconn) login(user, pass string) string {
	c.t.Helper()
	c.cmd("USER "+user, "+OK*")
	return c.cmd("PASS "+pass, "+OK*")
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// selfSigned returns a server TLS config for 127.0.0.1, a client config
// that trusts it and the certificate as a PEM file for external clients.
func selfSigned(t testing.TB) (server, client *tls.Config, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "raftmail test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return server, client, caFile
}

// tlsClient starts a client TLS layer over c's connection.
func tlsClient(c *tconn, cfg *tls.Config) *tls.Conn {
	_ = c.c.SetDeadline(time.Now().Add(ioTimeout))
	return tls.Client(c.c, cfg)
}
