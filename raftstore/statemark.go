package raftstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The state file is a cache of the raft log: everything in it can be rebuilt
// from the newest snapshot and the log, which is fsynced before any 250.
// By default the state file is therefore not fsynced per apply batch (that
// fsync was the serial bottleneck of the write path: docs/storage.md), and
// this marker tells, at open, whether the file on disk can be trusted:
//
//	sync                  written with an fsync per batch: always consistent
//	nosync clean          closed cleanly (synced at Close)
//	nosync running BOOT   in use, or stopped uncleanly, during boot BOOT
//
// A process that dies without Close (SIGKILL, panic, OOM) leaves its writes
// in the kernel's page cache, so in the same boot the file is whole. Only a
// machine that went down (power loss, kernel crash: a new boot ID) can leave
// a state file written without fsync torn, and then it is discarded and
// rebuilt from the snapshot and the log before raft starts.
const stateMarkName = "state.mark"

// bootID identifies the running kernel boot; "" when unknown, which makes
// every unclean stop count as a reboot (the safe side). A variable so tests
// can simulate a reboot.
var bootID = func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// stateTrusted reads the marker in dir and reports whether an existing
// state file may be used, with the reason when it may not.
func stateTrusted(dir string) (bool, string) {
	b, err := os.ReadFile(filepath.Join(dir, stateMarkName))
	if errors.Is(err, os.ErrNotExist) {
		// No marker: a state file from before markers existed, which was
		// fsynced per batch.
		return true, ""
	}
	if err != nil {
		return false, fmt.Sprintf("unreadable %s: %v", stateMarkName, err)
	}
	f := strings.Fields(string(b))
	switch {
	case len(f) == 1 && f[0] == "sync":
		return true, ""
	case len(f) == 2 && f[0] == "nosync" && f[1] == "clean":
		return true, ""
	case len(f) == 3 && f[0] == "nosync" && f[1] == "running":
		if boot := bootID(); boot != "" && f[2] == boot {
			return true, "" // a process crash: the page cache kept every write
		}
		return false, "the state file was written without fsync and the machine restarted since (boot " + f[2] + ")"
	}
	return false, fmt.Sprintf("unrecognised %s %q", stateMarkName, strings.TrimSpace(string(b)))
}

// writeStateMark replaces the marker durably (temp file, fsync, rename,
// directory fsync), so it is on disk before the state file changes.
func writeStateMark(dir, content string) error {
	path := filepath.Join(dir, stateMarkName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("state mark: %w", err)
	}
	_, werr := f.WriteString(content + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("state mark: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("state mark: %w", err)
	}
	syncDir(dir)
	return nil
}

// runningMark is the marker of a state file in use without per-batch fsync.
func runningMark() string {
	boot := bootID()
	if boot == "" {
		boot = "unknown"
	}
	return "nosync running " + boot
}
