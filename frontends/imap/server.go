package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/raftmail/raftmail/frontends"
)

// Server is the IMAP server of one node.
type Server struct {
	cfg    Config
	store  frontends.Store
	logger *slog.Logger
	imap   *imapserver.Server
	reg    *registry
	auth   *throttle

	ctx    context.Context
	cancel context.CancelFunc
	feedWG sync.WaitGroup
	unsub  func()

	// boot and nextID make session ids unique across the cluster and
	// across restarts (they travel as SetFlags.Origin).
	boot   string
	nextID atomic.Uint64

	connMu sync.Mutex
	conns  int
	perIP  map[string]int

	headerEnds headerEndMemo // FETCH BODY[] fast path (fetch.go)
}

// caps are the advertised capabilities (RFC 9051 plus the IMAP4rev1
// extensions rev2 folds in). See DESIGN.md for what beta.8 lacks.
var caps = imap.CapSet{
	imap.CapIMAP4rev1:        {},
	imap.CapIMAP4rev2:        {},
	imap.CapNamespace:        {},
	imap.CapUIDPlus:          {},
	imap.CapESearch:          {},
	imap.CapSearchRes:        {},
	imap.CapListExtended:     {},
	imap.CapListStatus:       {},
	imap.CapMove:             {},
	imap.CapStatusSize:       {},
	imap.CapBinary:           {},
	imap.CapChildren:         {},
	imap.CapSpecialUse:       {},
	imap.CapCreateSpecialUse: {},
	imap.CapLiteralPlus:      {},
}

// New builds a server and starts following the store's change feed. Call
// Close to stop it.
func New(cfg Config, store frontends.Store) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("imap: nil store")
	}
	logger := cfg.Logger.With("proto", "imap", "node", store.NodeID())
	s := &Server{
		cfg:    cfg,
		store:  store,
		logger: logger,
		reg:    newRegistry(store, logger),
		auth:   newThrottle(cfg.AuthDelay, cfg.AuthMaxDelay, cfg.AuthWindow),
		boot:   strconv.FormatInt(time.Now().UnixNano(), 36),
		perIP:  make(map[string]int),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.imap = imapserver.New(&imapserver.Options{
		NewSession:   s.newSession,
		Caps:         caps,
		Logger:       slog.NewLogLogger(logger.Handler(), slog.LevelError),
		TLSConfig:    cfg.TLS,
		InsecureAuth: cfg.InsecureAuth,
	})
	feed, unsub := store.Subscribe(1024)
	s.unsub = unsub
	s.feedWG.Add(1)
	go func() {
		defer s.feedWG.Done()
		s.reg.run(s.ctx, feed)
	}()
	return s, nil
}

// Serve accepts plain connections on ln (STARTTLS is offered when Config.TLS
// is set) until Close. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	return s.serve(corkListener{ln})
}

func (s *Server) serve(ln net.Listener) error {
	err := s.imap.Serve(ln)
	if s.ctx.Err() != nil {
		return nil
	}
	return err
}

// ServeTLS accepts implicit-TLS connections (IMAPS, RFC 8314) on ln.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("imap: ServeTLS without a TLS configuration")
	}
	// Corked below TLS: imapserver recognises implicit TLS by the
	// connection's type, so the *tls.Conn must stay on top.
	return s.serve(tls.NewListener(corkListener{ln}, s.cfg.TLS))
}

// ListenAndServe listens on Config.Addr and Config.TLSAddr (those set) and
// serves until Close or a listener fails.
func (s *Server) ListenAndServe() error {
	errc := make(chan error, 2)
	n := 0
	for _, l := range []struct {
		addr string
		tls  bool
	}{{s.cfg.Addr, false}, {s.cfg.TLSAddr, true}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("imap listen %s: %w", l.addr, err)
		}
		s.logger.Info("imap listening", "addr", ln.Addr().String(), "tls", l.tls)
		n++
		go func(ln net.Listener, implicit bool) {
			if implicit {
				errc <- s.ServeTLS(ln)
			} else {
				errc <- s.Serve(ln)
			}
		}(ln, l.tls)
	}
	if n == 0 {
		return errors.New("imap: no listen address configured")
	}
	return <-errc
}

// Close stops the listeners, ends every session and stops following the
// feed.
func (s *Server) Close() error {
	s.cancel()
	err := s.imap.Close()
	s.unsub()
	s.feedWG.Wait()
	return err
}

// newSession is imapserver's NewSession hook: it enforces the connection
// limits and builds the per-connection session.
func (s *Server) newSession(conn *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	remote := conn.NetConn().RemoteAddr().String()
	ip := hostOf(remote)
	if !s.admit(ip) {
		s.logger.Info("connection refused: too many connections", "remote", remote)
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Too many connections, try again later"}
	}
	id := fmt.Sprintf("%s/imap/%s/%d", s.store.NodeID(), s.boot, s.nextID.Add(1))
	sess := newSession(s, conn, id, ip)
	s.reg.addSession(sess)
	sess.logger.Debug("connection opened")
	return sess, nil, nil
}

func (s *Server) admit(ip string) bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.conns >= s.cfg.MaxConns || s.perIP[ip] >= s.cfg.MaxConnsPerIP {
		return false
	}
	s.conns++
	s.perIP[ip]++
	return true
}

func (s *Server) leave(ip string) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	s.conns--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

func isLoopback(ip string) bool {
	p := net.ParseIP(ip)
	return p != nil && p.IsLoopback()
}
