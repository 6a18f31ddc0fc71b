// Package imap is raftmail's IMAP server (RFC 9051 IMAP4rev2 and RFC 3501
// IMAP4rev1) on go-imap v2's imapserver. It runs on every mailbox node,
// reads the node's local replica and sends writes through the leader with
// read-your-writes. Unsolicited updates (EXISTS, EXPUNGE, FETCH FLAGS) come
// from the node's apply feed, so IDLE sees changes made on any node. See
// DESIGN.md beside this file.
package imap

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config configures the IMAP server. Zero values take the defaults noted.
type Config struct {
	// Addr is the plain listener (STARTTLS offered when TLS is set), e.g.
	// ":143"; empty disables it. Used by ListenAndServe only.
	Addr string
	// TLSAddr is the implicit-TLS listener, e.g. ":993"; empty disables it.
	// Needs TLS. Used by ListenAndServe only.
	TLSAddr string
	// TLS is the certificate configuration for STARTTLS and implicit TLS.
	TLS *tls.Config
	// InsecureAuth allows LOGIN/AUTHENTICATE without TLS, but only from
	// loopback peers (dev mode): a remote peer is still refused with
	// NO [PRIVACYREQUIRED].
	InsecureAuth bool

	// CommandTimeout bounds each write (a proposal through the leader and
	// the wait for its local apply); past it the client gets NO
	// [UNAVAILABLE] (default 30s).
	CommandTimeout time.Duration
	// MaxAppendSize is the largest APPEND literal in bytes, advertised as
	// APPENDLIMIT (default 32 MiB). Larger literals get NO [TOOBIG].
	MaxAppendSize uint32
	// MaxConns bounds concurrent connections; more are greeted with BYE
	// (default 2000).
	MaxConns int
	// MaxConnsPerIP bounds concurrent connections from one address
	// (default 50).
	MaxConnsPerIP int
	// MaxFetchBodyBytes bounds the decompressed bytes one FETCH or SEARCH
	// may hold at once per message (default 64 MiB; the store's own body
	// limit applies as well).
	MaxFetchBodyBytes int64

	// AuthDelay is the delay after the first failed login from an IP or
	// for an account; it doubles with each further failure up to
	// AuthMaxDelay (defaults 250ms and 8s). Failures are forgotten after
	// AuthWindow without one (default 10m).
	AuthDelay    time.Duration
	AuthMaxDelay time.Duration
	AuthWindow   time.Duration

	// Logger receives structured logs (default slog.Default()). Passwords
	// and bodies are never logged.
	Logger *slog.Logger

	// JunkTrainer, when set, learns from users moving or copying
	// messages into the Junk mailbox (spam) or out of it (ham); it is
	// called after the command committed (filters/bayes.Learner).
	JunkTrainer JunkTrainer
}

// JunkTrainer is told which messages a user judged: uids are their UIDs
// in mailboxID, where they now are. It must not block.
type JunkTrainer interface {
	JunkMoved(account string, mailboxID uint64, uids []uint32, spam bool)
}

func (c *Config) setDefaults() {
	if c.CommandTimeout == 0 {
		c.CommandTimeout = 30 * time.Second
	}
	if c.MaxAppendSize == 0 {
		c.MaxAppendSize = 32 << 20
	}
	if c.MaxConns == 0 {
		c.MaxConns = 2000
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = 50
	}
	if c.MaxFetchBodyBytes == 0 {
		c.MaxFetchBodyBytes = 64 << 20
	}
	if c.AuthDelay == 0 {
		c.AuthDelay = 250 * time.Millisecond
	}
	if c.AuthMaxDelay == 0 {
		c.AuthMaxDelay = 8 * time.Second
	}
	if c.AuthWindow == 0 {
		c.AuthWindow = 10 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate checks the configuration (after defaults).
func (c *Config) Validate() error {
	if c.TLSAddr != "" && c.TLS == nil {
		return errors.New("imap: TLSAddr needs a TLS configuration")
	}
	if c.CommandTimeout < 0 || c.AuthDelay < 0 || c.AuthMaxDelay < c.AuthDelay || c.AuthWindow < 0 {
		return errors.New("imap: negative timeout or AuthMaxDelay below AuthDelay")
	}
	if c.MaxConns < 0 || c.MaxConnsPerIP < 0 || c.MaxFetchBodyBytes < 0 {
		return fmt.Errorf("imap: negative limit")
	}
	if c.TLS == nil && !c.InsecureAuth {
		return errors.New("imap: without TLS, InsecureAuth (loopback dev mode) is needed or no one can log in")
	}
	return nil
}
