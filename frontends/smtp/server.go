package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/frontends"
)

// Server is one SMTP frontend: one go-smtp server behind any number of
// listeners (plain with STARTTLS via Serve, implicit TLS via ServeTLS).
type Server struct {
	cfg       Config
	committer frontends.Committer
	auth      Authenticator
	pipeline  atomic.Pointer[filters.Pipeline] // swapped by SetPipeline (reload.go)
	tls       *tls.Config
	smtp      *smtp.Server
	logger    *slog.Logger
	limits    *connLimits
	throttle  *authThrottle

	ctx    context.Context
	cancel context.CancelFunc
	seq    atomic.Uint64
}

// New returns a server that commits through committer and runs pipeline
// (nil: no filters). For the submission profile the committer must
// implement Authenticator unless cfg.Authenticator is set.
func New(cfg Config, committer frontends.Committer, pipeline *filters.Pipeline) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tlsCfg, err := cfg.loadTLS()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, committer: committer, tls: tlsCfg,
		logger:   cfg.Logger.With("proto", "smtp", "profile", string(cfg.Profile)),
		limits:   &connLimits{max: cfg.MaxConnections, perIP: cfg.MaxConnectionsPerIP, byIP: make(map[netip.Addr]int)},
		throttle: newAuthThrottle(cfg.AuthFailureDelay, cfg.AuthFailureMaxDelay)}
	s.pipeline.Store(pipeline)
	s.auth = cfg.Authenticator
	if s.auth == nil {
		s.auth, _ = committer.(Authenticator)
	}
	if cfg.Profile == ProfileSubmission && s.auth == nil {
		return nil, errors.New("submission profile needs an authenticator")
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Network = "tcp"
	srv.Domain = cfg.Hostname
	srv.TLSConfig = tlsCfg
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = cfg.MaxLineLength
	srv.ReadTimeout = cfg.IdleTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true // parameters accepted (RFC 3461); no DSNs are generated yet
	// AUTH is offered per session (AuthMechanisms): never on the MX
	// profile, and on submission only over TLS or, in dev mode, loopback.
	srv.AllowInsecureAuth = cfg.Profile == ProfileSubmission
	srv.ErrorLog = slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn)
	s.smtp = srv
	return s, nil
}

// Serve accepts SMTP connections on ln (STARTTLS offered when TLS is
// configured) until Close.
func (s *Server) Serve(ln net.Listener) error {
	return s.serve(s.newGate(ln, nil))
}

// ServeTLS accepts implicit-TLS connections (port 465 style, RFC 8314 §3.3)
// on ln until Close.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.tls == nil {
		return errors.New("implicit TLS needs a certificate")
	}
	// go-smtp recognises TLS by a type assertion on *tls.Conn, so TLS must
	// be the outermost layer.
	return s.serve(tls.NewListener(s.newGate(ln, s.tls), s.tls))
}

func (s *Server) serve(ln net.Listener) error {
	err := s.smtp.Serve(ln)
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) || s.ctx.Err() != nil {
		return nil
	}
	return err
}

// Close stops the listeners and ends every session. Nothing is lost: a
// message whose commit was cut short was not acknowledged.
func (s *Server) Close() error {
	s.cancel()
	return s.smtp.Close()
}

func (s *Server) proxyTrusted(ip netip.Addr) bool {
	for _, p := range s.cfg.ProxyTrusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// newSession runs at EHLO/HELO (go-smtp creates the session then, not at
// connect; the connect stage ran in the gate).
func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	gc := unwrapConn(c.Conn())
	if gc == nil {
		return nil, fmt.Errorf("connection not admitted through the gate")
	}
	ss := &session{s: s, conn: c, gc: gc, helo: c.Hostname(),
		logger: s.logger.With("conn", gc.id, "remote", c.Conn().RemoteAddr().String())}
	if st, ok := c.TLSConnectionState(); ok {
		gc.info.TLS = &st
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.LookupTimeout)
	defer cancel()
	if v := gc.filters.Helo(ctx, ss.helo); v.Action >= filters.TempFail {
		return nil, verdictError(v, filters.StageHelo)
	}
	return ss, nil
}
