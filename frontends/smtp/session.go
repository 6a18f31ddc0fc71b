package smtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/frontends/smtputil"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// maxPath is the longest reverse or forward path accepted (RFC 5321
// §4.5.3.1.3: 256 octets including the angle brackets).
const maxPath = 254

// session is one SMTP session (from EHLO, reset by a new EHLO or
// STARTTLS). Data may run in go-smtp's BDAT goroutine while RSET calls
// Reset, so the transaction is guarded by mu and Data works on a copy.
type session struct {
	s      *Server
	conn   *smtp.Conn
	gc     *conn
	helo   string
	logger *slog.Logger

	mu      sync.Mutex
	account string // authenticated account (submission)
	user    string // the AUTH user name, for logs
	failed  int    // refused commands on this connection
	txSeq   int
	tx      *transaction
}

// transaction is one MAIL … DATA sequence.
type transaction struct {
	id    string
	from  string
	opts  smtp.MailOptions
	rcpts []string
	// remote are the rcpts outside local domains (submission only; see
	// outbound.go), with their DSN parameters.
	remote []command.QueueRcpt
	start  time.Time
}

var (
	_ smtp.Session     = (*session)(nil)
	_ smtp.AuthSession = (*session)(nil)
)

// Reset ends the transaction. RFC 5321 §4.1.1.5.
func (ss *session) Reset() {
	ss.mu.Lock()
	ss.tx = nil
	ss.mu.Unlock()
	ss.gc.filters.Reset()
}

// Logout is called when the connection closes or the session is replaced
// (STARTTLS); the filter session belongs to the connection and outlives it.
func (ss *session) Logout() error { return nil }

func (ss *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(ss.s.ctx, ss.s.cfg.LookupTimeout)
}

// refuse counts a refused command and returns its reply. Past
// MaxFailedCommands the connection is closed with 421 4.7.0 instead (RFC
// 5321 §3.8: a server may close after 421), which bounds what a client
// that only sends junk can cost.
func (ss *session) refuse(e *smtp.SMTPError) error {
	ss.mu.Lock()
	ss.failed++
	over := ss.s.cfg.MaxFailedCommands > 0 && ss.failed >= ss.s.cfg.MaxFailedCommands
	ss.mu.Unlock()
	if over {
		ss.logger.Info("too many failed commands, closing", "failed", ss.failed)
		nc := ss.conn.Conn()
		_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(nc, "421 4.7.0 %s Too many errors, closing connection\r\n", ss.s.cfg.Hostname)
		ss.gc.Conn.Close()
	}
	return e
}

// authAllowed: submission only, over TLS, or from loopback in dev mode.
// RFC 4954 §4, RFC 8314 §3.
func (ss *session) authAllowed() bool {
	if ss.s.cfg.Profile != ProfileSubmission {
		return false
	}
	_, isTLS := ss.conn.TLSConnectionState()
	return isTLS || (ss.s.cfg.Dev && ss.gc.ip.IsLoopback())
}

// AuthMechanisms advertises AUTH (RFC 4954 §3) where it is allowed.
func (ss *session) AuthMechanisms() []string {
	if !ss.authAllowed() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth starts a SASL exchange. RFC 4954 §4; PLAIN is RFC 4616.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	switch {
	case ss.s.cfg.Profile != ProfileSubmission:
		return nil, ss.refuse(smtp.ErrAuthUnsupported)
	case !ss.authAllowed():
		return nil, ss.refuse(errEncryptionRequired)
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return ss.authFailed(user, errors.New("authorization identity differs"))
			}
			return ss.authenticate(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{auth: ss.authenticate}, nil
	}
	return nil, ss.refuse(smtp.ErrAuthUnknownMechanism)
}

func (ss *session) authenticate(user, pass string) error {
	ctx, cancel := ss.ctx()
	defer cancel()
	acct, err := ss.s.auth.Authenticate(ctx, user, pass)
	switch {
	case errors.Is(err, ErrAuthFailed):
		return ss.authFailed(user, err)
	case err != nil:
		ss.logger.Warn("authentication backend failed", "user", user, "err", err)
		return errAuthTemp
	}
	ss.mu.Lock()
	ss.account, ss.user = acct, user
	ss.mu.Unlock()
	ss.gc.info.Account = acct
	ss.logger = ss.logger.With("user", acct)
	ss.logger.Info("authenticated", "auth_user", user)
	return nil
}

// authFailed delays the answer (growing per client network) and counts
// the failure.
func (ss *session) authFailed(user string, err error) error {
	key := filters.ClientNetwork(ss.gc.ip)
	d := ss.s.throttle.fail(key)
	ss.logger.Info("authentication failed", "auth_user", user, "delay_ms", d.Milliseconds(),
		"failures", ss.s.throttle.failures(key), "err", err)
	sleepCtx(ss.s.ctx, d)
	return ss.refuse(smtp.ErrAuthFailed)
}

// Mail starts a transaction. RFC 5321 §4.1.1.2; SIZE RFC 1870, SMTPUTF8
// RFC 6531, DSN parameters RFC 3461 (accepted, not acted upon).
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.Reset()
	if len(from) > maxPath {
		return ss.refuse(&smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Sender address too long"})
	}
	if from != "" {
		if _, err := raftstore.NormalizeAddress(from); err != nil {
			return ss.refuse(&smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Malformed sender address"})
		}
	}
	if ss.s.cfg.Profile == ProfileSubmission {
		if err := ss.checkSender(from); err != nil {
			return err
		}
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	m := filters.Mail{From: from, Size: opts.Size, UTF8: opts.UTF8}
	if v := ss.gc.filters.Mail(ctx, m); v.Action >= filters.TempFail {
		return ss.refuse(verdictError(v, filters.StageMail))
	}
	ss.mu.Lock()
	ss.txSeq++
	ss.tx = &transaction{id: fmt.Sprintf("%d.%d", ss.gc.id, ss.txSeq), from: from, opts: *opts, start: time.Now()}
	ss.mu.Unlock()
	return nil
}

// checkSender enforces submission's rules: authenticated first (RFC 4954
// §6: 530), and only from an address the user owns — their own or an
// alias pointing to them — else 553 5.7.1 (RFC 6409 §6.1 lets the MSA
// reject unauthorised senders).
func (ss *session) checkSender(from string) error {
	ss.mu.Lock()
	acct := ss.account
	ss.mu.Unlock()
	if acct == "" {
		if !ss.authAllowed() {
			return ss.refuse(&smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"})
		}
		return ss.refuse(&smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"})
	}
	if from == "" {
		return ss.refuse(errNotOwner)
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	d, err := ss.s.committer.LookupRecipient(ctx, from)
	if err != nil {
		ss.logger.Warn("directory lookup failed", "from", from, "err", err)
		return errDirectoryTemp
	}
	if d.Account != acct {
		ss.logger.Info("sender not owned by user", "from", from, "owner", d.Account)
		return ss.refuse(errNotOwner)
	}
	return nil
}

// Rcpt checks a recipient against the directory. RFC 5321 §4.1.1.3;
// codes per RFC 3463 (5.1.1 unknown, 4.2.2 full, 5.7.1 relay denied).
func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	ss.mu.Lock()
	tx := ss.tx
	ss.mu.Unlock()
	if tx == nil {
		return ss.refuse(&smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Need MAIL before RCPT"})
	}
	if len(to) > maxPath {
		return ss.refuse(&smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Recipient address too long"})
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	d, err := ss.s.committer.LookupRecipient(ctx, to)
	switch {
	case errors.Is(err, raftstore.ErrInvalid):
		return ss.refuse(&smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Malformed recipient address"})
	case err != nil:
		ss.logger.Warn("directory lookup failed", "rcpt", to, "err", err)
		return errDirectoryTemp
	case !d.Local && ss.s.cfg.Profile == ProfileSubmission:
		return ss.acceptRemote(ctx, tx, to, opts)
	case !d.Local:
		return ss.refuse(&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relay access denied"})
	case d.Account == "":
		return ss.refuse(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"})
	case d.OverQuota:
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full, try again later"}
	}
	if v := ss.gc.filters.Rcpt(ctx, filters.Rcpt{To: to, Account: d.Account}); v.Action >= filters.TempFail {
		return ss.refuse(verdictError(v, filters.StageRcpt))
	}
	ss.mu.Lock()
	tx.rcpts = append(tx.rcpts, to)
	ss.mu.Unlock()
	return nil
}

// data reads the message and delivers it; see deliver in data.go.
func (ss *session) data(r io.Reader) error {
	ss.mu.Lock()
	var tx transaction
	if ss.tx != nil {
		tx = *ss.tx
		tx.rcpts = append([]string(nil), ss.tx.rcpts...)
		tx.remote = append([]command.QueueRcpt(nil), ss.tx.remote...)
	}
	ss.mu.Unlock()
	raw, err := smtputil.ReadMessage(r, "")
	if err != nil {
		_, _ = io.Copy(io.Discard, r)
		return err
	}
	if len(tx.rcpts) == 0 {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
	}
	return ss.deliver(&tx, raw)
}

var (
	errEncryptionRequired = &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required for requested authentication mechanism"}
	errAuthTemp           = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
	errNotOwner           = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address not owned by you"}
	errDirectoryTemp      = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Directory unavailable, try again later"}
	errCommitTemp         = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Cluster cannot commit right now, try again later"}
	errLocalTemp          = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local error, try again later"}
)

// verdictError maps a filter verdict to the reply (STYLE §8: mapping at
// the edge, unwrapped *SMTPError for go-smtp).
func verdictError(v filters.Verdict, stage filters.Stage) *smtp.SMTPError {
	code, enh, text := v.Reply(stage)
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode(enh), Message: text}
}
