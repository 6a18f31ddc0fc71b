package chaos

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/raftmail/raftmail/cluster"
)

// observedMailboxes are the mailboxes the workloads write to; the observer
// lists them on every node periodically.
var observedMailboxes = []string{"INBOX", "Archive"}

// observer lists the workload's mailboxes on every node every interval,
// recording UIDVALIDITY, UIDNEXT and each UID's content hash, so the
// checker can prove UIDs only grow and are never reused. A node that does
// not answer (killed, paused, cut) is skipped for that round.
type observer struct {
	h        *harness
	interval time.Duration

	mu  sync.Mutex
	obs []UIDObservation
}

func (o *observer) run(ctx context.Context) {
	t := time.NewTicker(o.interval)
	defer t.Stop()
	for {
		o.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (o *observer) round(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range o.h.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, acct := range o.h.accounts {
				for _, mb := range observedMailboxes {
					ob, err := o.h.observe(ctx, n, acct, mb)
					if err != nil {
						return // the node is down or cut; try next round
					}
					o.mu.Lock()
					o.obs = append(o.obs, ob)
					o.mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
}

func (o *observer) history() []UIDObservation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]UIDObservation(nil), o.obs...)
}

// observe reads UIDNEXT, the listing, then UIDNEXT again from one node.
func (h *harness) observe(ctx context.Context, n *nodeProc, acct, mbox string) (UIDObservation, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ob := UIDObservation{Node: n.name, Account: acct, Mailbox: mbox}
	before, err := h.mailboxInfo(ctx, n, acct, mbox)
	if err != nil {
		return ob, err
	}
	var list []cluster.MessageView
	path := "/admin/accounts/" + url.PathEscape(acct) + "/mailboxes/" + url.PathEscape(mbox) + "/messages"
	if err := h.client.Do(ctx, http.MethodGet, n.api, path, nil, &list); err != nil {
		return ob, err
	}
	after, err := h.mailboxInfo(ctx, n, acct, mbox)
	if err != nil {
		return ob, err
	}
	ob.At = time.Now()
	ob.UIDValidity, ob.UIDNextBefore, ob.UIDNext = after.UIDValidity, before.UIDNext, after.UIDNext
	for _, m := range list {
		ob.Entries = append(ob.Entries, UIDEntry{UID: m.UID, SHA256: m.SHA256})
	}
	return ob, nil
}

func (h *harness) mailboxInfo(ctx context.Context, n *nodeProc, acct, mbox string) (cluster.MailboxView, error) {
	var av cluster.AccountView
	if err := h.client.Do(ctx, http.MethodGet, n.api, "/admin/accounts/"+url.PathEscape(acct), nil, &av); err != nil {
		return cluster.MailboxView{}, err
	}
	for _, mb := range av.Mailboxes {
		if mb.Name == mbox {
			return mb, nil
		}
	}
	return cluster.MailboxView{}, fmt.Errorf("%s has no mailbox %s", acct, mbox)
}

// readBack reads every message of every account over IMAP from node n:
// each mailbox's UIDs, flags and Message-IDs. It retries the whole node a
// few times, since a freshly restarted node may still be starting.
func (h *harness) readBack(ctx context.Context, n *nodeProc) ([]Stored, error) {
	var out []Stored
	err := poll(ctx, 30*time.Second, func() error {
		out = out[:0]
		for _, acct := range h.accounts {
			got, err := readAccount(n, acct)
			if err != nil {
				return err
			}
			out = append(out, got...)
		}
		return nil
	})
	return out, err
}

func readAccount(n *nodeProc, acct string) ([]Stored, error) {
	const timeout = 60 * time.Second
	ic, err := dialIMAP(n.imaps, acct, timeout)
	if err != nil {
		return nil, err
	}
	defer ic.close()
	boxes, err := ic.c.List("", "*", nil).Collect()
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	var out []Stored
	for _, b := range boxes {
		ic.deadline(timeout)
		sel, err := ic.c.Select(b.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			return nil, fmt.Errorf("examine %s: %w", b.Mailbox, err)
		}
		if sel.NumMessages == 0 {
			continue
		}
		var all imap.SeqSet
		all.AddRange(1, 0)
		msgs, err := ic.c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, Envelope: true}).Collect()
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", b.Mailbox, err)
		}
		for _, m := range msgs {
			s := Stored{Node: n.name, Account: acct, Mailbox: b.Mailbox, UID: uint32(m.UID)}
			if m.Envelope != nil {
				s.MsgID = normMsgID(m.Envelope.MessageID)
			}
			for _, f := range m.Flags {
				s.Flags = append(s.Flags, string(f))
			}
			out = append(out, s)
		}
	}
	return out, nil
}
