// Package lmtp serves LMTP (RFC 2033) on a mailbox node, so Postfix or any
// MTA can deliver into the cluster. Each recipient gets its own reply, and a
// 250 is written only after the delivery is committed on a majority and
// applied on the leader (DESIGN.md invariant 1).
package lmtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/frontends/smtputil"
	"github.com/raftmail/raftmail/raftstore"
)

// Config configures the LMTP server.
type Config struct {
	// Hostname is announced in the greeting (default "localhost").
	Hostname string
	// MaxMessageBytes bounds a message (default 32 MiB).
	MaxMessageBytes int64
	// MaxRecipients per transaction (default 100).
	MaxRecipients int
	// MaxLineLength bounds command and body lines (default 64 KiB).
	MaxLineLength int
	// MaxConnections in total and per client IP (defaults 256 and 64).
	MaxConnections      int
	MaxConnectionsPerIP int
	// ReadTimeout bounds a command and the whole DATA phase (default 10m);
	// WriteTimeout a reply (default 1m).
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// CommitTimeout bounds the commit before 451 4.3.0 (default 30s).
	CommitTimeout time.Duration
	Logger        *slog.Logger
	// Observer counts the reply of each recipient (observe.go); nil: none.
	Observer frontends.DeliveryObserver
}

func (c *Config) setDefaults() {
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 32 << 20
	}
	if c.MaxRecipients == 0 {
		c.MaxRecipients = 100
	}
	if c.MaxLineLength == 0 {
		c.MaxLineLength = 64 << 10
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = 256
	}
	if c.MaxConnectionsPerIP == 0 {
		c.MaxConnectionsPerIP = 64
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 10 * time.Minute
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = time.Minute
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Server is an LMTP server bound to one node.
type Server struct {
	cfg    Config
	store  frontends.Committer
	smtp   *smtp.Server
	logger *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	seq    atomic.Uint64
}

// New returns a server delivering through store.
func New(cfg Config, store frontends.Committer) *Server {
	cfg.setDefaults()
	s := &Server{cfg: cfg, store: store, logger: cfg.Logger.With("proto", "lmtp")}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.LMTP = true
	srv.Network = "tcp"
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = cfg.MaxLineLength
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn)
	s.smtp = srv
	return s
}

// Serve accepts connections on ln until Close.
func (s *Server) Serve(ln net.Listener) error {
	ll := frontends.NewLimitListener(ln, s.cfg.MaxConnections, s.cfg.MaxConnectionsPerIP, func(c net.Conn) {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "421 4.7.0 %s too many connections, try again later\r\n", s.cfg.Hostname)
	})
	err := s.smtp.Serve(ll)
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the server and ends its sessions.
func (s *Server) Close() error {
	s.cancel()
	return s.smtp.Close()
}

// session is one LMTP transaction context (reset by RSET and LHLO).
type session struct {
	s      *Server
	conn   *smtp.Conn
	id     uint64
	logger *slog.Logger
	from   string
	rcpts  []string
}

var _ smtp.LMTPSession = (*session)(nil)

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	id := s.seq.Add(1)
	return &session{s: s, conn: c, id: id,
		logger: s.logger.With("conn", id, "remote", c.Conn().RemoteAddr().String())}, nil
}

func (ss *session) Reset() {
	ss.from = ""
	ss.rcpts = nil
}

func (ss *session) Logout() error { return nil }

// Mail records the reverse path. RFC 2033 §4.2, RFC 5321 §4.1.1.2.
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if from != "" {
		if _, err := raftstore.NormalizeAddress(from); err != nil {
			return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Malformed sender address"}
		}
	}
	ss.from = from
	return nil
}

// Rcpt checks the recipient against the local directory. RFC 5321
// §4.1.1.3; replies per RFC 3463.
func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	ctx, cancel := context.WithTimeout(ss.s.ctx, 10*time.Second)
	defer cancel()
	d, err := ss.s.store.LookupRecipient(ctx, to)
	if err != nil {
		if errors.Is(err, raftstore.ErrInvalid) {
			return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Malformed recipient address"}
		}
		ss.logger.Warn("directory lookup failed", "rcpt", to, "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Directory unavailable, try again later"}
	}
	switch {
	case !d.Local:
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 2}, Message: "Domain not served here"}
	case d.Account == "":
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	case d.OverQuota:
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "Mailbox full"}
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

// Data is required by smtp.Session; LMTP uses LMTPData.
func (ss *session) Data(r io.Reader) error {
	return ss.LMTPData(r, nil)
}

// LMTPData reads the message, commits one delivery for all accepted
// recipients and reports each recipient's outcome. RFC 2033 §4.2.
func (ss *session) lmtpData(r io.Reader, status smtp.StatusCollector) error {
	start := time.Now()
	raw, err := readMessage(r, ss.from)
	if err != nil {
		return err
	}
	cmd, err := frontends.NewDeliver(ss.s.store.Codec(), frontends.Envelope{From: ss.from, Rcpts: ss.rcpts}, raw)
	if err != nil {
		ss.logger.Error("build delivery", "err", err)
		return errTemp
	}
	ctx, cancel := context.WithTimeout(ss.s.ctx, ss.s.cfg.CommitTimeout)
	defer cancel()
	res, err := frontends.CommitDeliver(ctx, ss.s.store, cmd)
	log := ss.logger.With("delivery_id", cmd.Key, "from", ss.from, "rcpts", len(ss.rcpts), "size", len(raw),
		"ms", time.Since(start).Milliseconds())
	if err != nil {
		log.Warn("delivery not committed", "err", err)
		if errors.Is(err, raftstore.ErrTooLarge) {
			return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too big for the store"}
		}
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Cluster cannot commit right now, try again later"}
	}
	if err := res.Err(); err != nil {
		log.Warn("delivery refused by store", "err", err, "raft_index", res.Index)
		return rcptError(err)
	}
	ok := 0
	for i, rr := range res.Rcpts {
		err := rcptError(rr.Status.Err())
		if err == nil {
			ok++
		}
		if status != nil && i < len(ss.rcpts) {
			status.SetStatus(ss.rcpts[i], err)
		}
	}
	log.Info("delivered", "raft_index", res.Index, "accepted", ok, "duplicate", res.Duplicate)
	if status == nil && ok == 0 {
		return rcptError(res.Rcpts[0].Status.Err())
	}
	return nil
}

var errTemp = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local error, try again later"}

// rcptError maps a store outcome to a per-recipient reply.
func rcptError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raftstore.ErrNoSuchUser), errors.Is(err, raftstore.ErrNoSuchDomain):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	case errors.Is(err, raftstore.ErrQuotaExceeded):
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "Mailbox full"}
	case errors.Is(err, raftstore.ErrInvalid):
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message refused: " + err.Error()}
	}
	return errTemp
}

// readMessage reads the DATA body under the store's rules with the
// Return-Path header of final delivery (RFC 5321 §4.4) in front.
func readMessage(r io.Reader, from string) ([]byte, error) {
	return smtputil.ReadMessage(r, "Return-Path: <"+from+">\r\n")
}
