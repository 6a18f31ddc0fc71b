package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/raftmail/raftmail/bench/chaos"
)

// errChaosFailed makes "raftmail chaos" exit non-zero on a FAIL verdict
// (the verdict line is already printed).
var errChaosFailed = errors.New("verdict FAIL")

// runChaos runs the fault harness (bench/chaos) against this binary; see
// docs/reliability.md.
func runChaos(args []string) error {
	var cfg chaos.Config
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.Int64Var(&cfg.Seed, "seed", 0, "seed of the fault schedule and workload (0: from the clock; printed)")
	fs.DurationVar(&cfg.Duration, "duration", 2*time.Minute, "how long the workload runs under faults (up to 3m: the CI schedule)")
	fs.IntVar(&cfg.Senders, "senders", 32, "concurrent SMTP senders")
	fs.IntVar(&cfg.Accounts, "accounts", 4, "accounts (each has one IMAP client)")
	fs.StringVar(&cfg.Dir, "dir", "", "work directory for data, logs, chaos.json and chaos.png (default: a new temporary one)")
	fs.StringVar(&cfg.JSONPath, "json", "", "JSON report path (default DIR/chaos.json)")
	fs.StringVar(&cfg.PNGPath, "png", "", "PNG timeline path (default DIR/chaos.png)")
	fs.BoolVar(&cfg.Loopback, "loopback", false, "run on loopback without network namespaces (no partition faults)")
	fs.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", 500*time.Millisecond, "nodes' raft heartbeat timeout")
	fs.DurationVar(&cfg.ElectionTimeout, "election-timeout", 500*time.Millisecond, "nodes' raft election timeout")
	fs.DurationVar(&cfg.LeaderLease, "leader-lease", 250*time.Millisecond, "nodes' raft leader lease")
	fs.DurationVar(&cfg.CommitTimeout, "commit-timeout", 10*time.Second, "commit timeout of nodes and frontends")
	fs.DurationVar(&cfg.Quiet, "quiet", 3*time.Second, "quiet period after healing, before the read-back")
	var logs logFlags
	logs.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger, err := logs.logger(os.Stderr)
	if err != nil {
		return err
	}
	cfg.Logger = logger
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano() % 1_000_000_000
	}
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "raftmail-chaos-"); err != nil {
			return err
		}
	}
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return err
	}
	if cfg.Binary, err = os.Executable(); err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	v, err := chaos.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if !v.Pass {
		return errChaosFailed
	}
	return nil
}
