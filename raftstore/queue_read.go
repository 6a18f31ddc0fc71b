package raftstore

import (
	"encoding/binary"
	"sort"
)

// QueueDue is one unit of outbound work: the pending recipients of message
// ID in Domain are due at At (unix ns). An empty Domain means a delivery
// status notification is owed for the message.
type QueueDue struct {
	At     int64
	ID     uint64
	Domain string
}

// QueueDue calls fn for the due index in time order up to and including
// time until; fn returns false to stop. It returns the time of the first
// entry after until (0 if none), so the caller knows when to look again.
func (r *ReadTx) QueueDue(until int64, fn func(QueueDue) bool) (next int64) {
	c := r.tx.Bucket(bQueueDue).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) < 16 {
			continue
		}
		d := QueueDue{At: int64(binary.BigEndian.Uint64(k)), ID: binary.BigEndian.Uint64(k[8:16]), Domain: string(k[16:])}
		if d.At > until {
			return d.At
		}
		if !fn(d) {
			return 0
		}
	}
	return 0
}

// QueueEntry returns one queued message.
func (r *ReadTx) QueueEntry(id uint64) (QueueEntry, error) {
	e, ok := (&txn{tx: r.tx}).queueEntry(id)
	if !ok {
		return QueueEntry{}, errf(ErrNoSuchMessage, "queued message %d", id)
	}
	return e, nil
}

// QueueEntries calls fn for every queued message in id (arrival) order
// until fn returns false.
func (r *ReadTx) QueueEntries(fn func(*QueueEntry) bool) error {
	c := r.tx.Bucket(bQueue).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var e QueueEntry
		if err := decode(v, &e); err != nil {
			return err
		}
		if !fn(&e) {
			return nil
		}
	}
	return nil
}

// QueueStats summarises the queue: its size, the oldest message's arrival
// and the replicated counters (queued, attempts, delivered, deferred,
// failed, dsn, reclaimed, deleted, removed).
type QueueStats struct {
	Messages   int               `json:"messages"`
	Recipients int               `json:"recipients_pending"`
	Oldest     int64             `json:"oldest,omitempty"`
	Counters   map[string]uint64 `json:"counters"`
}

// QueueStats reads the queue's size and counters.
func (r *ReadTx) QueueStats() (QueueStats, error) {
	st := QueueStats{Counters: map[string]uint64{}}
	_ = r.tx.Bucket(bQueueStats).ForEach(func(k, v []byte) error {
		if len(v) == 8 {
			st.Counters[string(k)] = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	err := r.QueueEntries(func(e *QueueEntry) bool {
		st.Messages++
		if st.Oldest == 0 || e.Created < st.Oldest {
			st.Oldest = e.Created
		}
		for i := range e.Rcpts {
			if !e.Rcpts[i].Final() {
				st.Recipients++
			}
		}
		return true
	})
	return st, err
}

// DKIMKey returns a domain's signing key.
func (r *ReadTx) DKIMKey(domain string) (DKIMKey, error) {
	d, err := NormalizeDomain(domain)
	if err != nil {
		return DKIMKey{}, err
	}
	v := r.tx.Bucket(bDKIM).Get([]byte(d))
	if v == nil {
		return DKIMKey{}, errf(ErrNoSuchDomain, "no DKIM key for %s", d)
	}
	var k DKIMKey
	return k, decode(v, &k)
}

// DKIMKeys lists every domain's key, ordered by domain.
func (r *ReadTx) DKIMKeys() ([]DKIMKey, error) {
	var out []DKIMKey
	err := r.tx.Bucket(bDKIM).ForEach(func(_, v []byte) error {
		var k DKIMKey
		if err := decode(v, &k); err != nil {
			return err
		}
		out = append(out, k)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out, err
}
