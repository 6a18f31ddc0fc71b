package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/frontends/lmtp"
)

// nodeFlags are the flags of "raftmail node".
type nodeFlags struct {
	cfg        cluster.Config
	lmtpAddr   string
	imapAddr   string
	imapsAddr  string
	pop3Addr   string
	pop3sAddr  string
	tlsCert    string
	tlsKey     string
	hostname   string
	maxMessage int64
	logs       logFlags
	outbound   outboundFlags
	ops        nodeOps
	// imapMaxConns and imapMaxConnsPerIP raise the IMAP connection limits
	// (0: the server's defaults), e.g. for the bench's idle connections.
	imapMaxConns, imapMaxConnsPerIP int
	// lmtpMaxConns and lmtpMaxConnsPerIP raise the LMTP connection limits.
	lmtpMaxConns, lmtpMaxConnsPerIP int
}

func parseNodeFlags(args []string) (*nodeFlags, error) {
	f := &nodeFlags{}
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.StringVar(&f.cfg.ID, "id", "", "node ID, unique in the cluster (required)")
	fs.StringVar(&f.cfg.DataDir, "data", "", "data directory (required)")
	fs.StringVar(&f.cfg.RaftAddr, "raft", "", "raft address to bind and advertise, host:port (required)")
	fs.StringVar(&f.cfg.HTTPAddr, "http", "", "API listen address, host:port (required)")
	fs.StringVar(&f.cfg.APIAdvertise, "http-advertise", "", "API URL other nodes use (default http://<http>)")
	fs.BoolVar(&f.cfg.Bootstrap, "bootstrap", false, "bootstrap a new cluster with this node as its first member")
	var join stringList
	fs.Var(&join, "join", "API URL of a member to join through (repeatable)")
	fs.StringVar(&f.cfg.Token, "token", os.Getenv("RAFTMAIL_TOKEN"), "bearer token for admin and cluster calls (env RAFTMAIL_TOKEN)")
	fs.BoolVar(&f.cfg.Dev, "dev", false, "development mode: loopback callers need no token, plain-text logins on loopback")
	fs.DurationVar(&f.cfg.CommitTimeout, "commit-timeout", 30*time.Second, "how long a write may wait for a commit before a temporary failure")
	fs.StringVar(&f.lmtpAddr, "lmtp", "", "LMTP listen address (empty: off)")
	fs.StringVar(&f.imapAddr, "imap", "", "IMAP listen address (empty: off)")
	fs.StringVar(&f.imapsAddr, "imaps", "", "IMAP implicit-TLS listen address (empty: off)")
	fs.StringVar(&f.pop3Addr, "pop3", "", "POP3 listen address (empty: off)")
	fs.StringVar(&f.pop3sAddr, "pop3s", "", "POP3 implicit-TLS listen address (empty: off)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate for STARTTLS/STLS and implicit TLS (dev: self-signed)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	fs.StringVar(&f.hostname, "hostname", "", "host name in greetings (default: the OS host name)")
	fs.Int64Var(&f.maxMessage, "max-message-bytes", 32<<20, "largest message accepted")
	fs.Uint64Var(&f.cfg.Store.TrailingLogs, "trailing-logs", 0, "raft entries kept after a snapshot (default 1024)")
	fs.Uint64Var(&f.cfg.Store.SnapshotThreshold, "snapshot-threshold", 0, "raft entries between snapshots (default 4096)")
	fs.DurationVar(&f.cfg.Store.SnapshotInterval, "snapshot-interval", 0, "how often snapshot triggers are checked (default 1s)")
	fs.Int64Var(&f.cfg.Store.SnapshotBytes, "snapshot-bytes", 0, "log bytes between snapshots (default 256 MiB)")
	fs.IntVar(&f.cfg.Store.SnapshotStatePercent, "snapshot-state-percent", 0, "no snapshot before the log since the last one holds this percentage of the state it copied (default 50; -1: off)")
	fs.DurationVar(&f.cfg.Store.HeartbeatTimeout, "heartbeat-timeout", 0, "raft heartbeat timeout (default 1s)")
	fs.DurationVar(&f.cfg.Store.ElectionTimeout, "election-timeout", 0, "raft election timeout (default 1s)")
	fs.DurationVar(&f.cfg.Store.LeaderLease, "leader-lease", 0, "raft leader lease (default 500ms)")
	fs.Int64Var(&f.cfg.Store.BodyCacheBytes, "body-cache-bytes", 64<<20, "memory for decompressed bodies that IMAP, POP3 and SEARCH reread (negative: off)")
	fs.BoolVar(&f.cfg.Store.StateSyncPerBatch, "state-sync-per-batch", false, "fsync the state file at every apply batch (default: synced at shutdown, rebuilt from snapshot + log after a machine restart that followed an unclean stop; docs/storage.md)")
	fs.IntVar(&f.imapMaxConns, "imap-max-conns", 0, "IMAP connections in all (default 2000)")
	fs.IntVar(&f.imapMaxConnsPerIP, "imap-max-conns-per-ip", 0, "IMAP connections per client IP (default 50)")
	fs.IntVar(&f.lmtpMaxConns, "lmtp-max-conns", 0, "LMTP connections in all (default 256)")
	fs.IntVar(&f.lmtpMaxConnsPerIP, "lmtp-max-conns-per-ip", 0, "LMTP connections per client IP (default 64; an MTA in front opens up to its process limit)")
	f.logs.register(fs)
	f.outbound.register(fs)
	f.ops.register(fs)
	if err := parseWithConfig(fs, args); err != nil {
		return nil, err
	}
	f.cfg.Join = join
	for name, v := range map[string]int{"imap-max-conns": f.imapMaxConns, "imap-max-conns-per-ip": f.imapMaxConnsPerIP,
		"lmtp-max-conns": f.lmtpMaxConns, "lmtp-max-conns-per-ip": f.lmtpMaxConnsPerIP} {
		if v < 0 {
			return nil, fmt.Errorf("--%s: %d is negative (0: the default)", name, v)
		}
	}
	if f.hostname == "" {
		f.hostname, _ = os.Hostname()
	}
	return f, nil
}

func runNode(args []string) error {
	f, err := parseNodeFlags(args)
	if err != nil {
		return err
	}
	logger, err := f.ops.logger(&f.logs, os.Stderr)
	if err != nil {
		return err
	}
	defer f.ops.close()
	f.cfg.Logger = logger
	f.cfg.Store.MaxBodyBytes = f.maxMessage + 1<<20
	if err := f.ops.apply(&f.cfg); err != nil {
		return err
	}
	n, err := cluster.Open(f.cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	logger.Info("node started", "node", f.cfg.ID, "raft", f.cfg.RaftAddr, "api", n.APIURL(), "pid", os.Getpid())

	var closers []func() error
	stopOutbound, err := f.outbound.start(n, f.hostname, logger)
	if err != nil {
		return err
	}
	closers = append(closers, stopOutbound)
	errs := make(chan error, 8)
	if err := f.ops.serve(n, errs, logger); err != nil {
		return err
	}
	if f.lmtpAddr != "" {
		srv := lmtp.New(lmtp.Config{Hostname: f.hostname, MaxMessageBytes: f.maxMessage,
			MaxConnections: f.lmtpMaxConns, MaxConnectionsPerIP: f.lmtpMaxConnsPerIP,
			CommitTimeout: f.cfg.CommitTimeout, Logger: logger, Observer: f.ops.sessions}, n)
		if err := serveOn(f.lmtpAddr, "lmtp", f.ops.count("lmtp", srv.Serve), errs, logger); err != nil {
			return err
		}
		closers = append(closers, srv.Close)
	}
	more, err := startReaders(f, n, logger, errs)
	closers = append(closers, more...)
	if err != nil {
		for _, c := range closers {
			_ = c()
		}
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
		logger.Info("signal received, shutting down")
	case err := <-errs:
		logger.Error("listener failed", "err", err)
	}
	for _, c := range closers {
		_ = c()
	}
	return n.Close()
}

// serveOn listens on addr and serves in the background; errors go to errs.
func serveOn(addr, name string, serve func(net.Listener) error, errs chan<- error, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s listen %s: %w", name, addr, err)
	}
	logger.Info("listening", "proto", name, "addr", ln.Addr().String())
	go func() {
		if err := serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
			errs <- fmt.Errorf("%s: %w", name, err)
		}
	}()
	return nil
}
