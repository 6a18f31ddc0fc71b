package raftstore

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/klauspost/compress/zstd"

	"github.com/raftmail/raftmail/raftstore/command"
)

// bufSink is a raft.SnapshotSink over memory.
type bufSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *bufSink) ID() string    { return "test" }
func (s *bufSink) Close() error  { s.closed = true; return nil }
func (s *bufSink) Cancel() error { s.cancelled = true; return nil }

func snapshotOf(t testing.TB, f *fsm) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink bufSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

// TestSnapshotRestore: snapshot → restore into a fresh FSM gives the same
// digest and applied index, publishes StateReset, and the restored FSM goes
// on applying like the original.
func TestSnapshotRestore(t *testing.T) {
	s := scenario(t)
	snap := snapshotOf(t, s.ref)
	if !bytes.HasPrefix(snap, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Fatalf("snapshot does not start with the zstd magic: %x", snap[:4])
	}

	g := newFSM(t)
	ch, cancel := g.feed.subscribe(4)
	defer cancel()
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if got, want := fsmDigest(t, g), fsmDigest(t, s.ref); got != want {
		t.Fatalf("restored digest %s, want %s", got, want)
	}
	if idx, _ := g.appliedIndex(); idx != s.index {
		t.Fatalf("restored applied index %d, want %d", idx, s.index)
	}
	select {
	case c := <-ch:
		if _, ok := c.(StateReset); !ok {
			t.Fatalf("first change after restore: %#v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no StateReset after restore")
	}
	if _, err := os.Stat(g.path + ".restore"); !os.IsNotExist(err) {
		t.Fatalf("temp file left behind: %v", err)
	}
	// Both go on identically; replaying old entries changes nothing.
	next := logsOf(s.index+1, mustMarshal(t, s.now, "post", &command.Deliver{Blob: s.blob("post", 500), Rcpts: []string{bob}}))
	replay(t, g, append(append([]*raft.Log(nil), s.logs...), next...), 8)
	s.ref.ApplyBatch(next)
	if fsmDigest(t, g) != fsmDigest(t, s.ref) {
		t.Fatal("restored FSM diverged")
	}
	if err := checkState(g); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotConcurrentApply: Persist runs while Apply goes on and
// captures the state as of Snapshot().
func TestSnapshotConcurrentApply(t *testing.T) {
	s := scenario(t)
	want := fsmDigest(t, s.ref)
	snap, err := s.ref.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20 {
			s.ref.ApplyBatch(logsOf(s.index+1+uint64(i), mustMarshal(t, s.now, "", &command.Deliver{Blob: s.blob("c", 300+i), Rcpts: []string{alice}})))
		}
	}()
	var sink bufSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("apply blocked by a snapshot in progress")
	}
	g := newFSM(t)
	if err := g.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	if fsmDigest(t, g) != want {
		t.Fatal("snapshot does not match the state at Snapshot()")
	}
}

// TestRestoreGarbage: a snapshot that is not zstd, not a bbolt file, or
// cut short fails and leaves the live state as it was.
func TestRestoreGarbage(t *testing.T) {
	s := scenario(t)
	good := snapshotOf(t, s.ref)
	var notBolt bytes.Buffer
	zw, _ := zstd.NewWriter(&notBolt)
	_, _ = zw.Write(bytes.Repeat([]byte("not a bbolt file "), 4096))
	_ = zw.Close()
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not zstd", []byte(strings.Repeat("garbage", 100))},
		{"zstd of garbage", notBolt.Bytes()},
		{"truncated", good[:len(good)/2]},
	}
	want := fsmDigest(t, s.ref)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.ref.Restore(io.NopCloser(bytes.NewReader(tt.data))); err == nil {
				t.Fatal("garbage restored")
			}
			if got := fsmDigest(t, s.ref); got != want {
				t.Fatal("failed restore changed the live state")
			}
			if _, err := os.Stat(s.ref.path + ".restore"); !os.IsNotExist(err) {
				t.Fatalf("temp file left behind: %v", err)
			}
		})
	}
	// Still applies.
	res := s.ref.ApplyBatch(logsOf(s.index+1, mustMarshal(t, s.now, "", &command.Noop{})))
	if r, ok := res[0].(Result); !ok || r.Err() != nil {
		t.Fatalf("apply after failed restores: %+v", res[0])
	}
}

// TestChangeFeed: changes arrive in apply order with the UIDs the results
// name.
func TestChangeFeed(t *testing.T) {
	s := newScript(t)
	ch, cancel := s.ref.feed.subscribe(0)
	defer cancel()
	s.ok("", &command.AddDomain{Name: "example.org"})
	s.ok("", &command.AddAccount{Address: alice, PassHash: "h"})
	var want []Change
	for range DefaultMailboxes {
		want = append(want, nil) // MailboxChanged for each default mailbox
	}
	want = append(want, AccountChanged{Address: alice})
	in := s.mbox(alice, "INBOX")
	d := s.ok("", &command.Deliver{Blob: s.blob("1", 100), Rcpts: []string{alice}})
	want = append(want, MessageAdded{Account: alice, MailboxID: in.ID, UID: d.Rcpts[0].UID, ModSeq: d.Index})
	a := s.ok("", &command.Append{Account: alice, MailboxID: in.ID, Blob: s.blob("2", 100), Flags: []string{`\Seen`}})
	want = append(want, MessageAdded{Account: alice, MailboxID: in.ID, UID: a.UIDs[0], ModSeq: a.Index, Flags: []string{`\Seen`}})
	f := s.ok("", &command.SetFlags{Account: alice, MailboxID: in.ID, Op: command.FlagsAdd, Flags: []string{`\Deleted`}, Origin: "sess-1"})
	for _, uid := range f.UIDs {
		fl := []string{`\Deleted`}
		if uid == a.UIDs[0] {
			fl = []string{`\Deleted`, `\Seen`}
		}
		want = append(want, FlagsChanged{Account: alice, MailboxID: in.ID, UID: uid, Flags: fl, ModSeq: f.Index, Origin: "sess-1"})
	}
	e := s.ok("", &command.Expunge{Account: alice, MailboxID: in.ID, OnlyDeleted: true})
	want = append(want, MessagesExpunged{Account: alice, MailboxID: in.ID, UIDs: e.UIDs, ModSeq: e.Index})
	if len(e.UIDs) != 2 {
		t.Fatalf("expunged %v", e.UIDs)
	}
	for i, w := range want {
		select {
		case c := <-ch:
			if w == nil {
				if _, ok := c.(MailboxChanged); !ok {
					t.Fatalf("change %d: %#v, want MailboxChanged", i, c)
				}
				continue
			}
			if !equalChange(c, w) {
				t.Fatalf("change %d: %#v, want %#v", i, c, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("change %d never came", i)
		}
	}
}

// equalChange compares changes, treating nil and empty flag lists alike.
func equalChange(a, b Change) bool {
	norm := func(c Change) string { return strings.ReplaceAll(fmt.Sprintf("%#v", c), "[]string(nil)", "[]string{}") }
	return norm(a) == norm(b)
}

// TestChangeFeedSlowSubscriber: a subscriber that reads nothing does not
// block apply, and later receives every change in order.
func TestChangeFeedSlowSubscriber(t *testing.T) {
	s := newScript(t)
	s.ok("", &command.AddDomain{Name: "example.org"})
	s.ok("", &command.AddAccount{Address: alice, PassHash: "h"})
	ch, cancel := s.ref.feed.subscribe(0)
	defer cancel()
	const n = 500
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			s.ref.ApplyBatch(logsOf(s.index+1+uint64(i), mustMarshal(t, s.now, "", &command.Deliver{Blob: s.blob("x", 100), Rcpts: []string{alice}})))
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("apply blocked on a subscriber that does not read")
	}
	for i := range n {
		select {
		case c := <-ch:
			if a, ok := c.(MessageAdded); !ok || a.UID != uint32(i+1) {
				t.Fatalf("change %d: %#v", i, c)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("lost change %d", i)
		}
	}
}

// TestChangeFeedCancel: cancel stops the pump goroutine and closes the
// channel, even with undelivered changes queued.
func TestChangeFeedCancel(t *testing.T) {
	f := newFSM(t)
	waitGoroutines := func(max int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > max {
			if time.Now().After(deadline) {
				t.Fatalf("%d goroutines, want at most %d", runtime.NumGoroutine(), max)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	base := runtime.NumGoroutine()
	var chans []<-chan Change
	var cancels []func()
	for range 10 {
		ch, cancel := f.feed.subscribe(0)
		chans, cancels = append(chans, ch), append(cancels, cancel)
	}
	f.feed.publish([]Change{StateReset{}, StateReset{}})
	for _, c := range cancels {
		c()
		c() // idempotent
	}
	for i, ch := range chans {
		deadline := time.After(5 * time.Second)
	drain:
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					break drain
				}
			case <-deadline:
				t.Fatalf("subscriber %d: channel not closed after cancel", i)
			}
		}
	}
	waitGoroutines(base)
	f.feed.publish([]Change{StateReset{}}) // no subscribers: no effect
	f.feed.mu.Lock()
	n := len(f.feed.subs)
	f.feed.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d subscribers left", n)
	}
}
