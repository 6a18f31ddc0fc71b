package main

import (
	"log/slog"

	"github.com/raftmail/raftmail/cluster"
)

// startReaders starts the IMAP and POP3 servers of a node when configured.
func startReaders(f *nodeFlags, n *cluster.Node, logger *slog.Logger, errs chan<- error) ([]func() error, error) {
	if f.imapAddr != "" || f.pop3Addr != "" {
		logger.Warn("IMAP and POP3 are not wired into this build yet; ignoring --imap/--pop3")
	}
	return nil, nil
}
