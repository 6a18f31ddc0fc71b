package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

// backup streams a consistent copy of the node's state into --out (written
// to a temporary file beside it and renamed once complete, so a cut
// stream never leaves a truncated backup under the final name).
func (a *admin) backup(args []string) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	out := fs.String("out", "", "backup file to write (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("usage: raftmail admin backup --out FILE")
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), filepath.Base(*out)+".part-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	// A backup takes as long as the state is large: no request timeout.
	idx, n, err := a.c.Backup(context.Background(), a.api, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "backup of %s at applied index %d: %s (%d bytes)\n", a.api, idx, *out, n)
	return nil
}

// restore seeds a new cluster from a backup: --api names the first node
// of a freshly bootstrapped cluster (docs/operations.md).
func (a *admin) restore(args []string) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	in := fs.String("in", "", "backup file to restore (required)")
	force := fs.Bool("force", false, "restore even into a cluster that has data or several members (replaces everything)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" {
		return errors.New("usage: raftmail admin restore --in FILE [--force]")
	}
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := a.c.Restore(context.Background(), a.api, f, *force)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.out, "restored %s (%d bytes, backup index %d) into %s; now join the other nodes\n", *in, info.Bytes, info.AppliedIndex, a.api)
	return nil
}
