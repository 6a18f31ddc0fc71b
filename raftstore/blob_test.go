package raftstore

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/raftmail/raftmail/raftstore/command"
)

func blobStats(t testing.TB, f *fsm) (count int, refs uint64) {
	t.Helper()
	err := f.view(func(tx *bolt.Tx) error {
		r := &ReadTx{tx: tx}
		var err error
		count, _, _, err = r.BlobStats()
		return tx.Bucket(bBlobInfo).ForEach(func(k, v []byte) error {
			refs += r.BlobRefs([32]byte(k))
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return count, refs
}

// TestBlobDedupeRefcount: one delivery to 50 recipients stores one body
// with 50 references; a copy adds a reference, not a body; expunging every
// message frees the body's bytes.
func TestBlobDedupeRefcount(t *testing.T) {
	s := newScript(t)
	s.ok("", &command.AddDomain{Name: "example.org"})
	var rcpts []string
	for i := range 50 {
		a := fmt.Sprintf("u%02d@example.org", i)
		rcpts = append(rcpts, a)
		s.ok("", &command.AddAccount{Address: a, PassHash: "h"})
	}
	b := s.blob("shared", 30_000)
	r := s.ok("k", &command.Deliver{Blob: b, Rcpts: rcpts})
	if n, refs := blobStats(t, s.ref); n != 1 || refs != 50 {
		t.Fatalf("after delivery: %d bodies, %d refs; want 1, 50", n, refs)
	}
	if got := bucketBytes(t, s.ref, bBlobs); got != 8+len(b.Data) {
		t.Fatalf("blobs bucket holds %d bytes, want one body of %d", got, 32+len(b.Data))
	}
	// The body reads back whole.
	err := s.ref.view(func(tx *bolt.Tx) error {
		got, err := (&ReadTx{tx: tx, store: &Store{codec: testCodec(t)}}).Body(b.ID)
		if err == nil && !bytes.Equal(got, body("shared", 30_000)) {
			err = fmt.Errorf("body differs")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// A copy takes a reference; the same body appended elsewhere too.
	u0 := r.Rcpts[0]
	arch := s.mbox(u0.Account, "Archive")
	s.ok("", &command.Copy{Account: u0.Account, SrcID: u0.MailboxID, DstID: arch.ID, UIDs: []command.UIDRange{{Start: u0.UID, Stop: u0.UID}}})
	s.ok("", &command.Append{Account: u0.Account, MailboxID: arch.ID, Blob: b})
	if n, refs := blobStats(t, s.ref); n != 1 || refs != 52 {
		t.Fatalf("after copy and append: %d bodies, %d refs; want 1, 52", n, refs)
	}
	if err := checkState(s.ref); err != nil {
		t.Fatal(err)
	}

	// Expunge everything.
	s.ok("", &command.Expunge{Account: u0.Account, MailboxID: arch.ID})
	for _, rr := range r.Rcpts {
		if n, _ := blobStats(t, s.ref); n != 1 {
			t.Fatalf("body freed while %s still holds it", rr.Account)
		}
		s.ok("", &command.Expunge{Account: rr.Account, MailboxID: rr.MailboxID})
	}
	if n, refs := blobStats(t, s.ref); n != 0 || refs != 0 {
		t.Fatalf("after expunging all: %d bodies, %d refs", n, refs)
	}
	if bucketLen(t, s.ref, bBlobs) != 0 || bucketLen(t, s.ref, bBlobInfo) != 0 {
		t.Fatal("body bytes left in blobs/blobinfo")
	}
	if err := checkState(s.ref); err != nil {
		t.Fatal(err)
	}
}

// TestBlobRefusedEverywhere: a body that no recipient takes is not kept.
func TestBlobRefusedEverywhere(t *testing.T) {
	s := newScript(t)
	s.ok("", &command.AddDomain{Name: "example.org"})
	s.ok("", &command.AddAccount{Address: carol, PassHash: "h", Quota: 100})
	r := s.ok("", &command.Deliver{Blob: s.blob("big", 5000), Rcpts: []string{carol, "nobody@example.org"}})
	if r.Rcpts[0].Status.Code != "quota" || r.Rcpts[1].Status.Code != "no_user" {
		t.Fatalf("results: %+v", r.Rcpts)
	}
	if bucketLen(t, s.ref, bBlobs) != 0 || bucketLen(t, s.ref, bBlobInfo) != 0 {
		t.Fatal("unreferenced body stored")
	}
	if r := s.do("", &command.Deliver{Rcpts: []string{carol}}); r.Status.Code != "invalid" {
		t.Fatalf("empty body: %+v", r)
	}
}

// TestBlobChunks: a chunked body is stored once and referenced like an
// inline one, its pieces freed with the last reference; pieces of a body
// that never completes are collected an hour later (command time).
func TestBlobChunks(t *testing.T) {
	s := newScript(t)
	s.ok("", &command.AddDomain{Name: "example.org"})
	s.ok("", &command.AddAccount{Address: alice, PassHash: "h"})
	s.ok("", &command.AddAccount{Address: bob, PassHash: "h"})
	raw := body("chunked", 200_000)
	b := testCodec(t).NewBlob(raw, nil)
	pieces := split(b.Data, 4)
	for i, p := range pieces {
		s.ok(fmt.Sprint("c", i), &command.BlobChunk{ID: b.ID, Seq: uint32(i), Data: p})
	}
	ref := b
	ref.Data, ref.Chunks = nil, uint32(len(pieces))
	r := s.ok("", &command.Deliver{Blob: ref, Rcpts: []string{alice, bob}})
	if n, refs := blobStats(t, s.ref); n != 1 || refs != 2 {
		t.Fatalf("%d bodies, %d refs", n, refs)
	}
	// A re-upload of a stored body's piece stores nothing.
	s.ok("", &command.BlobChunk{ID: b.ID, Seq: 0, Data: pieces[0]})
	if got := bucketLen(t, s.ref, bChunks); got != len(pieces) {
		t.Fatalf("%d pieces stored, want %d", got, len(pieces))
	}
	// The same body sent inline later is recognised by its hash.
	s.ok("", &command.Append{Account: alice, MailboxID: s.mbox(alice, "Sent").ID, Blob: b})
	if n, refs := blobStats(t, s.ref); n != 1 || refs != 3 {
		t.Fatalf("inline copy of a chunked body: %d bodies, %d refs", n, refs)
	}
	err := s.ref.view(func(tx *bolt.Tx) error {
		got, err := (&ReadTx{tx: tx, store: &Store{codec: testCodec(t)}}).Body(b.ID)
		if err == nil && !bytes.Equal(got, raw) {
			err = fmt.Errorf("chunked body differs")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Claimed pieces survive the hourly collection.
	s.advance(2 * time.Hour)
	s.ok("", &command.Noop{})
	if got := bucketLen(t, s.ref, bChunks); got != len(pieces) {
		t.Fatalf("claimed pieces collected: %d left", got)
	}
	if err := checkState(s.ref); err != nil {
		t.Fatal(err)
	}
	for _, rr := range r.Rcpts {
		s.ok("", &command.Expunge{Account: rr.Account, MailboxID: rr.MailboxID})
	}
	s.ok("", &command.Expunge{Account: alice, MailboxID: s.mbox(alice, "Sent").ID})
	if bucketLen(t, s.ref, bChunks) != 0 || bucketLen(t, s.ref, bBlobInfo) != 0 {
		t.Fatal("pieces left after the last reference went")
	}

	// An incomplete upload fails the delivery and is collected after an hour.
	lost := testCodec(t).NewBlob(body("lost", 100_000), nil)
	lp := split(lost.Data, 3)
	s.ok("", &command.BlobChunk{ID: lost.ID, Seq: 0, Data: lp[0]})
	s.ok("", &command.BlobChunk{ID: lost.ID, Seq: 1, Data: lp[1]})
	lref := lost
	lref.Data, lref.Chunks = nil, 3
	if r := s.do("", &command.Deliver{Blob: lref, Rcpts: []string{alice}}); r.Status.Code != "invalid" {
		t.Fatalf("incomplete body: %+v", r)
	}
	if got := bucketLen(t, s.ref, bChunks); got != 2 {
		t.Fatalf("%d pieces before collection, want 2", got)
	}
	s.advance(59 * time.Minute)
	s.ok("", &command.Noop{})
	if got := bucketLen(t, s.ref, bChunks); got != 2 {
		t.Fatalf("pieces collected before the hour: %d left", got)
	}
	s.advance(2 * time.Minute)
	s.ok("", &command.Noop{})
	if bucketLen(t, s.ref, bChunks) != 0 || bucketLen(t, s.ref, bChunkAge) != 0 {
		t.Fatal("unclaimed pieces not collected after an hour")
	}
	if r := s.do("", &command.BlobChunk{ID: lost.ID, Seq: 0}); r.Status.Code != "invalid" {
		t.Fatalf("empty piece: %+v", r)
	}
}

// TestDedupeExpiry: a key is remembered for 24 hours of command time, then
// forgotten (and its table entries removed).
func TestDedupeExpiry(t *testing.T) {
	s := newScript(t)
	s.ok("", &command.AddDomain{Name: "example.org"})
	s.ok("acct", &command.AddAccount{Address: alice, PassHash: "h"})
	first := s.ok("key-1", &command.Deliver{Blob: s.blob("x", 100), Rcpts: []string{alice}})
	s.advance(23 * time.Hour)
	dup := s.do("key-1", &command.Deliver{Blob: s.blob("y", 100), Rcpts: []string{alice}})
	if !dup.Duplicate || dup.Index != first.Index || dup.Rcpts[0].UID != first.Rcpts[0].UID {
		t.Fatalf("within 24h: %+v, first %+v", dup, first)
	}
	if m := s.mbox(alice, "INBOX"); m.Messages != 1 {
		t.Fatalf("duplicate stored: %d messages", m.Messages)
	}
	s.advance(2 * time.Hour)
	s.ok("", &command.Noop{})
	if n := bucketLen(t, s.ref, bDedupe); n != 0 {
		t.Fatalf("%d keys remembered after 25h", n)
	}
	if n := bucketLen(t, s.ref, bDedupeAge); n != 0 {
		t.Fatalf("%d age entries left after 25h", n)
	}
	again := s.ok("key-1", &command.Deliver{Blob: s.blob("y", 100), Rcpts: []string{alice}})
	if again.Duplicate {
		t.Fatal("expired key still deduplicated")
	}
}

// TestDedupeWithinBatch: two entries with one key in the same batch apply
// once.
func TestDedupeWithinBatch(t *testing.T) {
	s := newScript(t)
	s.ok("", &command.AddDomain{Name: "example.org"})
	s.ok("", &command.AddAccount{Address: alice, PassHash: "h"})
	f := newFSM(t)
	replay(t, f, s.logs, len(s.logs))
	data := mustMarshal(t, s.now, "same", &command.Deliver{Blob: s.blob("x", 100), Rcpts: []string{alice}})
	next := s.index + 1
	res := f.ApplyBatch(logsOf(next, data, data, data))
	r0, r2 := res[0].(Result), res[2].(Result)
	if r0.Duplicate || !r2.Duplicate || r2.Index != next || r2.Rcpts[0].UID != r0.Rcpts[0].UID {
		t.Fatalf("results %+v / %+v", r0, r2)
	}
	if m := mailboxOf(t, f, alice, "INBOX"); m.Messages != 1 {
		t.Fatalf("%d messages", m.Messages)
	}
}

// TestPruneIsBounded: expired keys are forgotten at most pruneBatch per
// command (invariant 8: one apply does bounded work), oldest first, until
// none is left.
func TestPruneIsBounded(t *testing.T) {
	s := newScript(t)
	const keys = pruneBatch + 36
	for i := range keys {
		s.ok(fmt.Sprintf("key-%03d", i), &command.Noop{})
	}
	if n := bucketLen(t, s.ref, bDedupe); n != keys {
		t.Fatalf("%d keys remembered, want %d", n, keys)
	}
	s.advance(25 * time.Hour)
	s.ok("", &command.Noop{})
	if n := bucketLen(t, s.ref, bDedupe); n != keys-pruneBatch {
		t.Fatalf("%d keys left after one command, want %d", n, keys-pruneBatch)
	}
	if n := bucketLen(t, s.ref, bDedupeAge); n != keys-pruneBatch {
		t.Fatalf("%d age entries left after one command, want %d", n, keys-pruneBatch)
	}
	if dup := s.do(fmt.Sprintf("key-%03d", keys-1), &command.Noop{}); !dup.Duplicate {
		t.Fatal("the newest key was forgotten before the older ones")
	}
	s.ok("", &command.Noop{})
	if n := bucketLen(t, s.ref, bDedupe); n != 0 {
		t.Fatalf("%d keys left after the second command", n)
	}
}
