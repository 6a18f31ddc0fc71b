package pop3

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config configures a POP3 Server. Zero values take the defaults noted.
type Config struct {
	// Listen is the address ListenAndServe binds for plain POP3 with STLS
	// (e.g. ":110"); Serve takes a listener instead.
	Listen string
	// ListenTLS is the address ListenAndServe binds for implicit TLS
	// (995-style, e.g. ":995"); it needs TLSConfig.
	ListenTLS string
	// TLSConfig enables STLS on plain listeners and is required by
	// ServeTLS. Nil means no TLS at all.
	TLSConfig *tls.Config
	// AllowInsecureAuth permits USER/PASS and AUTH without TLS from
	// loopback clients only (raftmail dev); remote clients always need TLS.
	AllowInsecureAuth bool
	// Greeting is the text after "+OK " in the banner (default
	// "raftmail POP3 server ready").
	Greeting string

	// IdleTimeout ends a session that sends nothing for this long (default
	// 10m, the minimum RFC 1939 §3 allows for the autologout timer). It also
	// bounds each write, so a client that stops reading cannot pin a
	// session.
	IdleTimeout time.Duration
	// MaxLineLength bounds a command line in octets including CRLF
	// (default 255, RFC 2449 §4). Longer lines get -ERR.
	MaxLineLength int
	// MaxAuthLineLength bounds a SASL continuation line (default 4096).
	MaxAuthLineLength int
	// MaxBadLines is how many overlong or malformed lines a session may
	// send before it is closed (default 20).
	MaxBadLines int
	// MaxCommands bounds the commands of one session (default 100000).
	MaxCommands int
	// MaxAuthFailures is how many failed logins one connection may make
	// before it is closed (default 3).
	MaxAuthFailures int
	// MaxSessions bounds concurrent sessions of one Server (default 10000);
	// connections above it get -ERR [SYS/TEMP] and are closed.
	MaxSessions int

	// LoginFailDelay is the delay before answering the first failed login
	// from an IP; it doubles with each further failure, up to
	// LoginFailMaxDelay (defaults 1s and 15s).
	LoginFailDelay    time.Duration
	LoginFailMaxDelay time.Duration
	// LoginFailLimit is how many failed logins an IP may make within
	// LoginFailWindow before further logins from it are refused with
	// [LOGIN-DELAY] until the window passes (defaults 20 and 15m).
	LoginFailLimit  int
	LoginFailWindow time.Duration

	// LeaseTTL is the lifetime of the cluster-wide maildrop lock (default
	// 60s); it is renewed every LeaseTTL/3 while the session lives, so a
	// dead node's lock frees itself after at most LeaseTTL.
	LeaseTTL time.Duration
	// CommitTimeout bounds each write through the leader (default 30s).
	CommitTimeout time.Duration
	// SizeCacheEntries bounds the cache of on-the-wire sizes per body
	// (default 65536).
	SizeCacheEntries int

	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Greeting == "" {
		c.Greeting = "raftmail POP3 server ready"
	}
	def(&c.IdleTimeout, 10*time.Minute)
	defInt(&c.MaxLineLength, 255)
	defInt(&c.MaxAuthLineLength, 4096)
	defInt(&c.MaxBadLines, 20)
	defInt(&c.MaxCommands, 100000)
	defInt(&c.MaxAuthFailures, 3)
	defInt(&c.MaxSessions, 10000)
	def(&c.LoginFailDelay, time.Second)
	def(&c.LoginFailMaxDelay, 15*time.Second)
	defInt(&c.LoginFailLimit, 20)
	def(&c.LoginFailWindow, 15*time.Minute)
	def(&c.LeaseTTL, 60*time.Second)
	def(&c.CommitTimeout, 30*time.Second)
	defInt(&c.SizeCacheEntries, 65536)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports a configuration that cannot work. It expects defaults
// to have been applied (New does both).
func (c *Config) Validate() error {
	var errs []error
	if c.MaxLineLength < 64 {
		errs = append(errs, fmt.Errorf("pop3: MaxLineLength %d is below 64", c.MaxLineLength))
	}
	if c.MaxAuthLineLength < c.MaxLineLength {
		errs = append(errs, fmt.Errorf("pop3: MaxAuthLineLength %d is below MaxLineLength", c.MaxAuthLineLength))
	}
	if c.IdleTimeout < time.Second {
		errs = append(errs, fmt.Errorf("pop3: IdleTimeout %v is below 1s", c.IdleTimeout))
	}
	if c.LeaseTTL < 300*time.Millisecond {
		errs = append(errs, fmt.Errorf("pop3: LeaseTTL %v is below 300ms", c.LeaseTTL))
	}
	if c.LoginFailMaxDelay < c.LoginFailDelay {
		errs = append(errs, errors.New("pop3: LoginFailMaxDelay is below LoginFailDelay"))
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"MaxBadLines", c.MaxBadLines}, {"MaxCommands", c.MaxCommands}, {"MaxAuthFailures", c.MaxAuthFailures},
		{"MaxSessions", c.MaxSessions}, {"LoginFailLimit", c.LoginFailLimit}, {"SizeCacheEntries", c.SizeCacheEntries}} {
		if v.n < 1 {
			errs = append(errs, fmt.Errorf("pop3: %s must be positive", v.name))
		}
	}
	if c.CommitTimeout <= 0 || c.LoginFailDelay < 0 || c.LoginFailWindow <= 0 {
		errs = append(errs, errors.New("pop3: timeouts must be positive"))
	}
	return errors.Join(errs...)
}
