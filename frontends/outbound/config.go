// Package outbound is the delivery service of the outbound queue: it runs
// on the Raft leader only, takes due messages from the replicated queue,
// finds each domain's mail exchangers, delivers over SMTP (opportunistic
// STARTTLS, DKIM-signed), records every attempt and outcome as a command,
// retries with growing intervals and returns delivery status notifications
// (RFC 3464) into the sender's INBOX. See docs/outbound.md.
//
// It lives under frontends/ because it speaks SMTP (go-smtp types stay in
// frontends/, STYLE.md §12) and reaches the store only through a small
// consumer interface, like the other protocol code that runs on a node.
package outbound

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
)

// Config configures a Service. Zero values take the defaults noted.
type Config struct {
	// Hostname is sent in EHLO and names us in DSNs (required).
	Hostname string
	// Node names this node in attempt claims (required).
	Node string
	// IsLeader reports whether this node leads; the service works only
	// while it does (required).
	IsLeader func() bool
	// Resolver is the DNS server, host:port (default: the first server
	// of /etc/resolv.conf).
	Resolver string
	// Port is the remote SMTP port (default 25; tests point elsewhere).
	Port int
	// Now is the clock (default time.Now); tests inject their own.
	Now func() time.Time

	// RetryBase is the first retry interval, doubled on every further
	// temporary failure up to RetryMax (defaults 5m and 4h); MaxAge is how
	// long a message may stay queued before it bounces (default 5 days).
	RetryBase time.Duration
	RetryMax  time.Duration
	MaxAge    time.Duration
	// ClaimTTL is how long an attempt owns its recipients before another
	// may take them (default 15m); a new leader takes over at once.
	ClaimTTL time.Duration
	// PollInterval is how often the queue is looked at without a change
	// (default 1s); LeaderPoll how often leadership is checked (250ms).
	PollInterval time.Duration
	LeaderPoll   time.Duration

	// Timeouts: TCP connect (30s), each SMTP command and the greeting
	// (5m, RFC 5321 §4.5.3.2), the reply to the final dot (10m), and one
	// DNS question (5s).
	ConnectTimeout time.Duration
	CommandTimeout time.Duration
	DataTimeout    time.Duration
	DNSTimeout     time.Duration

	// PerDomainConns bounds concurrent connections to one domain
	// (default 4), MaxConns in total (default 100). BatchSize is how many
	// messages one attempt claims (default 32); MaxMessagesPerConn how
	// many transactions reuse a connection (default 100).
	PerDomainConns     int
	MaxConns           int
	BatchSize          int
	MaxMessagesPerConn int
	// MaxMXAddrs bounds the addresses tried for one domain (default 10),
	// however many MX records it publishes.
	MaxMXAddrs int
	// MaxReturnBytes bounds the original message returned in a DSN with
	// RET=FULL; beyond it only the headers are returned (default 1 MiB).
	MaxReturnBytes int
	// TLSConfig is used for STARTTLS (default: no certificate checks —
	// opportunistic TLS, RFC 7435).
	TLSConfig *tls.Config

	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Port, 25)
	if c.Now == nil {
		c.Now = time.Now
	}
	defd(&c.RetryBase, 5*time.Minute)
	defd(&c.RetryMax, 4*time.Hour)
	defd(&c.MaxAge, 5*24*time.Hour)
	defd(&c.ClaimTTL, 15*time.Minute)
	defd(&c.PollInterval, time.Second)
	defd(&c.LeaderPoll, 250*time.Millisecond)
	defd(&c.ConnectTimeout, 30*time.Second)
	defd(&c.CommandTimeout, 5*time.Minute)
	defd(&c.DataTimeout, 10*time.Minute)
	defd(&c.DNSTimeout, 5*time.Second)
	def(&c.PerDomainConns, 4)
	def(&c.MaxConns, 100)
	def(&c.BatchSize, 32)
	def(&c.MaxMessagesPerConn, 100)
	def(&c.MaxMXAddrs, 10)
	def(&c.MaxReturnBytes, 1<<20)
	if c.TLSConfig == nil {
		c.TLSConfig = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // opportunistic
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate applies defaults and checks the configuration.
func (c *Config) Validate() error {
	c.setDefaults()
	var errs []error
	if c.Hostname == "" || c.Node == "" || c.IsLeader == nil {
		errs = append(errs, errors.New("outbound: hostname, node and IsLeader are required"))
	}
	if c.RetryBase > c.RetryMax {
		errs = append(errs, errors.New("outbound: retry base exceeds retry max"))
	}
	return errors.Join(errs...)
}

// Metrics are the service's in-process counters (this node, since it
// started). The replicated counters are in raftstore.QueueStats.
type Metrics struct {
	Attempts    atomic.Uint64 // SMTP transactions tried
	Delivered   atomic.Uint64 // recipients accepted by the remote MTA
	Deferred    atomic.Uint64 // recipients failed temporarily
	Failed      atomic.Uint64 // recipients failed permanently (incl. expiry)
	DSNs        atomic.Uint64 // status notifications delivered to senders
	Signed      atomic.Uint64 // messages DKIM-signed
	Connects    atomic.Uint64 // SMTP connections opened
	Reused      atomic.Uint64 // transactions on a reused connection
	TLS         atomic.Uint64 // connections upgraded with STARTTLS
	Leaderships atomic.Uint64 // times this node's service started leading
}

// Snapshot returns the counters as a map (for JSON and exporters).
func (m *Metrics) Snapshot() map[string]uint64 {
	return map[string]uint64{
		"attempts": m.Attempts.Load(), "delivered": m.Delivered.Load(), "deferred": m.Deferred.Load(),
		"failed": m.Failed.Load(), "dsn": m.DSNs.Load(), "signed": m.Signed.Load(),
		"connects": m.Connects.Load(), "reused": m.Reused.Load(), "tls": m.TLS.Load(), "leaderships": m.Leaderships.Load(),
	}
}
