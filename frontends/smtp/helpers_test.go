package smtp_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/frontends/smtp"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// testTLS returns a server TLS config with a fresh self-signed certificate
// for mx.test and 127.0.0.1, and a client config trusting it.
func testTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mx.test"},
		DNSNames:              []string{"mx.test", "localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
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
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}
	client = &tls.Config{RootCAs: pool, ServerName: "mx.test"}
	return server, client
}

// env is a 3-node cluster with test accounts and a committer over its
// node APIs.
type env struct {
	t         *testing.T
	c         *clustertest.Cluster
	nodes     *smtp.NodesCommitter
	serverTLS *tls.Config
	clientTLS *tls.Config
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := clustertest.New(t, 3)
	c.AddAccount("alice@example.test", "alicepw")
	c.AddAccount("bob@example.test", "bobpw")
	c.AddAccount("carol@example.test", "carolpw")
	c.AddAccount("jörg@example.test", "jörgpw")
	c.Propose(0, &command.AddAlias{Address: "postmaster@example.test", Target: "alice@example.test"})
	// carol is over quota: one message, then a 1-byte quota.
	c.Deliver(0, "x@remote.test", []string{"carol@example.test"}, []byte("Subject: fill\r\n\r\nfill\r\n"))
	c.Propose(0, &command.SetQuota{Address: "carol@example.test", Quota: 1})
	e := &env{t: t, c: c}
	e.serverTLS, e.clientTLS = testTLS(t)
	e.nodes = e.committer()
	return e
}

// committer returns a new committer over all node APIs.
func (e *env) committer() *smtp.NodesCommitter {
	e.t.Helper()
	var urls []string
	for i := 0; i < e.c.N(); i++ {
		urls = append(urls, "http://"+e.c.Config(i).HTTPAddr)
	}
	n, err := smtp.NewNodesCommitter(smtp.NodesConfig{Nodes: urls, DirectoryTTL: 2 * time.Second, Logger: testLogger(e.t)})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(n.Close)
	return n
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("RAFTMAIL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// baseConfig is a test configuration of the given profile.
func (e *env) baseConfig(p smtp.Profile) smtp.Config {
	return smtp.Config{Profile: p, Hostname: "mx.test", TLSConfig: e.serverTLS, MaxMessageBytes: 1 << 20,
		CommitTimeout: 5 * time.Second, AuthFailureDelay: 20 * time.Millisecond, AuthFailureMaxDelay: 200 * time.Millisecond,
		Logger: testLogger(e.t)}
}

// serve starts a server with a plain and an implicit-TLS listener and
// returns their addresses.
func (e *env) serve(cfg smtp.Config, pipe *filters.Pipeline) (plain, implicit string) {
	e.t.Helper()
	return serveWith(e.t, cfg, e.nodes, pipe)
}

func serveWith(t *testing.T, cfg smtp.Config, committer *smtp.NodesCommitter, pipe *filters.Pipeline) (plain, implicit string) {
	t.Helper()
	srv, err := smtp.New(cfg, committer, pipe)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	go func() { defer wg.Done(); _ = srv.ServeTLS(tln) }()
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return ln.Addr().String(), tln.Addr().String()
}

// dial connects the go-smtp client and says EHLO.
func dial(t *testing.T, addr string) *gosmtp.Client {
	t.Helper()
	cl, err := gosmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	if err := cl.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return cl
}

// msg returns a message with a Message-ID.
func msg(id, body string) string {
	return "From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: test " + id +
		"\r\nMessage-ID: <" + id + ">\r\n\r\n" + body + "\r\n"
}

// send runs a whole transaction with the go-smtp client.
func send(cl *gosmtp.Client, from string, rcpts []string, body string) error {
	if err := cl.Mail(from, nil); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	for _, r := range rcpts {
		if err := cl.Rcpt(r, nil); err != nil {
			return fmt.Errorf("RCPT %s: %w", r, err)
		}
	}
	w, err := cl.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := io.WriteString(w, body); err != nil {
		return err
	}
	return w.Close()
}

// wantCode fails unless err is an SMTP error with code and enhanced code
// ("5.1.1"; "" to skip).
func wantCode(t *testing.T, err error, code int, enh string) {
	t.Helper()
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want %d %s", err, code, enh)
	}
	got := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	if se.Code != code || (enh != "" && got != enh) {
		t.Fatalf("got %d %s %q, want %d %s", se.Code, got, se.Message, code, enh)
	}
}

var msgIDRe = regexp.MustCompile(`(?mi)^Message-ID: <([^>]*)>`)

// stored returns, for node i, the bodies of an account's messages by
// Message-ID (all mailboxes), with their mailbox names.
func stored(t *testing.T, c *clustertest.Cluster, i int, acct string) map[string][]storedMsg {
	t.Helper()
	out := map[string][]storedMsg{}
	err := c.Node(i).View(func(r *raftstore.ReadTx) error {
		mbs, err := r.Mailboxes(acct)
		if err != nil {
			return err
		}
		for _, mb := range mbs {
			var ids [][32]byte
			var flags [][]string
			if err := r.Messages(mb.ID, nil, func(m *raftstore.Message) error {
				ids = append(ids, m.BlobID)
				flags = append(flags, append([]string(nil), m.Flags...))
				return nil
			}); err != nil {
				return err
			}
			for k, id := range ids {
				body, err := r.Body(id)
				if err != nil {
					return err
				}
				mid := ""
				if m := msgIDRe.FindSubmatch(body); m != nil {
					mid = string(m[1])
				}
				out[mid] = append(out[mid], storedMsg{mailbox: mb.Name, body: body, flags: flags[k]})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("node %d: %v", i+1, err)
	}
	return out
}

type storedMsg struct {
	mailbox string
	body    []byte
	flags   []string
}

// waitStored waits until every node holds the Message-ID for acct once
// and returns node 0's copy.
func (e *env) waitStored(acct, id string) storedMsg {
	e.t.Helper()
	var got storedMsg
	clustertest.Eventually(e.t, 10*time.Second, "message "+id+" on every node", func() bool {
		for _, i := range e.c.Running() {
			m := stored(e.t, e.c, i, acct)[id]
			if len(m) > 1 {
				e.t.Fatalf("node %d holds %s %d times", i+1, id, len(m))
			}
			if len(m) != 1 {
				return false
			}
			got = m[0]
		}
		return true
	})
	return got
}

// raw is a transcript client for what go-smtp's client cannot send.
type raw struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &raw{t: t, c: c, r: bufio.NewReader(c)}
	r.expect(220, "")
	return r
}

func (r *raw) send(s string) {
	r.t.Helper()
	_ = r.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("send: %v", err)
	}
}

// reply reads one (possibly multi-line) reply.
func (r *raw) reply() (code int, text string, err error) {
	_ = r.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	var b strings.Builder
	for {
		line, err := r.r.ReadString('\n')
		if err != nil {
			return 0, b.String(), err
		}
		b.WriteString(line)
		if len(line) < 4 {
			return 0, b.String(), fmt.Errorf("short reply line %q", line)
		}
		if line[3] == ' ' {
			_, err := fmt.Sscanf(line, "%d", &code)
			return code, b.String(), err
		}
	}
}

// expect reads a reply and checks its code and enhanced code prefix.
func (r *raw) expect(code int, enh string) string {
	r.t.Helper()
	got, text, err := r.reply()
	if err != nil {
		r.t.Fatalf("want %d %s: %v (read %q)", code, enh, err, text)
	}
	if got != code || (enh != "" && !strings.Contains(text, fmt.Sprintf("%d %s ", code, enh))) {
		r.t.Fatalf("got %q, want %d %s", text, code, enh)
	}
	return text
}

// closed reports whether the server closed the connection (reading until
// EOF or an error within the deadline).
func (r *raw) closed(within time.Duration) bool {
	_ = r.c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, r.r)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout())
}

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
