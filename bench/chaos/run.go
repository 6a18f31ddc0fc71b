package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Config is one chaos run.
type Config struct {
	// Binary is the raftmail executable to run nodes and frontends with.
	Binary string
	// Dir holds data directories, process logs and the outputs.
	Dir string
	// Seed makes the fault schedule and workload choices repeatable
	// (timing still varies).
	Seed     int64
	Duration time.Duration
	Senders  int
	Accounts int
	// Loopback forces loopback processes (no namespaces, no partitions).
	Loopback bool
	// Raft timeouts for the nodes, and the commit timeout of nodes and
	// frontends (see docs/reliability.md for the tuning).
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	LeaderLease      time.Duration
	CommitTimeout    time.Duration
	// Quiet is how long the healed cluster runs without load and faults
	// before the read-back.
	Quiet time.Duration
	// JSONPath and PNGPath are the outputs (default in Dir).
	JSONPath, PNGPath string
	Out               io.Writer
	Logger            *slog.Logger
}

func (c *Config) defaults() {
	if c.Duration == 0 {
		c.Duration = 2 * time.Minute
	}
	if c.Senders == 0 {
		c.Senders = 32
	}
	if c.Accounts == 0 {
		c.Accounts = 4
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = 500 * time.Millisecond
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = 500 * time.Millisecond
	}
	if c.LeaderLease == 0 {
		c.LeaderLease = 250 * time.Millisecond
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = 10 * time.Second
	}
	if c.Quiet == 0 {
		c.Quiet = 3 * time.Second
	}
	if c.JSONPath == "" {
		c.JSONPath = filepath.Join(c.Dir, "chaos.json")
	}
	if c.PNGPath == "" {
		c.PNGPath = filepath.Join(c.Dir, "chaos.png")
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Run starts the cluster, runs the workloads under the nemesis for
// cfg.Duration, heals, checks and reports. The verdict is returned even
// when it fails; err is for a run that could not be carried out. ctx
// cancellation (Ctrl-C) stops the run and still cleans up.
func Run(ctx context.Context, cfg Config) (*Verdict, error) {
	cfg.defaults()
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	h := &harness{cfg: cfg, logger: cfg.Logger, out: cfg.Out}
	h.printf("chaos: seed %d (repeat with --seed %d), duration %s, %d senders, work dir %s\n",
		cfg.Seed, cfg.Seed, cfg.Duration, cfg.Senders, cfg.Dir)
	if err := h.setupNet(ctx); err != nil {
		return nil, err
	}
	if h.net != nil {
		defer h.net.Close()
	}
	defer h.stopAll()
	if err := h.startCluster(ctx); err != nil {
		return nil, err
	}
	hist, err := h.runLoad(ctx)
	if err != nil {
		return nil, err
	}
	v := Check(hist)
	if err := report(h, hist, v); err != nil {
		return v, err
	}
	return v, nil
}

func (h *harness) setupNet(ctx context.Context) error {
	h.noNetReason = netnsSupport()
	if h.cfg.Loopback {
		h.noNetReason = "--loopback"
	}
	if h.noNetReason == "" {
		nw, err := setupNetwork(ctx, 3, h.logger)
		if err != nil {
			h.noNetReason = err.Error()
		} else {
			h.net = nw
		}
	}
	if h.net == nil {
		h.printf("chaos: NO NETWORK NAMESPACES (%s): loopback processes; partition and slow-link faults are skipped\n", h.noNetReason)
		return nil
	}
	slow := "tc netem"
	if !h.net.netem {
		slow = "no netem in this kernel: slow links are tbf + random drops"
	}
	h.printf("chaos: nodes in network namespaces %s-n1..n3 on %s0/24 (%s)\n", h.net.id, h.net.prefix, slow)
	return nil
}

// runLoad runs workloads, observer and nemesis, then heals, waits for a
// quiet, converged cluster and reads everything back.
func (h *harness) runLoad(ctx context.Context) (*History, error) {
	hist := &History{Start: time.Now(), ManagedFlags: managedFlags, FinalErr: map[string]string{}}
	for _, n := range h.nodes {
		hist.Nodes = append(hist.Nodes, n.name)
	}
	var fronts []string
	for _, f := range h.fronts {
		fronts = append(fronts, f.addr)
	}
	smtpL := &smtpLoad{frontends: fronts, rcpts: h.accounts, senders: h.cfg.Senders, seed: h.cfg.Seed,
		attemptTimeout: h.cfg.CommitTimeout + 10*time.Second}
	imapL := &imapLoad{h: h, seed: h.cfg.Seed, timeout: h.cfg.CommitTimeout + 5*time.Second}
	obs := &observer{h: h, interval: 3 * time.Second}
	plan := Schedule(h.cfg.Seed, h.cfg.Duration)

	loadCtx, stopLoad := context.WithTimeout(ctx, h.cfg.Duration)
	defer stopLoad()
	var wg sync.WaitGroup
	var faultsMu sync.Mutex
	for _, f := range []func(context.Context){smtpL.run, imapL.run, obs.run} {
		wg.Add(1)
		go func() { defer wg.Done(); f(loadCtx) }()
	}
	h.printf("chaos: %d faults planned\n      at        fault           target\n", len(plan))
	h.nemesis(loadCtx, plan, hist.Start, func(f Fault) {
		faultsMu.Lock()
		hist.Faults = append(hist.Faults, f)
		faultsMu.Unlock()
	})
	<-loadCtx.Done()
	wg.Wait()
	hist.End = time.Now()
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil, fmt.Errorf("interrupted: %w", ctx.Err())
	}

	h.heal()
	h.reviveAll()
	pause(ctx, h.cfg.Quiet)
	if err := h.waitMembers(ctx, 60*time.Second); err != nil {
		h.printf("chaos: cluster not whole after healing: %v\n", err)
	}
	digests, err := h.converge(ctx, 90*time.Second)
	if err != nil {
		h.printf("chaos: nodes did not converge: %v\n", err)
	}
	hist.Digests = digests
	obs.round(ctx)
	for _, n := range h.nodes {
		st, err := h.readBack(ctx, n)
		if err != nil {
			hist.FinalErr[n.name] = err.Error()
		}
		hist.Final = append(hist.Final, st...)
	}
	hist.Sends, hist.IMAPOps, hist.Observations = smtpL.history(), imapL.history(), obs.history()
	return hist, nil
}
