package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// session is one IMAP connection. imapserver calls its methods one command
// at a time, except Idle (which runs concurrently with the DONE read) and
// the registry, which reads sel through selMu.
type session struct {
	srv    *Server
	conn   *imapserver.Conn
	cork   *corkConn // nil when the connection is not a corkConn (tests)
	id     string
	ip     string
	logger *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	account string // "" until authenticated

	selMu sync.Mutex
	sel   *selection

	closeOnce sync.Once
}

// selection is the selected mailbox of a session.
type selection struct {
	mb       *mbox
	st       *imapserver.SessionTracker
	name     string
	readOnly bool
	// searchRes is the saved SEARCH result (RFC 5182 SEARCHRES, "$").
	searchRes imap.UIDSet
}

var (
	_ imapserver.Session            = (*session)(nil)
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionSASL        = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)

func newSession(srv *Server, conn *imapserver.Conn, id, ip string) *session {
	ctx, cancel := context.WithCancel(srv.ctx)
	return &session{
		srv:    srv,
		conn:   conn,
		cork:   corkOf(conn.NetConn()),
		id:     id,
		ip:     ip,
		ctx:    ctx,
		cancel: cancel,
		logger: srv.logger.With("conn", id, "remote", conn.NetConn().RemoteAddr().String()),
	}
}

// Close implements imapserver.Session; it runs once when the connection
// ends.
func (s *session) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.unselect()
		s.srv.reg.removeSession(s)
		s.srv.leave(s.ip)
		s.logger.Debug("connection closed")
	})
	return nil
}

// bye ends the connection from another goroutine (registry). It runs
// asynchronously: writing the BYE may block behind a slow client's pending
// output, and the feed goroutine must never wait on one client.
func (s *session) bye(text string) {
	go func() { _ = s.conn.Bye(text) }()
}

// ---- authentication (RFC 9051 §6.2) ----

// Login implements LOGIN (RFC 9051 §6.2.3).
func (s *session) Login(user, pass string) error {
	if err := s.checkPrivacy(); err != nil {
		return err
	}
	return s.authenticate(user, pass)
}

// AuthenticateMechanisms implements imapserver.SessionSASL.
func (s *session) AuthenticateMechanisms() []string { return []string{sasl.Plain} }

// Authenticate implements AUTHENTICATE PLAIN (RFC 9051 §6.2.2, RFC 4616).
func (s *session) Authenticate(mech string) (sasl.Server, error) {
	if err := s.checkPrivacy(); err != nil {
		return nil, err
	}
	if mech != sasl.Plain {
		return nil, noCode(imap.ResponseCodeCannot, "Unsupported mechanism")
	}
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if identity != "" && identity != user {
			return imapserver.ErrAuthFailed
		}
		return s.authenticate(user, pass)
	}), nil
}

// checkPrivacy refuses clear-text credentials from a non-loopback peer
// without TLS, even when Config.InsecureAuth is on (dev mode is loopback
// only).
func (s *session) checkPrivacy() error {
	if _, ok := s.conn.NetConn().(*tls.Conn); ok || isLoopback(s.ip) {
		return nil
	}
	return noCode(imap.ResponseCodePrivacyRequired, "TLS is required to authenticate")
}

func (s *session) authenticate(user, pass string) error {
	th := s.srv.auth
	if d := th.delay(s.ip, user); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return imapserver.ErrAuthFailed
		}
	}
	account, err := s.srv.store.Authenticate(user, pass)
	if err != nil {
		th.failed(s.ip, user)
		if !errors.Is(err, raftstore.ErrAuthFailed) {
			s.logger.Warn("authentication error", "err", err)
		} else {
			s.logger.Info("authentication failed", "user", user)
		}
		return imapserver.ErrAuthFailed
	}
	th.succeeded(s.ip, user)
	s.account = account
	s.logger = s.logger.With("user", account)
	s.logger.Debug("authenticated")
	return nil
}

// ---- simple commands ----

// Namespace implements NAMESPACE (RFC 9051 §6.3.10): one personal
// namespace, "/" separated.
func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

// AppendLimit implements imapserver.SessionAppendLimit (RFC 7889).
func (s *session) AppendLimit() uint32 { return s.srv.cfg.MaxAppendSize }

// Unselect implements UNSELECT and CLOSE (RFC 9051 §6.4.2, §6.4.1); the
// server runs the CLOSE expunge itself through Expunge first.
func (s *session) Unselect() error {
	s.unselect()
	return nil
}

func (s *session) unselect() {
	s.selMu.Lock()
	sel := s.sel
	s.sel = nil
	s.selMu.Unlock()
	if sel != nil {
		sel.st.Close()
		s.srv.reg.release(sel.mb)
	}
}

// Poll implements imapserver.Session: pending updates come from the
// tracker, in memory.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	sel := s.selection()
	if sel == nil {
		return nil
	}
	return sel.st.Poll(w, allowExpunge)
}

// Idle implements IDLE (RFC 9051 §6.3.13): updates are pushed by the
// tracker as the feed applies them.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	sel := s.selection()
	if sel == nil {
		select {
		case <-stop:
		case <-s.ctx.Done():
		}
		return nil
	}
	return sel.st.Idle(w, stop)
}

func (s *session) selection() *selection {
	s.selMu.Lock()
	defer s.selMu.Unlock()
	return s.sel
}

// selectedBox is called by the registry (any goroutine).
func (s *session) selectedBox() *mbox {
	if sel := s.selection(); sel != nil {
		return sel.mb
	}
	return nil
}

// trackerFor returns the session's tracker if it has mb selected; called by
// the registry with mb.mu held.
func (s *session) trackerFor(mb *mbox) *imapserver.SessionTracker {
	if sel := s.selection(); sel != nil && sel.mb == mb {
		return sel.st
	}
	return nil
}

func (s *session) mustSelected() (*selection, error) {
	sel := s.selection()
	if sel == nil {
		return nil, badRequest("No mailbox selected")
	}
	return sel, nil
}

// ---- store access ----

// unavailableError marks an infrastructure failure of a proposal: the
// outcome is unknown or the cluster could not commit in time.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string     { return e.err.Error() }
func (e *unavailableError) Unwrap() error     { return e.err }
func (e *unavailableError) Unavailable() bool { return true }

// propose commits a command through the leader and waits for this node to
// apply it (read-your-writes, DESIGN.md invariant 4), bounded by the
// command timeout. Business errors come back as their store sentinels.
func (s *session) propose(p command.Payload) (raftstore.Result, error) {
	return s.proposeKey("", p)
}

// proposeKey is propose with a chosen idempotency key ("" lets the store
// pick one).
func (s *session) proposeKey(key string, p command.Payload) (raftstore.Result, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.CommandTimeout)
	defer cancel()
	start := time.Now()
	res, err := s.srv.store.Propose(ctx, &command.Command{Time: time.Now().UnixNano(), Key: key, Payload: p})
	if err != nil {
		if errors.Is(err, raftstore.ErrTooLarge) {
			return res, err
		}
		return res, &unavailableError{fmt.Errorf("propose %T after %v: %w", p, time.Since(start).Round(time.Millisecond), err)}
	}
	if err := res.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// view runs fn on local state.
func (s *session) view(fn func(*raftstore.ReadTx) error) error {
	return s.srv.store.View(fn)
}

func (s *session) fail(kind errKind, err error) error {
	return imapError(s.logger, kind, err)
}

// waitView waits until the selected mailbox's view reflects a write of
// this session, so the poll that follows the command reports it.
func (s *session) waitView(mb *mbox, index uint64) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.CommandTimeout)
	defer cancel()
	return mb.waitApplied(ctx, index)
}
