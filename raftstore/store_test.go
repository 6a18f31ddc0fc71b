package raftstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/raftmail/raftmail/raftstore/command"
)

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// testConfig is a single node "n1" in dir with fast timings and quiet logs.
func testConfig(dir, addr string) Config {
	return Config{ID: "n1", Dir: dir, RaftAddr: addr, LogNoSync: true,
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
		LeaderLease: 50 * time.Millisecond, Logger: discardLogger(), RaftLogLevel: "error"}
}

// openStore opens a single-node store with fast timings, bootstraps it,
// waits until it leads and until it has applied what its term started with
// (the bootstrap configuration lands a moment after leadership), so a test's
// first AppliedIndex is stable.
func openStore(t testing.TB, dir, addr string) *Store {
	t.Helper()
	return openStoreConfig(t, testConfig(dir, addr))
}

// openStoreConfig is openStore with a configuration of the caller's.
func openStoreConfig(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "leadership", s.IsLeader)
	if err := s.Barrier(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustApply(t testing.TB, s *Store, key string, p command.Payload) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := s.ApplyCommand(ctx, &command.Command{Key: key, Payload: p})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatalf("%T: %v", p, err)
	}
	return res
}

func storeDigest(t testing.TB, s *Store) string {
	t.Helper()
	d, _, err := s.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func inboxCount(t testing.TB, s *Store, acct string) uint32 {
	t.Helper()
	var n uint32
	err := s.View(func(r *ReadTx) error {
		m, err := r.MailboxByName(acct, "INBOX")
		n = m.Messages
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func deliverN(t testing.TB, s *Store, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		b := s.Codec().NewBlob(body(fmt.Sprint("m", i), 2000), nil)
		mustApply(t, s, fmt.Sprint("d", i), &command.Deliver{Blob: b, Rcpts: []string{alice}})
	}
}

func setupAccount(t testing.TB, s *Store) {
	t.Helper()
	mustApply(t, s, "", &command.AddDomain{Name: "example.org"})
	mustApply(t, s, "", &command.AddAccount{Address: alice, PassHash: "h"})
}

// TestStoreRestart: a restarted store keeps its state and does not apply
// its log again (NoSnapshotRestoreOnStart plus the applied-index skip).
func TestStoreRestart(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	s := openStore(t, dir, addr)
	setupAccount(t, s)
	deliverN(t, s, 0, 20)
	if err := s.Snapshot(); err != nil { // entries both below and above a snapshot
		t.Fatal(err)
	}
	deliverN(t, s, 20, 5)
	want, applied := storeDigest(t, s), s.AppliedIndex()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := Open(testConfig(dir, addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s2.Close() })
	ch, cancel := s2.Subscribe(1024)
	defer cancel()
	if s2.AppliedIndex() != applied {
		t.Fatalf("applied index %d at open, want %d", s2.AppliedIndex(), applied)
	}
	waitFor(t, 10*time.Second, "leadership", s2.IsLeader)
	if err := s2.Barrier(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := storeDigest(t, s2); got != want {
		t.Fatal("state changed across a restart")
	}
	if n := inboxCount(t, s2, alice); n != 25 {
		t.Fatalf("%d messages after restart, want 25", n)
	}
	for {
		select {
		case c := <-ch:
			if _, ok := c.(MessageAdded); ok {
				t.Fatalf("restart re-applied an entry: %#v", c)
			}
			continue
		default:
		}
		break
	}
}

// TestStoreCatchUpFromSnapshot: a state file older than the latest snapshot
// (lost writes, or a copy put back) is brought forward at Open, so no
// committed entry below the snapshot is hidden (rqlite#2747).
func TestStoreCatchUpFromSnapshot(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	s := openStore(t, dir, addr)
	setupAccount(t, s)
	deliverN(t, s, 0, 5)
	old := filepath.Join(t.TempDir(), "old-state.db")
	if err := s.fsm.view(func(tx *bolt.Tx) error { return tx.CopyFile(old, 0o600) }); err != nil {
		t.Fatal(err)
	}
	deliverN(t, s, 5, 5)
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	deliverN(t, s, 10, 5)
	want := storeDigest(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.db"), data, 0o600); err != nil {
		t.Fatal(err)
	}

	s2 := openStore(t, dir, addr)
	if err := s2.Barrier(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n := inboxCount(t, s2, alice); n != 15 {
		t.Fatalf("%d messages after catch-up, want 15", n)
	}
	if got := storeDigest(t, s2); got != want {
		t.Fatal("caught-up state differs from the state before the restart")
	}
}

// TestStoreApplyRefusesMalformed: a command that does not decode is refused
// before it reaches the log; had it committed, every node would stop on it.
func TestStoreApplyRefusesMalformed(t *testing.T) {
	s := openStore(t, t.TempDir(), freeAddr(t))
	before := s.AppliedIndex()
	ctx := context.Background()
	bad := [][]byte{
		{byte(command.TypeDeliver), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc1},
		{byte(command.TypeSetFlags), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0xa4, 'u', 'i', 'd', 's', 0xdd, 0xff, 0xff, 0xff, 0xff},
		{0x7e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80},
		{1, 2},
	}
	for _, b := range bad {
		if _, err := s.Apply(ctx, b); err == nil {
			t.Fatalf("%x accepted", b)
		}
	}
	if s.AppliedIndex() != before {
		t.Fatal("a malformed command reached the log")
	}
	if _, err := s.Apply(ctx, bad[0]); !errors.Is(err, command.ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
	if _, err := s.Apply(ctx, bad[2]); !errors.Is(err, command.ErrUnknownType) {
		t.Fatalf("err = %v, want ErrUnknownType", err)
	}
	setupAccount(t, s) // the node is still fine
}

// TestStoreApplyLimits: too large commands and non-leaders are refused.
func TestStoreApplyLimits(t *testing.T) {
	s := openStore(t, t.TempDir(), freeAddr(t))
	s.cfg.MaxEntryBytes = 100
	big, _ := command.Marshal(&command.Command{Payload: &command.AddDomain{Name: strings.Repeat("a", 200) + ".org"}})
	if _, err := s.Apply(context.Background(), big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	res := mustApply(t, s, "k", &command.Noop{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitApplied(ctx, res.Index); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := s.WaitApplied(short, res.Index+1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitApplied beyond the log: %v", err)
	}
}

// TestAuthenticate: right and wrong passwords, aliases, and the
// verification cache dropped on a password change.
func TestAuthenticate(t *testing.T) {
	s := openStore(t, t.TempDir(), freeAddr(t))
	hash, err := HashPassword("secret")
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, "", &command.AddDomain{Name: "example.org"})
	mustApply(t, s, "", &command.AddAccount{Address: alice, PassHash: hash})
	mustApply(t, s, "", &command.AddAlias{Address: "postmaster@example.org", Target: alice})

	cacheLen := func() int {
		s.auth.mu.Lock()
		defer s.auth.mu.Unlock()
		return len(s.auth.ok)
	}
	for _, tt := range []struct {
		user, pw string
		ok       bool
	}{
		{"Alice@Example.org", "secret", true},
		{alice, "secret", true}, // served from the cache
		{"postmaster@example.org", "secret", true},
		{alice, "Secret", false},
		{alice, "", false},
		{"nobody@example.org", "secret", false},
		{"not an address", "secret", false},
	} {
		got, err := s.Authenticate(tt.user, tt.pw)
		if tt.ok && (err != nil || got != alice) {
			t.Errorf("%s/%s: %q, %v", tt.user, tt.pw, got, err)
		}
		if !tt.ok && !errors.Is(err, ErrAuthFailed) {
			t.Errorf("%s/%s: %q, %v; want ErrAuthFailed", tt.user, tt.pw, got, err)
		}
	}
	if n := cacheLen(); n != 1 {
		t.Fatalf("%d cache entries, want 1", n)
	}
	newHash, err := HashPassword("changed")
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, "", &command.SetPassword{Address: alice, PassHash: newHash})
	waitFor(t, 5*time.Second, "cache drop", func() bool { return cacheLen() == 0 })
	if _, err := s.Authenticate(alice, "secret"); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("old password after change: %v", err)
	}
	if got, err := s.Authenticate(alice, "changed"); err != nil || got != alice {
		t.Fatalf("new password: %q, %v", got, err)
	}
}

func TestVerifyPassword(t *testing.T) {
	hash, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := HashPassword(""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty password hashed: %v", err)
	}
	other, _ := HashPassword("pw")
	if other == hash {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	parts := strings.Split(hash, "$")
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	tests := []struct {
		name, hash, pw string
		want           bool
	}{
		{"right", hash, "pw", true},
		{"wrong", hash, "pW", false},
		{"empty hash", "", "pw", false},
		{"plain text", "pw", "pw", false},
		{"argon2i", with(1, "argon2i"), "pw", false},
		{"too few parts", strings.Join(parts[:5], "$"), "pw", false},
		{"params garbage", with(3, "m=x,t=1,p=1"), "pw", false},
		{"zero memory", with(3, "m=0,t=2,p=1"), "pw", false},
		{"zero time", with(3, "m=19456,t=0,p=1"), "pw", false},
		{"zero threads", with(3, "m=19456,t=2,p=0"), "pw", false},
		{"threads overflow", with(3, "m=19456,t=2,p=256"), "pw", false},
		{"memory too large", with(3, "m=4194304,t=2,p=1"), "pw", false},
		{"time too large", with(3, "m=19456,t=65,p=1"), "pw", false},
		{"bad salt", with(4, "!!!"), "pw", false},
		{"bad key", with(5, "!!!"), "pw", false},
		{"empty key", with(5, ""), "pw", false},
		{"other salt", with(4, strings.Split(other, "$")[4]), "pw", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifyPassword(tt.hash, tt.pw); got != tt.want {
				t.Fatalf("VerifyPassword = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestLeaderWatch: the channel LeaderWatch returns closes when the node
// first sees a leader, and the watch then names it.
func TestLeaderWatch(t *testing.T) {
	s, err := Open(testConfig(t.TempDir(), freeAddr(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	id, changed := s.LeaderWatch()
	if id != "" {
		t.Fatalf("leader %q before bootstrap", id)
	}
	if err := s.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no leader change seen after bootstrap")
	}
	waitFor(t, 10*time.Second, "leadership", s.IsLeader)
	if id, _ := s.LeaderWatch(); id != "n1" {
		t.Fatalf("watch names %q, want n1", id)
	}
}
