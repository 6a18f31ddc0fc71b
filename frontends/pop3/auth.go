package pop3

import (
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/raftmail/raftmail/raftstore"
)

// authAllowed reports whether credentials may be sent on this connection:
// only under TLS (RFC 2595 §2.1, RFC 8314), or in dev mode
// (AllowInsecureAuth) from a loopback address.
func (s *session) authAllowed() bool {
	return s.tlsOn || (s.srv.cfg.AllowInsecureAuth && s.loopback)
}

// isLoopback reports whether a remote address is on this host.
func isLoopback(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

const (
	msgNeedTLS  = "-ERR [AUTH] plaintext authentication disallowed without TLS, use STLS first"
	msgBadCreds = "-ERR [AUTH] invalid user name or password" // RFC 3206 §4
)

// maxUserLen bounds a user name (an address: RFC 5321 §4.5.3.1.3).
const maxUserLen = 254

// USER: RFC 1939 §7.
func (s *session) cmdUSER(cmd Command) bool {
	if !s.authAllowed() {
		return s.reply(msgNeedTLS)
	}
	if len(cmd.Args) != 1 {
		return s.reply("-ERR usage: USER name")
	}
	if len(cmd.Args[0]) > maxUserLen {
		return s.reply("-ERR user name too long")
	}
	s.user = cmd.Args[0]
	return s.reply("+OK send PASS")
}

// PASS: RFC 1939 §7. The whole rest of the line is the password.
func (s *session) cmdPASS(cmd Command) bool {
	if !s.authAllowed() {
		return s.reply(msgNeedTLS)
	}
	if s.user == "" {
		return s.reply("-ERR USER first")
	}
	if cmd.Rest == "" {
		return s.reply("-ERR usage: PASS password")
	}
	user := s.user
	s.user = ""
	return s.login(user, cmd.Rest)
}

// AUTH: RFC 5034 §4. Only PLAIN (RFC 4616) is offered. AUTH without
// arguments lists the mechanisms, as many clients expect.
func (s *session) cmdAUTH(cmd Command) bool {
	if len(cmd.Args) == 0 {
		if !s.authAllowed() {
			return s.multiline("+OK no mechanisms available without TLS", nil)
		}
		return s.multiline("+OK mechanisms follow", []string{sasl.Plain})
	}
	if !s.authAllowed() {
		return s.reply(msgNeedTLS)
	}
	if !strings.EqualFold(cmd.Args[0], sasl.Plain) {
		return s.reply("-ERR unsupported authentication mechanism")
	}
	var identity, user, pass string
	srv := sasl.NewPlainServer(func(i, u, p string) error {
		identity, user, pass = i, u, p
		return nil
	})
	var resp []byte
	if len(cmd.Args) == 2 {
		// RFC 5034 §4: "=" is an empty initial response.
		if cmd.Args[1] != "=" {
			b, err := base64.StdEncoding.DecodeString(cmd.Args[1])
			if err != nil {
				return s.reply("-ERR invalid base64 in initial response")
			}
			resp = b
		} else {
			resp = []byte{}
		}
	} else {
		// Empty challenge; the client answers on a line of its own.
		if !s.reply("+ ") {
			return false
		}
		line, err := s.readLine(s.srv.cfg.MaxAuthLineLength)
		if err != nil {
			return s.lineError(err)
		}
		if string(line) == "*" {
			return s.reply("-ERR authentication cancelled")
		}
		b, err := base64.StdEncoding.DecodeString(string(line))
		if err != nil {
			return s.reply("-ERR invalid base64 in response")
		}
		resp = b
	}
	if _, _, err := srv.Next(resp); err != nil {
		return s.failLogin("malformed PLAIN response")
	}
	if identity != "" && !strings.EqualFold(identity, user) {
		return s.failLogin("authorization identity differs from user")
	}
	return s.login(user, pass)
}

// STLS: RFC 2595 §4, AUTHORIZATION state only.
func (s *session) cmdSTLS(cmd Command) bool {
	if len(cmd.Args) != 0 {
		return s.reply("-ERR STLS takes no arguments")
	}
	if s.tlsOn {
		return s.reply("-ERR command not permitted when TLS active")
	}
	if s.srv.cfg.TLSConfig == nil {
		return s.reply("-ERR STLS not available")
	}
	if !s.reply("+OK begin TLS negotiation") {
		return false
	}
	if err := s.handshake(s.conn); err != nil {
		s.log.Debug("stls handshake failed", "err", err)
		return false
	}
	s.user = ""
	return true
}

// login checks credentials, locks the maildrop and loads it. RFC 1939 §7:
// on failure the session stays in AUTHORIZATION; a lock that was taken is
// released before a negative answer.
func (s *session) login(user, pass string) bool {
	if s.srv.fails.blocked(s.ip) {
		s.log.Info("pop3 login refused: too many failures from this address")
		s.authFailures++
		if s.authFailures >= s.srv.cfg.MaxAuthFailures {
			s.reply("-ERR [LOGIN-DELAY] too many failed logins, try again later; closing connection")
			return false
		}
		return s.reply("-ERR [LOGIN-DELAY] too many failed logins, try again later")
	}
	account, err := s.srv.be.Authenticate(user, pass)
	if err != nil {
		return s.failLogin("bad credentials")
	}
	log := s.log.With("user", account)
	l, err := s.srv.acquireLease(account, s.id)
	if err != nil {
		if errors.Is(err, raftstore.ErrLeaseHeld) {
			log.Info("pop3 maildrop in use")
			return s.reply("-ERR [IN-USE] maildrop is locked by another POP3 session")
		}
		log.Warn("pop3 lock maildrop failed", "err", err)
		return s.reply("-ERR [SYS/TEMP] cannot lock maildrop, try again later")
	}
	s.lease = l
	drop, err := s.srv.loadMaildrop(account)
	if err != nil {
		s.releaseLease()
		if errors.Is(err, raftstore.ErrNoSuchMailbox) || errors.Is(err, raftstore.ErrNoSuchUser) {
			log.Warn("pop3 maildrop missing", "err", err)
			return s.reply("-ERR [SYS/PERM] maildrop not available")
		}
		log.Warn("pop3 load maildrop failed", "err", err)
		return s.reply("-ERR [SYS/TEMP] cannot open maildrop, try again later")
	}
	s.log = log
	s.account = account
	s.drop = drop
	s.state = stateTransaction
	n, size := drop.stat()
	s.log.Info("pop3 login", "messages", n, "octets", size, "tls", s.tlsOn)
	return s.replyf("+OK maildrop locked and ready, %d messages (%d octets)", n, size)
}

// failLogin answers a failed login after the per-IP delay; the
// connection closes after MaxAuthFailures.
func (s *session) failLogin(why string) bool {
	d := s.srv.fails.fail(s.ip)
	s.authFailures++
	s.log.Info("pop3 login failed", "reason", why, "failures", s.authFailures, "delay", d)
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.srv.ctx.Done():
			t.Stop()
			return false
		}
	}
	if s.authFailures >= s.srv.cfg.MaxAuthFailures {
		s.reply(msgBadCreds + "; closing connection")
		return false
	}
	return s.reply(msgBadCreds)
}
