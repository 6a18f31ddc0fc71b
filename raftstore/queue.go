package raftstore

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"

	"github.com/raftmail/raftmail/raftstore/command"
)

// The outbound queue (docs/outbound.md). A queued message is one
// QueueEntry holding a reference on its body blob (stored once, shared with
// local copies of the same submission) and the state of every remote
// recipient. The due index orders the work of the delivery service that
// runs on the leader: one key per (message, domain) with pending
// recipients, at the time that group next needs attention, plus a key with
// an empty domain while a delivery status notification is owed.
var (
	bQueue      = []byte("queue")       // id(8) → QueueEntry
	bQueueDue   = []byte("queue_due")   // due(8) id(8) domain → empty
	bQueueStats = []byte("queue_stats") // counter name → u64
	bDKIM       = []byte("dkim")        // domain → DKIMKey
)

var kNextQueueID = []byte("next_queue_id")

// RcptState is where a queued recipient stands.
type RcptState uint8

// Recipient states.
const (
	RcptPending   RcptState = 0
	RcptDelivered RcptState = 1
	RcptFailed    RcptState = 2
)

func (s RcptState) String() string {
	switch s {
	case RcptDelivered:
		return "delivered"
	case RcptFailed:
		return "failed"
	}
	return "pending"
}

// QueueRcpt is one remote recipient of a queued message.
type QueueRcpt struct {
	Addr   string   `msgpack:"addr" json:"addr"`
	Domain string   `msgpack:"dom" json:"domain"`
	Notify []string `msgpack:"notify,omitempty" json:"notify,omitempty"`
	ORcpt  string   `msgpack:"orcpt,omitempty" json:"orcpt,omitempty"`

	State       RcptState `msgpack:"st,omitempty" json:"state"`
	Attempts    uint32    `msgpack:"n,omitempty" json:"attempts"`
	NextAttempt int64     `msgpack:"next,omitempty" json:"next_attempt"`
	// Holder and Attempt own the recipient until Until (an attempt in
	// flight); empty when none is.
	Holder  string `msgpack:"holder,omitempty" json:"holder,omitempty"`
	Attempt string `msgpack:"att,omitempty" json:"attempt,omitempty"`
	Until   int64  `msgpack:"until,omitempty" json:"until,omitempty"`

	LastAttempt int64  `msgpack:"last,omitempty" json:"last_attempt,omitempty"`
	LastCode    int    `msgpack:"code,omitempty" json:"last_code,omitempty"`
	LastStatus  string `msgpack:"status,omitempty" json:"last_status,omitempty"`
	LastReply   string `msgpack:"reply,omitempty" json:"last_reply,omitempty"`
	MTA         string `msgpack:"mta,omitempty" json:"mta,omitempty"`
	// Report means a DSN is owed for this recipient; Reported that it was
	// delivered to the sender.
	Report   bool `msgpack:"rep,omitempty" json:"report,omitempty"`
	Reported bool `msgpack:"repd,omitempty" json:"reported,omitempty"`
}

// Final reports whether nothing more will be attempted for the recipient.
func (r *QueueRcpt) Final() bool { return r.State != RcptPending }

// NotifyOn reports whether the sender asked for a DSN on this event
// ("SUCCESS", "FAILURE", "DELAY"). Without NOTIFY only failures are
// reported (RFC 3461 §4.1).
func (r *QueueRcpt) NotifyOn(event string) bool {
	if len(r.Notify) == 0 {
		return event == "FAILURE"
	}
	for _, n := range r.Notify {
		if strings.EqualFold(n, event) {
			return true
		}
	}
	return false
}

// QueueEntry is one queued message.
type QueueEntry struct {
	ID      uint64      `msgpack:"id" json:"id"`
	From    string      `msgpack:"from" json:"from"`
	Account string      `msgpack:"acct,omitempty" json:"account,omitempty"`
	BlobID  [32]byte    `msgpack:"blob" json:"-"`
	Size    int64       `msgpack:"size" json:"size"`
	Created int64       `msgpack:"created" json:"created"`
	Ret     string      `msgpack:"ret,omitempty" json:"ret,omitempty"`
	EnvID   string      `msgpack:"envid,omitempty" json:"envid,omitempty"`
	Rcpts   []QueueRcpt `msgpack:"rcpts" json:"rcpts"`
	// Attempts counts claims; Reclaimed the claims taken over from an
	// attempt that never reported (possible duplicate deliveries).
	Attempts  uint32 `msgpack:"att,omitempty" json:"attempts"`
	Reclaimed uint32 `msgpack:"recl,omitempty" json:"reclaimed,omitempty"`
}

// done reports whether every recipient is final and reported as asked.
func (e *QueueEntry) done() bool {
	for i := range e.Rcpts {
		r := &e.Rcpts[i]
		if !r.Final() || (r.Report && !r.Reported) {
			return false
		}
	}
	return true
}

// dueKeys returns the entry's keys in the due index, domains in order.
func (e *QueueEntry) dueKeys() [][]byte {
	var doms []string
	due := map[string]int64{} // lookup only; keys come from doms
	owed := false
	for i := range e.Rcpts {
		r := &e.Rcpts[i]
		if r.Report && !r.Reported {
			owed = true
		}
		if r.Final() {
			continue
		}
		at := r.NextAttempt
		if r.Holder != "" {
			at = r.Until
		}
		if cur, ok := due[r.Domain]; !ok || at < cur {
			if !ok {
				doms = append(doms, r.Domain)
			}
			due[r.Domain] = at
		}
	}
	slices.Sort(doms)
	var keys [][]byte
	if owed {
		keys = append(keys, dueKey(0, e.ID, ""))
	}
	for _, d := range doms {
		keys = append(keys, dueKey(due[d], e.ID, d))
	}
	return keys
}

func dueKey(at int64, id uint64, domain string) []byte {
	k := make([]byte, 16, 16+len(domain))
	binary.BigEndian.PutUint64(k, uint64(max(at, 0)))
	binary.BigEndian.PutUint64(k[8:], id)
	return append(k, domain...)
}

// QueueChanged is published when a queued message changes, so the
// delivery service wakes without polling.
type QueueChanged struct{ ID uint64 }

func (QueueChanged) change() {}

// DKIMKey is a domain's signing key.
type DKIMKey struct {
	Domain   string `msgpack:"domain" json:"domain"`
	Selector string `msgpack:"sel" json:"selector"`
	Algo     string `msgpack:"algo" json:"algo"`
	Key      []byte `msgpack:"key" json:"-"`
	Created  int64  `msgpack:"created" json:"created"`
}

func (t *txn) queueEntry(id uint64) (QueueEntry, bool) {
	v := t.b(bQueue).Get(u64(id))
	if v == nil {
		return QueueEntry{}, false
	}
	var e QueueEntry
	if err := decode(v, &e); err != nil {
		panic(storageError{err})
	}
	return e, true
}

// saveQueueEntry replaces old (nil: none) by e in the queue and its due
// index, or removes it with its blob reference when e is done.
func (t *txn) saveQueueEntry(old *QueueEntry, e *QueueEntry) {
	if old != nil {
		for _, k := range old.dueKeys() {
			t.del(bQueueDue, k)
		}
	}
	t.changes = append(t.changes, QueueChanged{ID: e.ID})
	if e.done() {
		t.del(bQueue, u64(e.ID))
		t.unrefBlob(e.BlobID)
		t.countQueue("removed", 1)
		return
	}
	t.put(bQueue, u64(e.ID), encode(e))
	for _, k := range e.dueKeys() {
		t.put(bQueueDue, k, nil)
	}
}

func (t *txn) countQueue(name string, n uint64) {
	if n == 0 {
		return
	}
	t.put(bQueueStats, []byte(name), u64(getU64(t.b(bQueueStats), []byte(name))+n))
}

// queueAdd queues the remote recipients and delivers the local ones of one
// submitted message, storing its body once.
func (t *txn) queueAdd(p *command.QueueAdd) Result {
	if err := t.ensureBlob(&p.Blob); err != nil {
		return fail(err)
	}
	if p.From != "" {
		if _, err := NormalizeAddress(p.From); err != nil {
			return fail(err)
		}
	}
	res := Result{}
	e := QueueEntry{From: p.From, Account: p.Account, BlobID: p.Blob.ID, Size: p.Blob.Size, Created: t.time,
		Ret: strings.ToUpper(p.Ret), EnvID: p.EnvID}
	var remote []RcptResult
	for _, r := range p.Rcpts {
		addr, err := NormalizeAddress(r.Addr)
		if err != nil {
			remote = append(remote, RcptResult{Rcpt: r.Addr, Status: statusOf(err)})
			continue
		}
		e.Rcpts = append(e.Rcpts, QueueRcpt{Addr: addr, Domain: addr[strings.LastIndexByte(addr, '@')+1:],
			Notify: r.Notify, ORcpt: r.ORcpt, NextAttempt: t.time})
		remote = append(remote, RcptResult{Rcpt: r.Addr})
	}
	if len(e.Rcpts) > 0 {
		e.ID = t.nextCounter(kNextQueueID)
		t.addBlobRef(p.Blob.ID)
		t.saveQueueEntry(nil, &e)
		t.countQueue("queued", 1)
	}
	if len(p.Local) > 0 {
		res = t.deliver(&command.Deliver{From: p.From, Rcpts: p.Local, Blob: p.Blob})
		if res.Err() != nil {
			return res
		}
	} else {
		t.dropUnreferenced(p.Blob.ID)
	}
	res.Rcpts = append(res.Rcpts, remote...)
	return res
}

// claimable reports whether an attempt may claim the recipient now.
func claimable(r *QueueRcpt, p *command.QueueAttempt) (ok, stale bool) {
	switch {
	case r.Final():
		return false, false
	case r.Holder == "":
		return r.NextAttempt <= p.Now, false
	case r.Until <= p.Now || (p.Takeover && r.Holder != p.Holder):
		return true, true
	}
	return false, false
}

// queueAttempt claims due recipients for one delivery attempt.
func (t *txn) queueAttempt(p *command.QueueAttempt) Result {
	if p.Holder == "" || p.Attempt == "" || p.Until <= p.Now {
		return fail(errf(ErrInvalid, "attempt needs a holder, an id and a future expiry"))
	}
	res := Result{}
	for _, it := range p.Items {
		e, ok := t.queueEntry(it.ID)
		if !ok {
			continue
		}
		old := e
		old.Rcpts = slices.Clone(e.Rcpts)
		claimed, stale := 0, 0
		for i := range e.Rcpts {
			r := &e.Rcpts[i]
			if r.Domain != it.Domain {
				continue
			}
			ok, wasStale := claimable(r, p)
			if !ok {
				continue
			}
			if wasStale {
				stale++
			}
			r.Holder, r.Attempt, r.Until = p.Holder, p.Attempt, p.Until
			claimed++
			res.Rcpts = append(res.Rcpts, RcptResult{Rcpt: r.Addr})
		}
		if claimed == 0 {
			continue
		}
		e.Attempts++
		if stale > 0 {
			e.Reclaimed++
			t.countQueue("reclaimed", 1)
		}
		t.countQueue("attempts", 1)
		t.saveQueueEntry(&old, &e)
	}
	return res
}

// queueResult records an attempt's per-recipient outcomes.
func (t *txn) queueResult(p *command.QueueResult) Result {
	e, ok := t.queueEntry(p.ID)
	if !ok {
		return fail(errf(ErrNoSuchMessage, "queued message %d", p.ID))
	}
	old := e
	old.Rcpts = slices.Clone(e.Rcpts)
	for _, rr := range p.Rcpts {
		i := slices.IndexFunc(e.Rcpts, func(r QueueRcpt) bool { return r.Addr == strings.ToLower(rr.Addr) })
		if i < 0 || e.Rcpts[i].Final() {
			continue
		}
		r := &e.Rcpts[i]
		current := r.Attempt == p.Attempt
		if rr.Outcome == command.OutcomeTempFail && !current {
			continue // a stale attempt no longer owns the schedule
		}
		r.Attempts++
		r.LastAttempt, r.LastCode, r.LastStatus, r.LastReply, r.MTA = p.Now, rr.Code, rr.Status, rr.Reply, rr.MTA
		if current {
			r.Holder, r.Attempt, r.Until = "", "", 0
		}
		switch rr.Outcome {
		case command.OutcomeDelivered:
			r.State = RcptDelivered
			r.Report = e.From != "" && r.NotifyOn("SUCCESS") && !rr.Relayed
			t.countQueue("delivered", 1)
		case command.OutcomePermFail:
			t.failRcpt(&e, r)
		case command.OutcomeTempFail:
			r.NextAttempt = max(p.NextAttempt, p.Now)
			t.countQueue("deferred", 1)
		}
	}
	t.saveQueueEntry(&old, &e)
	return Result{}
}

// failRcpt makes a recipient fail; a DSN is owed unless the sender is the
// null path (never bounce a bounce, RFC 5321 §4.5.5) or asked for none.
func (t *txn) failRcpt(e *QueueEntry, r *QueueRcpt) {
	r.State = RcptFailed
	r.Holder, r.Attempt, r.Until = "", "", 0
	r.Report = e.From != "" && r.NotifyOn("FAILURE")
	t.countQueue("failed", 1)
}

// queueAdmin applies an operator's action.
func (t *txn) queueAdmin(p *command.QueueAdmin) Result {
	if p.Op == command.QueueRetry && p.ID == 0 {
		var ids []uint64
		c := t.b(bQueue).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			ids = append(ids, binary.BigEndian.Uint64(k))
		}
		for _, id := range ids {
			t.queueAdmin(&command.QueueAdmin{ID: id, Op: p.Op, Now: p.Now})
		}
		return Result{}
	}
	e, ok := t.queueEntry(p.ID)
	if !ok {
		return fail(errf(ErrNoSuchMessage, "queued message %d", p.ID))
	}
	old := e
	old.Rcpts = slices.Clone(e.Rcpts)
	switch p.Op {
	case command.QueueRetry:
		for i := range e.Rcpts {
			if r := &e.Rcpts[i]; !r.Final() && r.Holder == "" {
				r.NextAttempt = p.Now
			}
		}
	case command.QueueDelete:
		for i := range e.Rcpts {
			r := &e.Rcpts[i]
			if !r.Final() {
				r.State = RcptFailed
			}
			r.Report = false
		}
		t.countQueue("deleted", 1)
	case command.QueueBounce:
		reason := p.Reason
		if reason == "" {
			reason = "returned to sender by the postmaster"
		}
		for i := range e.Rcpts {
			if r := &e.Rcpts[i]; !r.Final() {
				r.LastAttempt, r.LastCode, r.LastStatus, r.LastReply = p.Now, 550, "5.0.0", reason
				t.failRcpt(&e, r)
			}
		}
	default:
		return fail(errf(ErrInvalid, "unknown queue operation %d", p.Op))
	}
	t.saveQueueEntry(&old, &e)
	return Result{}
}

// queueDSN delivers a status notification into the sender's mailbox and
// marks the recipients it covers as reported. A repeat (all covered
// recipients already reported) delivers nothing.
func (t *txn) queueDSN(p *command.QueueDSN) Result {
	e, ok := t.queueEntry(p.ID)
	if !ok {
		return fail(errf(ErrNoSuchMessage, "queued message %d", p.ID))
	}
	old := e
	old.Rcpts = slices.Clone(e.Rcpts)
	marked := 0
	for _, a := range p.Rcpts {
		i := slices.IndexFunc(e.Rcpts, func(r QueueRcpt) bool { return r.Addr == strings.ToLower(a) })
		if i >= 0 && e.Rcpts[i].Report && !e.Rcpts[i].Reported {
			e.Rcpts[i].Reported = true
			marked++
		}
	}
	if marked == 0 {
		return Result{}
	}
	res := t.deliver(&command.Deliver{From: "", Rcpts: []string{e.From}, Blob: p.Blob})
	t.countQueue("dsn", 1)
	t.saveQueueEntry(&old, &e)
	return res
}

// setDKIMKey stores or removes a domain's signing key.
func (t *txn) setDKIMKey(p *command.SetDKIMKey) Result {
	d, err := NormalizeDomain(p.Domain)
	if err != nil {
		return fail(err)
	}
	if p.Remove {
		if t.b(bDKIM).Get([]byte(d)) == nil {
			return fail(errf(ErrNoSuchDomain, "no DKIM key for %s", d))
		}
		t.del(bDKIM, []byte(d))
		return Result{}
	}
	if p.Selector == "" || strings.ContainsAny(p.Selector, " \t\r\n;=") || len(p.Key) == 0 ||
		(p.Algo != "rsa" && p.Algo != "ed25519") {
		return fail(errf(ErrInvalid, "DKIM key needs a selector, a key and algo rsa or ed25519"))
	}
	t.put(bDKIM, []byte(d), encode(DKIMKey{Domain: d, Selector: p.Selector, Algo: p.Algo,
		Key: bytes.Clone(p.Key), Created: t.time}))
	return Result{}
}
