package pop3

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// state is a session's RFC 1939 §3 state.
type state int

const (
	stateAuthorization state = iota
	stateTransaction
	stateUpdate
)

func (s state) String() string {
	switch s {
	case stateAuthorization:
		return "AUTHORIZATION"
	case stateTransaction:
		return "TRANSACTION"
	default:
		return "UPDATE"
	}
}

// session is one client connection. Its goroutine owns every field except
// conn (closed by abort from Server.Close).
type session struct {
	srv      *Server
	id       uint64
	ip       string
	log      *slog.Logger
	tlsOn    bool
	wantTLS  bool // implicit TLS: handshake first
	loopback bool // the client is on this host

	connMu sync.Mutex
	conn   net.Conn
	lr     lineReader
	w      *bufio.Writer

	state        state
	user         string // from USER, before PASS
	account      string
	authFailures int
	commands     int
	badLines     int

	drop  *maildrop
	lease *lease
}

// writeBufSize is the output buffer; RETR streams through it.
const writeBufSize = 16 << 10

func newSession(srv *Server, c net.Conn, implicitTLS bool) *session {
	id := srv.nextID.Add(1)
	ip := c.RemoteAddr().String()
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	s := &session{
		srv: srv, id: id, ip: ip, wantTLS: implicitTLS, loopback: isLoopback(c.RemoteAddr()),
		log: srv.logger.With("proto", "pop3", "conn", id, "remote", c.RemoteAddr().String()),
	}
	s.setConn(c)
	return s
}

// setConn installs c (again after STLS), with fresh buffers: whatever a
// client pipelined before TLS is discarded, never read as if it came
// through TLS (the STARTTLS command injection class of bugs).
func (s *session) setConn(c net.Conn) {
	s.connMu.Lock()
	s.conn = c
	s.connMu.Unlock()
	s.lr = lineReader{r: bufio.NewReaderSize(c, 4096), flood: 64 << 10}
	s.w = bufio.NewWriterSize(deadlineWriter{c: c, d: s.srv.cfg.IdleTimeout}, writeBufSize)
}

// abort closes the connection from another goroutine.
func (s *session) abort() {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	_ = s.conn.Close()
}

// closeConn ends the connection so that the last answer (an -ERR about a
// limit, say) reaches the client: a close with unread input makes TCP send
// a reset, which can destroy the answer in flight. So it half-closes and
// drains what the client still sends, briefly and boundedly, first.
func (s *session) closeConn() {
	s.connMu.Lock()
	c := s.conn
	s.connMu.Unlock()
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.(closeWriter); ok && s.srv.ctx.Err() == nil {
		if cw.CloseWrite() == nil {
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			_, _ = io.CopyN(io.Discard, c, 256<<10)
		}
	}
	_ = c.Close()
}

// deadlineWriter sets a write deadline before each write, so a client that
// stops reading cannot hold a session (and its lease) forever.
type deadlineWriter struct {
	c net.Conn
	d time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	_ = w.c.SetWriteDeadline(time.Now().Add(w.d))
	return w.c.Write(p)
}

// refuse answers a connection that will not be served and closes it.
func (s *session) refuse(msg string) {
	_ = s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(s.conn, msg+"\r\n")
	_ = s.conn.Close()
}

// run is the session's life: greeting, command loop, cleanup. A session
// that ends any way other than QUIT expunges nothing (RFC 1939 §6).
func (s *session) run() {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("pop3 session panic", "panic", fmt.Sprint(r))
		}
		s.releaseLease()
		s.closeConn()
		s.log.Debug("pop3 session closed", "commands", s.commands, "duration", time.Since(start).Round(time.Millisecond))
	}()
	if s.wantTLS {
		if err := s.handshake(s.conn); err != nil {
			s.log.Debug("tls handshake failed", "err", err)
			return
		}
	}
	s.log.Debug("pop3 session opened", "tls", s.tlsOn)
	// RFC 1939 §4: the greeting.
	if !s.reply("+OK " + s.srv.cfg.Greeting) {
		return
	}
	for {
		line, err := s.readLine(s.srv.cfg.MaxLineLength)
		if err != nil {
			if !s.lineError(err) {
				return
			}
			continue
		}
		s.commands++
		if s.commands > s.srv.cfg.MaxCommands {
			s.reply("-ERR too many commands in one session, closing connection")
			return
		}
		cmd, err := ParseCommand(line)
		if err != nil {
			s.badLines++
			if s.badLines > s.srv.cfg.MaxBadLines {
				s.reply("-ERR too many bad commands, closing connection")
				return
			}
			if !s.reply("-ERR " + err.Error()) {
				return
			}
			continue
		}
		if !s.dispatch(cmd) {
			return
		}
	}
}

// readLine reads a line under the idle timeout.
func (s *session) readLine(max int) ([]byte, error) {
	_ = s.conn.SetReadDeadline(time.Now().Add(s.srv.cfg.IdleTimeout))
	return s.lr.readLine(max)
}

// lineError answers a failed read; false ends the session.
func (s *session) lineError(err error) bool {
	switch {
	case errors.Is(err, errLineTooLong):
		s.badLines++
		if s.badLines > s.srv.cfg.MaxBadLines {
			s.reply("-ERR too many overlong lines, closing connection")
			return false
		}
		return s.reply(fmt.Sprintf("-ERR line too long (limit %d octets)", s.srv.cfg.MaxLineLength))
	case errors.Is(err, errFlood):
		s.reply("-ERR line too long, closing connection")
		return false
	case errors.Is(err, os.ErrDeadlineExceeded):
		// RFC 1939 §3: the autologout timer ends the session without
		// entering UPDATE.
		s.log.Info("pop3 idle timeout", "state", s.state.String())
		s.reply("-ERR autologout: idle for too long")
		return false
	default:
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			s.log.Debug("pop3 read failed", "err", err)
		}
		return false
	}
}

// reply writes one line and flushes; false means the connection is gone.
func (s *session) reply(line string) bool {
	_, _ = s.w.WriteString(line)
	_, _ = s.w.WriteString("\r\n")
	return s.flush()
}

func (s *session) flush() bool {
	if err := s.w.Flush(); err != nil {
		s.log.Debug("pop3 write failed", "err", err)
		return false
	}
	return true
}

// multiline writes a +OK line, the given lines (dot-stuffed) and the
// terminator (RFC 1939 §3).
func (s *session) multiline(first string, lines []string) bool {
	s.w.WriteString(first)
	s.w.WriteString("\r\n")
	for _, l := range lines {
		if len(l) > 0 && l[0] == '.' {
			s.w.WriteByte('.')
		}
		s.w.WriteString(l)
		s.w.WriteString("\r\n")
	}
	s.w.WriteString(".\r\n")
	return s.flush()
}

// handshake runs a server-side TLS handshake on c and installs the result.
func (s *session) handshake(c net.Conn) error {
	tc := tls.Server(c, s.srv.cfg.TLSConfig)
	_ = c.SetDeadline(time.Now().Add(min(s.srv.cfg.IdleTimeout, 30*time.Second)))
	if err := tc.HandshakeContext(s.srv.ctx); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	s.setConn(tc)
	s.tlsOn = true
	return nil
}

// dispatch runs one command; false ends the session.
func (s *session) dispatch(cmd Command) bool {
	if cmd.Name == "PASS" || cmd.Name == "AUTH" {
		s.log.Debug("pop3 command", "cmd", cmd.Name, "state", s.state.String())
	} else {
		s.log.Debug("pop3 command", "cmd", cmd.Name, "args", cmd.Args, "state", s.state.String())
	}
	// RFC 2449 §5: CAPA in either state.
	if cmd.Name == "CAPA" {
		return s.cmdCAPA(cmd)
	}
	if cmd.Name == "QUIT" {
		return s.cmdQUIT(cmd)
	}
	switch s.state {
	case stateAuthorization:
		switch cmd.Name {
		case "USER":
			return s.cmdUSER(cmd)
		case "PASS":
			return s.cmdPASS(cmd)
		case "AUTH":
			return s.cmdAUTH(cmd)
		case "STLS":
			return s.cmdSTLS(cmd)
		case "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL":
			return s.reply("-ERR command not valid before login")
		}
	case stateTransaction:
		if !s.lease.valid() {
			s.log.Warn("pop3 maildrop lock lost, ending session without deleting")
			s.reply("-ERR [SYS/TEMP] maildrop lock lost, closing connection; nothing was deleted")
			return false
		}
		switch cmd.Name {
		case "STAT":
			return s.cmdSTAT(cmd)
		case "LIST":
			return s.cmdLIST(cmd)
		case "RETR":
			return s.cmdRETR(cmd)
		case "DELE":
			return s.cmdDELE(cmd)
		case "NOOP":
			return s.cmdNOOP(cmd)
		case "RSET":
			return s.cmdRSET(cmd)
		case "TOP":
			return s.cmdTOP(cmd)
		case "UIDL":
			return s.cmdUIDL(cmd)
		case "USER", "PASS", "AUTH", "STLS":
			return s.reply("-ERR already logged in")
		}
	}
	return s.reply("-ERR unknown command")
}

// CAPA: RFC 2449 §5 and §6; STLS from RFC 2595 §4, SASL from RFC 5034.
func (s *session) cmdCAPA(cmd Command) bool {
	if len(cmd.Args) != 0 {
		return s.reply("-ERR CAPA takes no arguments")
	}
	caps := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	if s.state == stateAuthorization {
		if s.authAllowed() {
			caps = append(caps, "USER", "SASL PLAIN")
		}
		if s.srv.cfg.TLSConfig != nil && !s.tlsOn {
			caps = append(caps, "STLS")
		}
	}
	caps = append(caps, "EXPIRE NEVER", "IMPLEMENTATION raftmail")
	return s.multiline("+OK capability list follows", caps)
}
