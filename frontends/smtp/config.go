// Package smtp is the stateless SMTP frontend (DESIGN.md "filtering
// farm"): an MX profile for mail from the Internet and a submission profile
// for authenticated users. It answers 250 to DATA only once the message is
// committed in the Raft log (DESIGN.md invariant 1) and keeps no state on
// disk: killing a frontend at any moment loses nothing acknowledged.
package smtp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/raftmail/raftmail/frontends"
)

// Profile selects the frontend's role.
type Profile string

const (
	// ProfileMX accepts mail for local domains from anyone, without AUTH,
	// and runs the full filter pipeline.
	ProfileMX Profile = "mx"
	// ProfileSubmission requires AUTH (RFC 6409) before MAIL and checks
	// that the user owns the sender address.
	ProfileSubmission Profile = "submission"
)

// Config configures a Server. Durations are wall-clock limits.
type Config struct {
	// Profile is mx or submission (flag --profile).
	Profile Profile
	// Hostname is announced in the greeting and the Received header
	// (default: "localhost").
	Hostname string
	// Dev allows AUTH on plain-text connections from loopback (raftmail
	// dev); never set it in production.
	Dev bool

	// TLSConfig enables STARTTLS and ServeTLS. If nil and CertFile and
	// KeyFile are set (flags --tls-cert, --tls-key), they are loaded.
	TLSConfig *tls.Config
	CertFile  string
	KeyFile   string

	// MaxMessageBytes bounds a message: advertised as SIZE, checked
	// against MAIL SIZE= and while DATA/BDAT arrive (552 5.3.4; default
	// 32 MiB).
	MaxMessageBytes int64
	// MaxRecipients per message (452 4.5.3; default 100).
	MaxRecipients int
	// MaxLineLength bounds any line, command or body; a longer one closes
	// the connection with 500 (default 64 KiB: body lines longer than
	// RFC 5322's 998 are common in real mail). Paths are separately
	// limited to 256 octets (RFC 5321 §4.5.3.1.3).
	MaxLineLength int
	// MaxConnections in total and per client IP (421 4.7.0; defaults
	// 1000 and 20).
	MaxConnections      int
	MaxConnectionsPerIP int
	// MaxFailedCommands is how many refused commands a connection may
	// send before it is closed with 421 4.7.0 (default 10).
	MaxFailedCommands int

	// IdleTimeout bounds the wait for each command, and for the whole
	// DATA phase from the DATA line (go-smtp's ReadTimeout; default 5m,
	// RFC 5321 §4.5.3.2.7).
	IdleTimeout time.Duration
	// WriteTimeout bounds each reply; a client that stops reading is
	// disconnected after it (default 1m).
	WriteTimeout time.Duration
	// SessionTimeout bounds a whole connection (default 30m).
	SessionTimeout time.Duration
	// CommitTimeout bounds the commit of one message before 451 4.3.0
	// (flag --commit-timeout; default 30s).
	CommitTimeout time.Duration
	// LookupTimeout bounds a directory or AUTH lookup (default 10s).
	LookupTimeout time.Duration

	// AuthFailureDelay is the delay before answering the first failed AUTH
	// from an IP; it doubles with each further failure up to
	// AuthFailureMaxDelay (defaults 1s and 30s). Failures are forgotten
	// after 15 minutes without one.
	AuthFailureDelay    time.Duration
	AuthFailureMaxDelay time.Duration

	// ProxyTrusted lists the load balancers whose PROXY protocol v1/v2
	// header (flag --proxy-from) is trusted. A connection from them must
	// start with one; from anyone else a header is never trusted (it is an
	// unknown command). Empty disables the PROXY protocol.
	ProxyTrusted []netip.Prefix
	// ProxyHeaderTimeout bounds the wait for the PROXY header (default 5s).
	ProxyHeaderTimeout time.Duration

	// Authenticator verifies AUTH for submission; if nil, the committer
	// passed to New is used when it implements Authenticator.
	Authenticator Authenticator
	Logger        *slog.Logger
	// Observer counts the reply to each DATA (observe.go); nil: none.
	Observer frontends.DeliveryObserver
}

func (c *Config) setDefaults() {
	if c.Profile == "" {
		c.Profile = ProfileMX
	}
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 32 << 20
	}
	def(&c.MaxRecipients, 100)
	def(&c.MaxLineLength, 64<<10)
	def(&c.MaxConnections, 1000)
	def(&c.MaxConnectionsPerIP, 20)
	def(&c.MaxFailedCommands, 10)
	defd(&c.IdleTimeout, 5*time.Minute)
	defd(&c.WriteTimeout, time.Minute)
	defd(&c.SessionTimeout, 30*time.Minute)
	defd(&c.CommitTimeout, 30*time.Second)
	defd(&c.LookupTimeout, 10*time.Second)
	defd(&c.AuthFailureDelay, time.Second)
	defd(&c.AuthFailureMaxDelay, 30*time.Second)
	defd(&c.ProxyHeaderTimeout, 5*time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports a configuration that cannot work. It applies defaults
// first.
func (c *Config) Validate() error {
	c.setDefaults()
	var errs []error
	if c.Profile != ProfileMX && c.Profile != ProfileSubmission {
		errs = append(errs, fmt.Errorf("profile %q: want mx or submission", c.Profile))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("TLS needs both a certificate and a key file"))
	}
	if c.MaxMessageBytes < 0 || c.MaxRecipients < 0 || c.MaxLineLength < 512 || c.MaxConnections < 0 ||
		c.MaxConnectionsPerIP < 0 || c.MaxFailedCommands < 0 {
		errs = append(errs, errors.New("limits must be positive (line length at least 512)"))
	}
	for _, d := range []time.Duration{c.IdleTimeout, c.WriteTimeout, c.SessionTimeout, c.CommitTimeout, c.LookupTimeout} {
		if d < 0 {
			errs = append(errs, errors.New("timeouts must be positive"))
			break
		}
	}
	return errors.Join(errs...)
}

// loadTLS returns the TLS configuration, loading the key pair if needed.
func (c *Config) loadTLS() (*tls.Config, error) {
	if c.TLSConfig != nil {
		return c.TLSConfig, nil
	}
	if c.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
