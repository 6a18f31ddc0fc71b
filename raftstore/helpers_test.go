package raftstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/raftmail/raftmail/raftstore/command"
)

// t0 is the command time the test sequences start at.
var t0 = time.Date(2024, 3, 1, 8, 0, 0, 0, time.UTC).UnixNano()

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newFSM opens a fresh FSM in a temp dir, closed at cleanup.
func newFSM(t testing.TB) *fsm {
	t.Helper()
	f, err := openFSM(filepath.Join(t.TempDir(), "state.db"), true, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.close() })
	return f
}

// fsmDigest is Store.Digest over a bare FSM.
func fsmDigest(t testing.TB, f *fsm) string {
	t.Helper()
	d, _, err := (&Store{fsm: f}).Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var (
	codecOnce sync.Once
	tcodec    *Codec
)

func testCodec(t testing.TB) *Codec {
	codecOnce.Do(func() {
		c, err := NewCodec(64 << 20)
		if err != nil {
			panic(err)
		}
		tcodec = c
	})
	return tcodec
}

// body returns a distinct raw body of about size bytes.
func body(tag string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: sender@example.net\r\nSubject: %s\r\nMessage-ID: <%s@test>\r\n\r\n", tag, tag)
	for i := 0; b.Len() < size; i++ {
		// Hex of a hash: compresses about 2:1, like real mail, not 20:1.
		fmt.Fprintf(&b, "%d %x\r\n", i, sha256.Sum256([]byte(fmt.Sprint(tag, i))))
	}
	return b.Bytes()
}

// script records a command sequence as raft log entries. Each command is
// applied at once to a reference FSM, so later steps can use its results
// (mailbox IDs, UIDs); the recorded entries then drive other FSMs.
type script struct {
	t       testing.TB
	ref     *fsm
	logs    []*raft.Log
	results []interface{}
	index   uint64
	now     int64
	// check, when set, runs after every applied entry.
	check func(l *raft.Log, res interface{})
}

func newScript(t testing.TB) *script {
	return &script{t: t, ref: newFSM(t), index: 2, now: t0} // 1, 2: bootstrap config and leader noop
}

// advance moves command time forward.
func (s *script) advance(d time.Duration) { s.now += int64(d) }

// raw appends an entry with the given data and type.
func (s *script) raw(typ raft.LogType, data []byte) interface{} {
	s.t.Helper()
	s.index++
	l := &raft.Log{Index: s.index, Term: 1, Type: typ, Data: data}
	s.logs = append(s.logs, l)
	res := s.ref.ApplyBatch([]*raft.Log{l})[0]
	s.results = append(s.results, res)
	if s.check != nil {
		s.check(l, res)
	}
	return res
}

// do appends and applies one command one second after the previous one.
func (s *script) do(key string, p command.Payload) Result {
	s.t.Helper()
	s.now += int64(time.Second)
	data, err := command.Marshal(&command.Command{Time: s.now, Key: key, Payload: p})
	if err != nil {
		s.t.Fatal(err)
	}
	res, ok := s.raw(raft.LogCommand, data).(Result)
	if !ok {
		s.t.Fatalf("entry %d: no Result", s.index)
	}
	return res
}

// ok applies a command that must succeed.
func (s *script) ok(key string, p command.Payload) Result {
	s.t.Helper()
	res := s.do(key, p)
	if err := res.Err(); err != nil {
		s.t.Fatalf("entry %d %T: %v", s.index, p, err)
	}
	return res
}

// mbox returns an account's mailbox by name from the reference FSM.
func (s *script) mbox(acct, name string) Mailbox {
	s.t.Helper()
	return mailboxOf(s.t, s.ref, acct, name)
}

func mailboxOf(t testing.TB, f *fsm, acct, name string) Mailbox {
	t.Helper()
	var m Mailbox
	err := f.view(func(tx *bolt.Tx) error {
		var ok bool
		m, ok = (&txn{tx: tx}).mailboxByName(acct, name)
		if !ok {
			return fmt.Errorf("no mailbox %s/%s", acct, name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (s *script) blob(tag string, size int) command.Blob {
	return testCodec(s.t).NewBlob(body(tag, size), []byte("meta:"+tag))
}

// replay applies entries to f in batches of the given size.
func replay(t testing.TB, f *fsm, logs []*raft.Log, batch int) []interface{} {
	t.Helper()
	var out []interface{}
	for i := 0; i < len(logs); i += batch {
		end := min(i+batch, len(logs))
		res := f.ApplyBatch(logs[i:end])
		if len(res) != end-i {
			t.Fatalf("ApplyBatch returned %d results for %d entries", len(res), end-i)
		}
		out = append(out, res...)
	}
	return out
}

// checkState recounts everything the FSM keeps as a running total and
// compares: mailbox counters, account usage, blob references and stored
// bytes, name index. It returns the first mismatch.
func checkState(f *fsm) error {
	return f.view(func(tx *bolt.Tx) error {
		t := &txn{tx: tx}
		used := map[string]int64{}
		refs := map[[32]byte]uint64{}
		var mboxes []Mailbox
		err := tx.Bucket(bMailboxes).ForEach(func(k, v []byte) error {
			var m Mailbox
			if err := decode(v, &m); err != nil {
				return err
			}
			mboxes = append(mboxes, m)
			return nil
		})
		if err != nil {
			return err
		}
		uvs := map[uint32]uint64{}
		for _, m := range mboxes {
			if other, dup := uvs[m.UIDValidity]; dup {
				return fmt.Errorf("mailboxes %d and %d share UIDVALIDITY %d", other, m.ID, m.UIDValidity)
			}
			uvs[m.UIDValidity] = m.ID
			if id, ok := t.mailboxByName(m.Account, m.Name); !ok || id.ID != m.ID {
				return fmt.Errorf("mailbox %d %s/%s missing from the name index", m.ID, m.Account, m.Name)
			}
			if _, ok := t.account(m.Account); !ok {
				return fmt.Errorf("mailbox %d of missing account %s", m.ID, m.Account)
			}
			var n, unseen, deleted uint32
			var size int64
			var maxUID uint32
			var maxMod uint64
			t.eachMessage(m.ID, nil, func(msg *Message) {
				n++
				size += msg.Size
				if !msg.HasFlag(FlagSeen) {
					unseen++
				}
				if msg.HasFlag(FlagDeleted) {
					deleted++
				}
				maxUID = max(maxUID, msg.UID)
				maxMod = max(maxMod, msg.ModSeq)
				refs[msg.BlobID]++
				if !reflect.DeepEqual(msg.Flags, normFlags(msg.Flags)) {
					err = fmt.Errorf("mailbox %d uid %d: flags %q not normalised", m.ID, msg.UID, msg.Flags)
				}
			})
			if err != nil {
				return err
			}
			if n != m.Messages || size != m.Bytes || unseen != m.Unseen || deleted != m.Deleted {
				return fmt.Errorf("mailbox %d %s/%s: counters n=%d bytes=%d unseen=%d deleted=%d, recount n=%d bytes=%d unseen=%d deleted=%d",
					m.ID, m.Account, m.Name, m.Messages, m.Bytes, m.Unseen, m.Deleted, n, size, unseen, deleted)
			}
			if maxUID >= m.UIDNext {
				return fmt.Errorf("mailbox %d: uid %d >= UIDNEXT %d", m.ID, maxUID, m.UIDNext)
			}
			if maxMod > m.HighestModSeq {
				return fmt.Errorf("mailbox %d: message modseq %d > HIGHESTMODSEQ %d", m.ID, maxMod, m.HighestModSeq)
			}
			used[m.Account] += size
		}
		err = tx.Bucket(bAccounts).ForEach(func(k, v []byte) error {
			var a Account
			if err := decode(v, &a); err != nil {
				return err
			}
			if a.Used != used[a.Address] {
				return fmt.Errorf("account %s: used %d, recount %d", a.Address, a.Used, used[a.Address])
			}
			return nil
		})
		if err != nil {
			return err
		}
		// Queued messages hold a reference on their body too (queue.go).
		_ = (&ReadTx{tx: tx}).QueueEntries(func(e *QueueEntry) bool { refs[e.BlobID]++; return true })
		err = tx.Bucket(bBlobInfo).ForEach(func(k, v []byte) error {
			var bi blobInfo
			if err := decode(v, &bi); err != nil {
				return err
			}
			id := [32]byte(k)
			if bi.Refs != refs[id] || bi.Refs == 0 {
				return fmt.Errorf("blob %x: refs %d, recount %d", k[:8], bi.Refs, refs[id])
			}
			delete(refs, id)
			if bi.Chunks == 0 {
				if d := tx.Bucket(bBlobs).Get(u64(bi.Num)); int64(len(d)) != bi.CSize {
					return fmt.Errorf("blob %x: %d stored bytes, info says %d", k[:8], len(d), bi.CSize)
				}
			} else {
				var cs int64
				for seq := uint32(0); seq < bi.Chunks; seq++ {
					d := tx.Bucket(bChunks).Get(chunkKey(id, seq))
					if d == nil {
						return fmt.Errorf("blob %x: piece %d missing", k[:8], seq)
					}
					cs += int64(len(d))
				}
				if cs != bi.CSize {
					return fmt.Errorf("blob %x: %d stored bytes in pieces, info says %d", k[:8], cs, bi.CSize)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for id, n := range refs {
			return fmt.Errorf("%d messages reference blob %x without blobinfo", n, id[:8])
		}
		// Every stored body is claimed by exactly one blobinfo and hashes
		// to that blob's ID.
		owner := map[uint64][32]byte{}
		err = tx.Bucket(bBlobInfo).ForEach(func(k, v []byte) error {
			var bi blobInfo
			if err := decode(v, &bi); err != nil {
				return err
			}
			if bi.Chunks == 0 {
				if _, dup := owner[bi.Num]; dup {
					return fmt.Errorf("blob number %d claimed twice", bi.Num)
				}
				owner[bi.Num] = [32]byte(k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bBlobs).ForEach(func(k, v []byte) error {
			id, ok := owner[binary.BigEndian.Uint64(k)]
			if !ok {
				return fmt.Errorf("orphan body %x in blobs", k)
			}
			if sha := sha256.Sum256(mustDecompress(v)); sha != id {
				return fmt.Errorf("body %x does not hash to its blob %x", k, id[:8])
			}
			return nil
		})
	})
}

func mustDecompress(b []byte) []byte {
	out, err := testCodec(nil).decompress(b)
	if err != nil {
		return nil
	}
	return out
}

// bucketLen counts the keys of a bucket.
func bucketLen(t testing.TB, f *fsm, name []byte) int {
	t.Helper()
	n := 0
	if err := f.view(func(tx *bolt.Tx) error { n = tx.Bucket(name).Stats().KeyN; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// bucketBytes sums the key and value bytes of a bucket.
func bucketBytes(t testing.TB, f *fsm, name []byte) int {
	t.Helper()
	n := 0
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(name).ForEach(func(k, v []byte) error { n += len(k) + len(v); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// logsOf makes command entries with consecutive indexes from first.
func logsOf(first uint64, data ...[]byte) []*raft.Log {
	out := make([]*raft.Log, len(data))
	for i, d := range data {
		out[i] = &raft.Log{Index: first + uint64(i), Term: 1, Type: raft.LogCommand, Data: d}
	}
	return out
}
