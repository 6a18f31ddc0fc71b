package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// remoteConn is one SMTP client connection to a mail exchanger.
type remoteConn struct {
	c    *smtp.Client
	host string // MX name, for Remote-MTA and logs
	tls  bool
	dsn  bool // the server has the DSN extension (RFC 3461)
	used int  // transactions sent
	stop func() bool
}

// netError is a failure of the connection rather than an SMTP reply;
// early means it happened before the server accepted anything of this
// transaction, so a dead reused connection may be retried at once.
type netError struct {
	err   error
	early bool
}

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

// connect tries the route's hosts in order (RFC 5321 §5.1) until one
// greets and answers EHLO; a 4xx/5xx greeting or a refused connection
// moves on to the next address. STARTTLS is used when offered (RFC 3207);
// if the handshake fails, that host is tried once more in plain text
// (opportunistic TLS, RFC 7435).
func (s *Service) connect(ctx context.Context, rt *route) (*remoteConn, *Failure) {
	var last *Failure
	for _, h := range rt.Hosts {
		for _, ip := range h.Addrs {
			if ctx.Err() != nil {
				return nil, tempFail("4.4.1", "cancelled")
			}
			for _, useTLS := range []bool{true, false} {
				rc, f, tlsFailed := s.dial(ctx, h.Name, net.JoinHostPort(ip.String(), strconv.Itoa(s.cfg.Port)), useTLS)
				if f == nil {
					return rc, nil
				}
				last = f
				if !tlsFailed {
					break
				}
			}
		}
	}
	if last == nil {
		last = tempFail("4.4.1", "no mail exchanger to connect to for %s", rt.Domain)
	}
	if !last.Permanent() {
		last.Msg = fmt.Sprintf("cannot deliver to any mail exchanger of %s: %s", rt.Domain, last.Msg)
	}
	return nil, last
}

func (s *Service) dial(ctx context.Context, host, addr string, useTLS bool) (*remoteConn, *Failure, bool) {
	d := net.Dialer{Timeout: s.cfg.ConnectTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &Failure{Code: 451, Status: "4.4.1", Msg: fmt.Sprintf("connect to %s[%s]: %v", host, addr, err), MTA: host}, false
	}
	s.metrics.Connects.Add(1)
	// Closing the socket is the only way to interrupt go-smtp's client.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	refused := func(err error) (*remoteConn, *Failure, bool) {
		stop()
		nc.Close()
		f := replyFailure(err, host)
		// A refusal to talk (greeting or EHLO) is the host's, not the
		// message's: next host, and retry later if all refuse.
		f.Code, f.Status = 451, "4.4.2"
		return nil, f, false
	}
	conn, tlsUsed, err := s.handshake(nc, host, useTLS)
	if err != nil {
		if errors.Is(err, errTLS) {
			stop()
			nc.Close()
			return nil, &Failure{Code: 451, Status: "4.7.0", Msg: fmt.Sprintf("%s: %v", host, err), MTA: host}, true
		}
		return refused(err)
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout = s.cfg.CommandTimeout
	c.SubmissionTimeout = s.cfg.DataTimeout
	rc := &remoteConn{c: c, host: host, stop: stop, tls: tlsUsed}
	if err := c.Hello(s.cfg.Hostname); err != nil {
		rc.quit()
		return refused(err)
	}
	if tlsUsed {
		s.metrics.TLS.Add(1)
	}
	rc.dsn, _ = c.Extension("DSN")
	return rc, nil, false
}

var errTLS = errors.New("STARTTLS failed")

// handshake reads the greeting and says EHLO with our name (go-smtp's
// client cannot name itself before its own STARTTLS), upgrades with
// STARTTLS when offered (RFC 3207), and returns the connection for
// go-smtp's client with a stand-in greeting in front, so its own EHLO
// starts the (new) session.
func (s *Service) handshake(nc net.Conn, host string, useTLS bool) (net.Conn, bool, error) {
	_ = nc.SetDeadline(time.Now().Add(s.cfg.CommandTimeout))
	defer nc.SetDeadline(time.Time{})
	tp := textproto.NewConn(nc)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, false, asSMTPError(err)
	}
	if err := tp.PrintfLine("EHLO %s", s.cfg.Hostname); err != nil {
		return nil, false, err
	}
	_, msg, err := tp.ReadResponse(250)
	if err != nil {
		return nil, false, asSMTPError(err)
	}
	starttls := false
	for _, line := range strings.Split(msg, "\n")[1:] {
		starttls = starttls || strings.EqualFold(strings.TrimSpace(line), "STARTTLS")
	}
	var conn net.Conn = nc
	if starttls && useTLS {
		if err := tp.PrintfLine("STARTTLS"); err != nil {
			return nil, false, err
		}
		if _, _, err := tp.ReadResponse(220); err != nil {
			return nil, false, fmt.Errorf("%w: %v", errTLS, err)
		}
		cfg := s.cfg.TLSConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		tc := tls.Client(nc, cfg)
		if err := tc.Handshake(); err != nil {
			return nil, false, fmt.Errorf("%w: %v", errTLS, err)
		}
		conn = tc
	}
	return &greetedConn{Conn: conn, pending: []byte("220 " + host + " continuing\r\n")}, conn != nc, nil
}

// greetedConn replays a greeting before the connection's own bytes.
type greetedConn struct {
	net.Conn
	pending []byte
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if len(g.pending) > 0 {
		n := copy(p, g.pending)
		g.pending = g.pending[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

func asSMTPError(err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		return &smtp.SMTPError{Code: te.Code, Message: te.Msg}
	}
	return err
}

func (rc *remoteConn) quit() {
	if rc.stop != nil {
		rc.stop()
	}
	_ = rc.c.Quit()
	_ = rc.c.Close()
}

// send runs one transaction for all claimed recipients of one message
// (RFC 5321 §3.3): per-recipient answers to RCPT, one answer to DATA for
// those accepted. It returns a *netError when the connection failed.
func (rc *remoteConn) send(e raftstore.QueueEntry, rcpts []*raftstore.QueueRcpt, body []byte) ([]command.QueueRcptResult, error) {
	rc.used++
	out := make([]command.QueueRcptResult, len(rcpts))
	mopts := &smtp.MailOptions{Size: int64(len(body)), EnvelopeID: e.EnvID}
	switch e.Ret {
	case "FULL":
		mopts.Return = smtp.DSNReturnFull
	case "HDRS":
		mopts.Return = smtp.DSNReturnHeaders
	}
	if err := rc.c.Mail(e.From, mopts); err != nil {
		return rc.all(rcpts, err, true)
	}
	var accepted []int
	for i, r := range rcpts {
		err := rc.c.Rcpt(r.Addr, rcptOptions(r))
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			return rc.all(rcpts, err, false)
		}
		out[i] = resultOf(r.Addr, replyFailure(err, rc.host))
	}
	if len(accepted) == 0 {
		if err := rc.c.Reset(); err != nil {
			return out, &netError{err: err}
		}
		return out, nil
	}
	err := rc.data(body)
	for _, i := range accepted {
		if err == nil {
			out[i] = command.QueueRcptResult{Addr: rcpts[i].Addr, Outcome: command.OutcomeDelivered, Code: 250,
				Status: "2.0.0", Reply: "accepted", MTA: rc.host, Relayed: rc.dsn}
			continue
		}
		out[i] = resultOf(rcpts[i].Addr, replyFailure(err, rc.host))
	}
	var se *smtp.SMTPError
	if err != nil && !errors.As(err, &se) {
		return out, &netError{err: err}
	}
	return out, nil
}

func (rc *remoteConn) data(body []byte) error {
	w, err := rc.c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		_ = w.Close()
		return err
	}
	return w.Close()
}

// all gives every recipient the same failure; a connection failure is
// also returned as a *netError.
func (rc *remoteConn) all(rcpts []*raftstore.QueueRcpt, err error, early bool) ([]command.QueueRcptResult, error) {
	out := make([]command.QueueRcptResult, len(rcpts))
	f := replyFailure(err, rc.host)
	for i, r := range rcpts {
		out[i] = resultOf(r.Addr, f)
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		if rc.c.Reset() != nil {
			return out, &netError{err: err}
		}
		return out, nil
	}
	return out, &netError{err: err, early: early}
}

// rcptOptions passes NOTIFY and ORCPT on (RFC 3461 §4); go-smtp sends
// them only when the server has the DSN extension.
func rcptOptions(r *raftstore.QueueRcpt) *smtp.RcptOptions {
	o := &smtp.RcptOptions{}
	for _, n := range r.Notify {
		o.Notify = append(o.Notify, smtp.DSNNotify(strings.ToUpper(n)))
	}
	if typ, addr, ok := strings.Cut(r.ORcpt, ";"); ok && strings.EqualFold(typ, "rfc822") && addr != "" {
		o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeRFC822, addr
	}
	return o
}

// replyFailure turns an SMTP reply or a connection error into a Failure.
func replyFailure(err error, host string) *Failure {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		status := ""
		if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.EnhancedCodeNotSet && se.EnhancedCode != smtp.NoEnhancedCode {
			status = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		code := se.Code
		if code < 400 || code > 599 {
			code = 451 // a reply out of sequence: try again later
		}
		if status == "" {
			status = fmt.Sprintf("%d.0.0", code/100)
		}
		return &Failure{Code: code, Status: status, Msg: fmt.Sprintf("%s said: %d %s %s", host, se.Code, status, se.Message), MTA: host}
	}
	return &Failure{Code: 451, Status: "4.4.2", Msg: fmt.Sprintf("%s: %v", host, err), MTA: host}
}
