package imap

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/raftstore"
)

const (
	alice   = "alice@example.test"
	alicePw = "alice-secret"
)

// env is a cluster of real raft nodes with one IMAP server per node on
// 127.0.0.1.
type env struct {
	t     *testing.T
	c     *clustertest.Cluster
	srvs  []*Server
	addrs []string
	tune  []func(*Config)
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("RAFTMAIL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newEnv(t *testing.T, n int, tune ...func(*Config)) *env {
	t.Helper()
	c := clustertest.New(t, n)
	c.AddAccount(alice, alicePw)
	e := &env{t: t, c: c, tune: tune}
	for i := 0; i < n; i++ {
		e.startServer(i)
	}
	return e
}

func (e *env) startServer(i int) {
	e.t.Helper()
	cfg := Config{
		InsecureAuth:   true,
		CommandTimeout: 10 * time.Second,
		MaxAppendSize:  1 << 20,
		AuthDelay:      20 * time.Millisecond,
		AuthMaxDelay:   200 * time.Millisecond,
		Logger:         testLogger(e.t).With("n", i+1),
	}
	for _, f := range e.tune {
		f(&cfg)
	}
	srv, err := New(cfg, e.c.Store(i))
	if err != nil {
		e.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	e.t.Cleanup(func() { _ = srv.Close() })
	for len(e.srvs) <= i {
		e.srvs = append(e.srvs, nil)
		e.addrs = append(e.addrs, "")
	}
	e.srvs[i], e.addrs[i] = srv, ln.Addr().String()
}

// dial connects a client to node i's IMAP server (not logged in).
func (e *env) dial(i int, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialInsecure(e.addrs[i], &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		e.t.Fatalf("dial node %d: %v", i+1, err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

// login dials node i and logs alice in.
func (e *env) login(i int, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	e.t.Helper()
	c := e.dial(i, h)
	if err := c.Login(alice, alicePw).Wait(); err != nil {
		e.t.Fatalf("login on node %d: %v", i+1, err)
	}
	return c
}

// deliver commits a message for alice through node i, the way LMTP does.
func (e *env) deliver(i int, raw string) uint32 {
	e.t.Helper()
	res := e.c.Deliver(i, "sender@remote.test", []string{alice}, []byte(raw))
	if len(res.Rcpts) != 1 || res.Rcpts[0].Status.Err() != nil {
		e.t.Fatalf("deliver: %+v", res)
	}
	return res.Rcpts[0].UID
}

func testMail(n int) string {
	return fmt.Sprintf("From: Bob <bob@remote.test>\r\nTo: alice@example.test\r\nSubject: message %d\r\n"+
		"Date: Mon, 02 Jan 2006 15:04:05 +0100\r\nMessage-ID: <m%d@remote.test>\r\n\r\nbody of message %d\r\n", n, n, n)
}

func mustSelect(t *testing.T, c *imapclient.Client, name string) *imap.SelectData {
	t.Helper()
	d, err := c.Select(name, nil).Wait()
	if err != nil {
		t.Fatalf("select %s: %v", name, err)
	}
	// imapclient (beta.8) signals completion before it records the
	// selected state; wait for it so Mailbox() is usable.
	clustertest.Eventually(t, 5*time.Second, "client selected state", func() bool { return c.Mailbox() != nil })
	return d
}

func appendMsg(t *testing.T, c *imapclient.Client, mbox, raw string, opts *imap.AppendOptions) *imap.AppendData {
	t.Helper()
	cmd := c.Append(mbox, int64(len(raw)), opts)
	if _, err := cmd.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := cmd.Wait()
	if err != nil {
		t.Fatalf("append to %s: %v", mbox, err)
	}
	return d
}

// imapCode returns the response code of a command error ("" if none).
func imapCode(err error) imap.ResponseCode {
	var ie *imap.Error
	if err == nil {
		return ""
	}
	if e, ok := err.(*imap.Error); ok {
		ie = e
	} else {
		return "?"
	}
	return ie.Code
}

// raw is a line-level client for bad-input transcripts.
type raw struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (e *env) raw(i int) *raw {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addrs[i])
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	r := &raw{t: e.t, c: c, br: bufio.NewReader(c)}
	r.expect("* OK")
	return r
}

func (r *raw) send(line string) {
	r.t.Helper()
	_ = r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(r.c, line+"\r\n"); err != nil {
		r.t.Fatalf("send %q: %v", line, err)
	}
}

// expect reads lines until one starts with prefix and returns it.
func (r *raw) expect(prefix string) string {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("waiting for %q: %v", prefix, err)
		}
		if strings.HasPrefix(line, prefix) {
			return strings.TrimRight(line, "\r\n")
		}
	}
}

// mailboxState reads a mailbox's UIDs and flags from node i's state.
func mailboxState(t *testing.T, e *env, i int, name string) (raftstore.Mailbox, map[uint32]string) {
	t.Helper()
	var mb raftstore.Mailbox
	msgs := make(map[uint32]string)
	err := e.c.Store(i).View(func(tx *raftstore.ReadTx) error {
		var err error
		if mb, err = tx.MailboxByName(alice, name); err != nil {
			return err
		}
		return tx.Messages(mb.ID, nil, func(m *raftstore.Message) error {
			msgs[m.UID] = fmt.Sprintf("%v@%d", m.Flags, m.ModSeq)
			return nil
		})
	})
	if err != nil {
		t.Fatalf("node %d: %v", i+1, err)
	}
	return mb, msgs
}

// updates collects unilateral data for assertions.
type updates struct {
	mu      sync.Mutex
	exists  []uint32
	expunge []uint32
	fetch   []string
}

func (u *updates) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) {
			u.mu.Lock()
			u.expunge = append(u.expunge, seq)
			u.mu.Unlock()
		},
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				u.mu.Lock()
				u.exists = append(u.exists, *d.NumMessages)
				u.mu.Unlock()
			}
		},
		Fetch: func(msg *imapclient.FetchMessageData) {
			b, err := msg.Collect()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.fetch = append(u.fetch, fmt.Sprintf("%d:%v", b.SeqNum, b.Flags))
			u.mu.Unlock()
		},
	}
}

func (u *updates) lastExists() uint32 {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.exists) == 0 {
		return 0
	}
	return u.exists[len(u.exists)-1]
}

func (u *updates) snapshot() (exists, expunge []uint32, fetch []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]uint32(nil), u.exists...), append([]uint32(nil), u.expunge...), append([]string(nil), u.fetch...)
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
