package chaos

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// managedFlags are the flags the IMAP workload sets; the checker compares
// only these against its model.
var managedFlags = []string{`\Seen`, `\Flagged`, `\Answered`, "$Chaos1", "$Chaos2"}

// imapConn is an IMAPS connection whose every command has a deadline (a
// paused node would otherwise hang the client forever).
type imapConn struct {
	raw net.Conn
	c   *imapclient.Client
}

func dialIMAP(addr, user string, timeout time.Duration) (*imapConn, error) {
	d := &net.Dialer{Timeout: 3 * time.Second}
	raw, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the nodes' dev self-signed certificate
	if err != nil {
		return nil, err
	}
	ic := &imapConn{raw: raw, c: imapclient.New(raw, nil)}
	ic.deadline(timeout)
	if err := ic.c.Login(user, password).Wait(); err != nil {
		ic.close()
		return nil, fmt.Errorf("login %s: %w", user, err)
	}
	return ic, nil
}

func (ic *imapConn) deadline(d time.Duration) { _ = ic.raw.SetDeadline(time.Now().Add(d)) }

func (ic *imapConn) close() {
	_ = ic.raw.SetDeadline(time.Now().Add(time.Second))
	_ = ic.c.Close()
}

// imapLoad is the IMAP workload: one client per account (so each account
// has a single IMAP writer and its history can be replayed), connected to
// a follower, changing flags (STORE FLAGS, not silent, so the server echoes
// what it stored) and moving messages between INBOX and Archive.
type imapLoad struct {
	h       *harness
	seed    int64
	timeout time.Duration

	mu  sync.Mutex
	ops []IMAPOp
}

func (l *imapLoad) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i, acct := range l.h.accounts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.client(ctx, acct, rand.New(rand.NewPCG(uint64(l.seed), 1000+uint64(i))))
		}()
	}
	wg.Wait()
}

func (l *imapLoad) history() []IMAPOp {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ops)
}

func (l *imapLoad) record(op IMAPOp) {
	l.mu.Lock()
	l.ops = append(l.ops, op)
	l.mu.Unlock()
}

// client connects to a follower and works until an error, then
// reconnects (to whichever node is a follower then).
func (l *imapLoad) client(ctx context.Context, acct string, rng *rand.Rand) {
	for ctx.Err() == nil {
		node := l.follower(ctx, rng)
		ic, err := dialIMAP(l.h.nodes[node].imaps, acct, l.timeout)
		if err == nil {
			for ctx.Err() == nil && l.step(ic, acct, rng) == nil {
				pause(ctx, time.Duration(50+rng.IntN(100))*time.Millisecond)
			}
			ic.close()
		}
		pause(ctx, 300*time.Millisecond)
	}
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// follower picks a node that is not the leader (any node if none answers).
func (l *imapLoad) follower(ctx context.Context, rng *rand.Rand) int {
	var out []int
	for i := range l.h.nodes {
		if st, err := l.h.status(ctx, i); err == nil && st.State == "Follower" {
			out = append(out, i)
		}
	}
	if len(out) == 0 {
		return rng.IntN(len(l.h.nodes))
	}
	return out[rng.IntN(len(out))]
}

// step picks a random message in INBOX or Archive and stores flags on it
// or moves it to the other mailbox. Only a connection or protocol failure
// is returned; a NO is recorded as an uncertain operation.
func (l *imapLoad) step(ic *imapConn, acct string, rng *rand.Rand) error {
	mbox, other := "INBOX", "Archive"
	if rng.IntN(10) < 3 {
		mbox, other = other, mbox
	}
	ic.deadline(l.timeout)
	sel, err := ic.c.Select(mbox, nil).Wait()
	if err != nil {
		return err
	}
	if sel.NumMessages == 0 {
		return nil
	}
	seq := uint32(1 + rng.IntN(int(sel.NumMessages)))
	msgs, err := ic.c.Fetch(imap.SeqSetNum(seq), &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil {
		return err
	}
	if len(msgs) != 1 || msgs[0].Envelope == nil || msgs[0].UID == 0 {
		return nil // expunged meanwhile
	}
	uid, msgID := msgs[0].UID, normMsgID(msgs[0].Envelope.MessageID)
	op := IMAPOp{At: time.Now(), Account: acct, MsgID: msgID}
	if rng.IntN(10) < 6 {
		op.Kind = OpStore
		want := randomFlags(rng)
		echo, err := ic.c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsSet, Flags: want}, nil).Collect()
		op.At = time.Now()
		for _, m := range echo {
			if err == nil && m.UID == uid {
				op.Certain, op.Mailbox = true, mbox
				for _, f := range m.Flags {
					op.Flags = append(op.Flags, string(f))
				}
			}
		}
		l.record(op)
		return protocolErr(err)
	}
	op.Kind = OpMove
	md, err := ic.c.Move(imap.UIDSetNum(uid), other).Wait()
	op.At = time.Now()
	if err == nil && md != nil {
		if src, ok := md.SourceUIDs.(imap.UIDSet); ok && src.Contains(uid) {
			op.Certain, op.Mailbox = true, other
		}
	}
	l.record(op)
	return protocolErr(err)
}

// protocolErr drops NO/BAD answers (the session goes on) and keeps
// connection failures.
func protocolErr(err error) error {
	if _, ok := err.(*imap.Error); ok {
		return nil
	}
	return err
}

func randomFlags(rng *rand.Rand) []imap.Flag {
	var out []imap.Flag
	for _, f := range managedFlags {
		if rng.IntN(2) == 1 {
			out = append(out, imap.Flag(f))
		}
	}
	return out
}

func normMsgID(s string) string { return strings.Trim(strings.TrimSpace(s), "<>") }
