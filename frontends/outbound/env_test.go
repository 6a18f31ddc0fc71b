package outbound_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/frontends/outbound"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

const ourHost = "mail.example.test"

// clock is the services' injectable clock: real time plus an offset the
// test moves forward instead of sleeping through retry intervals.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

type env struct {
	t     testing.TB
	c     *clustertest.Cluster
	in    *internet
	clock *clock
	cfg   outbound.Config

	mu    sync.Mutex
	svcs  map[int]*outbound.Service
	stops map[int]func()
}

// newEnv starts a cluster of n nodes with alice@example.test, the
// internet, and a delivery service on every node.
func newEnv(t testing.TB, n int, tweak func(*outbound.Config)) *env {
	t.Helper()
	in := newInternet(t, "127.0.0.2", "127.0.0.3")
	c := clustertest.New(t, n)
	c.AddAccount("alice@example.test", "pw")
	e := &env{t: t, c: c, in: in, clock: &clock{}, svcs: map[int]*outbound.Service{}, stops: map[int]func(){}}
	e.cfg = outbound.Config{Hostname: ourHost, Resolver: in.dnsAddr, Port: in.port, Now: e.clock.Now,
		RetryBase: time.Hour, RetryMax: 4 * time.Hour, MaxAge: 24 * time.Hour, PollInterval: 20 * time.Millisecond,
		LeaderPoll: 20 * time.Millisecond, ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second,
		DataTimeout: 10 * time.Second, DNSTimeout: 2 * time.Second, Logger: testLogger()}
	if tweak != nil {
		tweak(&e.cfg)
	}
	for i := 0; i < n; i++ {
		e.startService(i)
	}
	t.Cleanup(e.stopAll)
	return e
}

func testLogger() *slog.Logger {
	if os.Getenv("RAFTMAIL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (e *env) startService(i int) {
	e.t.Helper()
	node := e.c.Node(i)
	cfg := e.cfg
	cfg.Node, cfg.IsLeader = node.NodeID(), node.Store().IsLeader
	svc, err := outbound.New(cfg, node)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	e.mu.Lock()
	e.svcs[i] = svc
	e.stops[i] = func() { cancel(); <-done }
	e.mu.Unlock()
}

func (e *env) stopService(i int) {
	e.mu.Lock()
	stop := e.stops[i]
	delete(e.stops, i)
	e.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (e *env) stopAll() {
	for i := 0; i < e.c.N(); i++ {
		e.stopService(i)
	}
}

// leaderSvc returns the leader's service.
func (e *env) leaderSvc() *outbound.Service {
	i := e.c.WaitLeader()
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.svcs[i]
}

// node returns a running node index.
func (e *env) node() int { return e.c.Running()[0] }

// queue commits one submission from alice (or from) to rcpts and returns
// its raft result.
func (e *env) queue(from string, rcpts []command.QueueRcpt, raw string, mod ...func(*command.QueueAdd)) raftstore.Result {
	e.t.Helper()
	n := e.c.Node(e.node())
	q := &command.QueueAdd{From: from, Rcpts: rcpts, Blob: n.Codec().NewBlob([]byte(raw), nil)}
	for _, m := range mod {
		m(q)
	}
	return e.c.Propose(e.node(), q)
}

func rcpts(addrs ...string) []command.QueueRcpt {
	out := make([]command.QueueRcpt, len(addrs))
	for i, a := range addrs {
		out[i] = command.QueueRcpt{Addr: a}
	}
	return out
}

func message(id, subject string) string {
	return fmt.Sprintf("Return-Path: <alice@example.test>\r\nFrom: Alice <alice@example.test>\r\nTo: someone@remote.test\r\n"+
		"Subject: %s\r\nMessage-ID: <%s>\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\n\r\nHello %s.\r\n", subject, id, id)
}

// entries returns the queue on a running node.
func (e *env) entries() []raftstore.QueueEntry {
	var out []raftstore.QueueEntry
	_ = e.c.Node(e.node()).View(func(r *raftstore.ReadTx) error {
		return r.QueueEntries(func(q *raftstore.QueueEntry) bool { out = append(out, *q); return true })
	})
	return out
}

func (e *env) entry(id uint64) (raftstore.QueueEntry, bool) {
	var q raftstore.QueueEntry
	err := e.c.Node(e.c.WaitLeader()).View(func(r *raftstore.ReadTx) (err error) { q, err = r.QueueEntry(id); return })
	return q, err == nil
}

func (e *env) stats() raftstore.QueueStats {
	var st raftstore.QueueStats
	_ = e.c.Node(e.c.WaitLeader()).View(func(r *raftstore.ReadTx) (err error) { st, err = r.QueueStats(); return })
	return st
}

func (e *env) waitEmpty(timeout time.Duration) {
	e.t.Helper()
	clustertest.Eventually(e.t, timeout, "an empty queue", func() bool { return len(e.entries()) == 0 })
}

// inbox returns the bodies in an account's INBOX.
func (e *env) inbox(acct string) []string {
	var out []string
	_ = e.c.Node(e.c.WaitLeader()).View(func(r *raftstore.ReadTx) error {
		mb, err := r.MailboxByName(acct, "INBOX")
		if err != nil {
			return err
		}
		return r.Messages(mb.ID, nil, func(m *raftstore.Message) error {
			b, err := r.Body(m.BlobID)
			out = append(out, string(b))
			return err
		})
	})
	return out
}

// waitInbox waits for n messages in the account's INBOX.
func (e *env) waitInbox(acct string, n int) []string {
	e.t.Helper()
	var got []string
	clustertest.Eventually(e.t, 20*time.Second, fmt.Sprintf("%d messages in %s", n, acct), func() bool {
		got = e.inbox(acct)
		return len(got) >= n
	})
	return got
}

// dkimKey stores a fresh Ed25519 key for domain and returns its TXT.
func (e *env) dkimKey(domain, selector string) string {
	e.t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		e.t.Fatal(err)
	}
	e.c.Propose(e.node(), &command.SetDKIMKey{Domain: domain, Selector: selector, Algo: "ed25519", Key: der})
	return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
}
