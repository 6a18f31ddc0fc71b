package raftstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/raftstore/command"
)

// withBoot makes bootID report boot for the test.
func withBoot(t *testing.T, boot string) {
	t.Helper()
	old := bootID
	bootID = func() string { return boot }
	t.Cleanup(func() { bootID = old })
}

func TestStateTrusted(t *testing.T) {
	withBoot(t, "boot-a")
	dir := t.TempDir()
	if ok, _ := stateTrusted(dir); !ok {
		t.Fatal("no marker (a state file from before markers, fsynced per batch) must be trusted")
	}
	for _, c := range []struct {
		mark string
		ok   bool
	}{
		{"sync", true},
		{"nosync clean", true},
		{"nosync running boot-a", true}, // process crash, same boot
		{"nosync running boot-b", false},
		{"nosync running unknown", false},
		{"garbage", false},
		{"", false},
	} {
		if err := writeStateMark(dir, c.mark); err != nil {
			t.Fatal(err)
		}
		if ok, why := stateTrusted(dir); ok != c.ok || (!ok && why == "") {
			t.Errorf("marker %q: trusted %v (%q), want %v", c.mark, ok, why, c.ok)
		}
	}
	withBoot(t, "")
	if err := writeStateMark(dir, runningMark()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := stateTrusted(dir); ok {
		t.Fatal("with the boot unknown, an unclean stop must count as a reboot")
	}
}

func readMark(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, stateMarkName))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func reopen(t *testing.T, dir, addr string) *Store {
	t.Helper()
	s, err := Open(testConfig(dir, addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	waitFor(t, 10*time.Second, "leadership", s.IsLeader)
	if err := s.Barrier(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	return s
}

// A state file left by an unclean stop is kept in the same boot (a process
// crash loses nothing from the page cache) and discarded after a reboot:
// rebuilt from the newest snapshot and the log, it holds every committed
// delivery, below and above the snapshot, and the same digest.
func TestStateRebuiltAfterRebootOnly(t *testing.T) {
	withBoot(t, "boot-a")
	dir, addr := t.TempDir(), freeAddr(t)
	s := openStore(t, dir, addr)
	if got := readMark(t, dir); got != "nosync running boot-a" {
		t.Fatalf("marker while running = %q", got)
	}
	setupAccount(t, s)
	deliverN(t, s, 0, 20)
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	deliverN(t, s, 20, 7)
	want := storeDigest(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readMark(t, dir); got != "nosync clean" {
		t.Fatalf("marker after Close = %q, want nosync clean", got)
	}

	// An unclean stop in the same boot: the file is trusted as it is.
	if err := writeStateMark(dir, "nosync running boot-a"); err != nil {
		t.Fatal(err)
	}
	s2 := reopen(t, dir, addr)
	if s2.RebuiltState() {
		t.Fatal("same boot: the state file must be kept")
	}
	if got := storeDigest(t, s2); got != want {
		t.Fatal("state changed across a same-boot restart")
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}

	// An unclean stop, then a reboot: the state file is torn garbage here,
	// and must not even be opened.
	if err := writeStateMark(dir, "nosync running boot-a"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.db"), []byte(strings.Repeat("torn page ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	withBoot(t, "boot-b")
	reopenRebuilt(t, dir, addr, 27, want)
	if got := readMark(t, dir); got != "nosync running boot-b" {
		t.Fatalf("marker after the rebuild = %q", got)
	}
}

// Per-batch fsync mode marks the file "sync", which is trusted after any
// stop, and a later no-sync run takes it over.
func TestStateSyncPerBatchMark(t *testing.T) {
	withBoot(t, "boot-a")
	dir, addr := t.TempDir(), freeAddr(t)
	cfg := testConfig(dir, addr)
	cfg.StateSyncPerBatch = true
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "leadership", s.IsLeader)
	setupAccount(t, s)
	deliverN(t, s, 0, 3)
	want := storeDigest(t, s)
	if got := readMark(t, dir); got != "sync" {
		t.Fatalf("marker = %q, want sync", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readMark(t, dir); got != "sync" {
		t.Fatalf("marker after Close = %q, want sync", got)
	}
	withBoot(t, "boot-b")
	s2 := reopen(t, dir, addr)
	if s2.RebuiltState() || storeDigest(t, s2) != want {
		t.Fatal("a state file written with per-batch fsync must be kept after a reboot")
	}
}

// Without any snapshot yet (a young cluster), the rebuild after a reboot
// replays the whole log.
func TestStateRebuiltFromLogAlone(t *testing.T) {
	withBoot(t, "boot-a")
	dir, addr := t.TempDir(), freeAddr(t)
	s := openStore(t, dir, addr)
	setupAccount(t, s)
	deliverN(t, s, 0, 5)
	want := storeDigest(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := writeStateMark(dir, "nosync running boot-a"); err != nil {
		t.Fatal(err)
	}
	withBoot(t, "boot-b")
	reopenRebuilt(t, dir, addr, 5, want)
}

// reopenRebuilt reopens after a simulated reboot and checks that the state
// file was rebuilt to the state before the stop: n messages in alice's
// INBOX and the digest want.
func reopenRebuilt(t *testing.T, dir, addr string, n uint32, want string) {
	t.Helper()
	s := reopen(t, dir, addr)
	if !s.RebuiltState() {
		t.Fatal("after a reboot the state file must be rebuilt")
	}
	if got := inboxCount(t, s, alice); got != n {
		t.Fatalf("%d messages after the rebuild, want %d", got, n)
	}
	if storeDigest(t, s) != want {
		t.Fatal("rebuilt state differs from the state before the stop")
	}
	// DESIGN.md invariant 2 across the rebuild: a key applied before the
	// stop is remembered, so a frontend's retry stores nothing twice.
	b := s.Codec().NewBlob(body("m0", 2000), nil)
	if res := mustApply(t, s, "d0", &command.Deliver{Blob: b, Rcpts: []string{alice}}); !res.Duplicate {
		t.Fatal("a key applied before the reboot was applied again after the rebuild")
	}
	if got := inboxCount(t, s, alice); got != n {
		t.Fatalf("%d messages after retrying a remembered key, want %d", got, n)
	}
}
