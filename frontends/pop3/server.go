// Package pop3 is raftmail's POP3 server (RFC 1939, RFC 2449 CAPA and
// response codes, RFC 2595 STLS, RFC 5034 SASL PLAIN). It runs on every
// mailbox node and serves the local replica; the one write it makes, the
// expunge at QUIT, goes through the leader. See DESIGN.md beside this file.
package pop3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftmail/raftmail/frontends"
)

// ErrServerClosed is returned by Serve and ServeTLS after Close.
var ErrServerClosed = errors.New("pop3: server closed")

// Server serves POP3 sessions from one node's store.
type Server struct {
	cfg      Config
	be       backend
	logger   *slog.Logger
	sizes    *sizeCache
	fails    *failLimiter
	instance string // distinguishes this process in lease holders
	nextID   atomic.Uint64

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	wg        sync.WaitGroup
}

// New builds a Server over a node's store. It applies defaults to cfg and
// validates it.
func New(cfg Config, store frontends.Store) (*Server, error) {
	if store == nil {
		return nil, errors.New("pop3: nil store")
	}
	return newServer(cfg, storeBackend{s: store})
}

func newServer(cfg Config, be backend) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("pop3: instance id: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:       cfg,
		be:        be,
		logger:    cfg.Logger.With("component", "pop3"),
		sizes:     newSizeCache(cfg.SizeCacheEntries),
		fails:     newFailLimiter(&cfg),
		instance:  hex.EncodeToString(rnd[:]),
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		sessions:  make(map[*session]struct{}),
	}, nil
}

// Serve accepts plain POP3 connections on ln (110-style; STLS upgrades them
// when Config.TLSConfig is set) until Close. It closes ln on return.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeTLS accepts implicit-TLS connections on ln (995-style, RFC 8314
// §3.3). It needs Config.TLSConfig.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.cfg.TLSConfig == nil {
		_ = ln.Close()
		return errors.New("pop3: ServeTLS needs Config.TLSConfig")
	}
	return s.serve(ln, true)
}

// ListenAndServe binds Config.Listen (plain, with STLS) and
// Config.ListenTLS (implicit TLS), whichever are set, and serves both until
// Close. A bind error returns at once (closing what was bound); otherwise it
// returns ErrServerClosed after Close, or the first listener's failure.
func (s *Server) ListenAndServe() error {
	type bound struct {
		ln       net.Listener
		implicit bool
	}
	var lns []bound
	for _, a := range []struct {
		addr     string
		implicit bool
	}{{s.cfg.Listen, false}, {s.cfg.ListenTLS, true}} {
		if a.addr == "" {
			continue
		}
		if a.implicit && s.cfg.TLSConfig == nil {
			err := errors.New("pop3: ListenTLS needs TLSConfig")
			for _, b := range lns {
				_ = b.ln.Close()
			}
			return err
		}
		ln, err := net.Listen("tcp", a.addr)
		if err != nil {
			for _, b := range lns {
				_ = b.ln.Close()
			}
			return fmt.Errorf("pop3 listen %s: %w", a.addr, err)
		}
		lns = append(lns, bound{ln, a.implicit})
	}
	if len(lns) == 0 {
		return errors.New("pop3: neither Listen nor ListenTLS is set")
	}
	errs := make(chan error, len(lns))
	for _, b := range lns {
		go func() { errs <- s.serve(b.ln, b.implicit) }()
	}
	first := <-errs
	if !errors.Is(first, ErrServerClosed) {
		// One listener failed: stop the others too.
		for _, b := range lns {
			_ = b.ln.Close()
		}
	}
	for range len(lns) - 1 {
		<-errs
	}
	return first
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		_ = ln.Close()
	}()
	s.logger.Info("pop3 listening", "addr", ln.Addr().String(), "implicit_tls", implicitTLS)
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("pop3 accept: %w", err)
			}
			// EMFILE and friends pass; back off as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logger.Warn("accept failed, retrying", "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
				continue
			case <-s.ctx.Done():
				t.Stop()
				return ErrServerClosed
			}
		}
		backoff = 0
		s.start(c, implicitTLS)
	}
}

// start registers and runs a session for c, or turns it away when the
// server is closed or full.
func (s *Server) start(c net.Conn, implicitTLS bool) {
	sess := newSession(s, c, implicitTLS)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = c.Close()
		return
	}
	full := len(s.sessions) >= s.cfg.MaxSessions
	if !full {
		s.sessions[sess] = struct{}{}
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		if full {
			sess.refuse("-ERR [SYS/TEMP] too many connections, try again later")
			return
		}
		defer func() {
			s.mu.Lock()
			delete(s.sessions, sess)
			s.mu.Unlock()
		}()
		sess.run()
	}()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops the listeners, ends every session (without expunging: a
// session cut off by shutdown deletes nothing) and waits for their
// goroutines, which release their maildrop leases on the way out.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	s.cancel()
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for sess := range s.sessions {
		sess.abort()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Sessions returns the number of live sessions (for metrics and tests).
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}
