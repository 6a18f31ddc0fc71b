package main

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/filters/bayes"
	"github.com/raftmail/raftmail/frontends/imap"
	"github.com/raftmail/raftmail/frontends/pop3"
)

// startReaders starts the IMAP and POP3 servers of a node when configured.
// The returned closers must run before the node closes, so sessions can
// still release their locks through the cluster.
func startReaders(f *nodeFlags, n *cluster.Node, logger *slog.Logger, errs chan<- error) ([]func() error, error) {
	tlsCfg, err := loadTLS(f.tlsCert, f.tlsKey, f.cfg.Dev, filepath.Join(f.cfg.DataDir, "tls"))
	if err != nil {
		return nil, err
	}
	var closers []func() error
	if f.pop3Addr != "" || f.pop3sAddr != "" {
		srv, err := pop3.New(pop3.Config{TLSConfig: tlsCfg, AllowInsecureAuth: f.cfg.Dev,
			CommitTimeout: f.cfg.CommitTimeout, Logger: logger}, n)
		if err != nil {
			return nil, fmt.Errorf("pop3: %w", err)
		}
		closers = append(closers, srv.Close)
		if f.pop3Addr != "" {
			if err := serveOn(f.pop3Addr, "pop3", f.ops.count("pop3", srv.Serve), errs, logger); err != nil {
				return closers, err
			}
		}
		if f.pop3sAddr != "" {
			if err := serveOn(f.pop3sAddr, "pop3s", f.ops.count("pop3", srv.ServeTLS), errs, logger); err != nil {
				return closers, err
			}
		}
	}
	if f.imapAddr != "" || f.imapsAddr != "" {
		srv, err := imap.New(imap.Config{TLS: tlsCfg, InsecureAuth: f.cfg.Dev,
			CommandTimeout: f.cfg.CommitTimeout, MaxConns: f.imapMaxConns, MaxConnsPerIP: f.imapMaxConnsPerIP,
			Logger: logger, JunkTrainer: bayes.NewLearner(n, logger)}, n)
		if err != nil {
			return closers, fmt.Errorf("imap: %w", err)
		}
		closers = append(closers, srv.Close)
		if f.imapAddr != "" {
			if err := serveOn(f.imapAddr, "imap", f.ops.count("imap", srv.Serve), errs, logger); err != nil {
				return closers, err
			}
		}
		if f.imapsAddr != "" {
			if err := serveOn(f.imapsAddr, "imaps", f.ops.count("imap", srv.ServeTLS), errs, logger); err != nil {
				return closers, err
			}
		}
	}
	return closers, nil
}
