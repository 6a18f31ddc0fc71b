package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// RunIMAP runs an IMAP read load: per mailbox LOGIN and SELECT INBOX once,
// then rounds of FETCH 1:* BODY.PEEK[] (every message; one request, as
// many operations as messages), or with Mixed one operation per round out
// of FETCH BODY.PEEK[] of one message, STORE ±FLAGS \Flagged, SEARCH and
// a 100 ms IDLE.
func RunIMAP(ctx context.Context, l ReadLoad) Summary {
	if l.OpTimeout == 0 {
		l.OpTimeout = time.Minute
	}
	open := func(target string, u Cred) (readSession, error) { return openIMAP(target, u, l) }
	return runSessions(ctx, l, open, IMAPErrorCode)
}

// imapSession is one logged-in IMAP connection with INBOX selected.
type imapSession struct {
	conn    net.Conn
	c       *imapclient.Client
	timeout time.Duration
	mixed   bool
	n       uint32
}

// DialIMAP connects and logs in (no TLS: loopback benchmarks).
func DialIMAP(target string, u Cred, timeout time.Duration) (net.Conn, *imapclient.Client, error) {
	conn, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	c := imapclient.New(conn, nil)
	if err := c.Login(u.User, u.Pass).Wait(); err != nil {
		c.Close()
		return nil, nil, err
	}
	return conn, c, nil
}

func openIMAP(target string, u Cred, l ReadLoad) (*imapSession, error) {
	conn, c, err := DialIMAP(target, u, l.OpTimeout)
	if err != nil {
		return nil, err
	}
	s := &imapSession{conn: conn, c: c, timeout: l.OpTimeout, mixed: l.Mixed}
	if err := s.selectInbox(); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

func (s *imapSession) selectInbox() error {
	_ = s.conn.SetDeadline(time.Now().Add(s.timeout))
	data, err := s.c.Select("INBOX", nil).Wait()
	if err != nil {
		return err
	}
	s.n = data.NumMessages
	return nil
}

func (s *imapSession) round(rec *Recorder, seq int64) error {
	_ = s.conn.SetDeadline(time.Now().Add(s.timeout))
	if s.n == 0 {
		return errEmpty
	}
	if !s.mixed {
		start := time.Now()
		n, size, err := s.fetch(imap.SeqSetNum(), true)
		if err != nil {
			return err
		}
		rec.OkN(time.Since(start), n, int(size))
		return nil
	}
	num := uint32(seq%int64(s.n)) + 1
	start := time.Now()
	size, err := s.mixedOp(seq, num)
	if err != nil {
		return err
	}
	rec.Ok(time.Since(start), int(size))
	return nil
}

// fetch reads BODY.PEEK[] of the set (all messages when all is set).
func (s *imapSession) fetch(set imap.SeqSet, all bool) (int, int64, error) {
	if all {
		set = imap.SeqSet{}
		set.AddRange(1, 0) // 1:*
	}
	cmd := s.c.Fetch(set, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	var msgs int
	var size int64
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		for item := msg.Next(); item != nil; item = msg.Next() {
			if body, ok := item.(imapclient.FetchItemDataBodySection); ok && body.Literal != nil {
				n, err := io.Copy(io.Discard, body.Literal)
				if err != nil {
					_ = cmd.Close()
					return 0, 0, err
				}
				size += n
			}
		}
		msgs++
	}
	return msgs, size, cmd.Close()
}

// mixedOp does one operation of the mixed workload on message num.
func (s *imapSession) mixedOp(seq int64, num uint32) (int64, error) {
	switch seq % 4 {
	case 0:
		_, size, err := s.fetch(imap.SeqSetNum(num), false)
		return size, err
	case 1:
		op := imap.StoreFlagsAdd
		if seq%8 == 5 {
			op = imap.StoreFlagsDel
		}
		return 0, s.c.Store(imap.SeqSetNum(num), &imap.StoreFlags{Op: op, Silent: true,
			Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close()
	case 2:
		_, err := s.c.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "re"}},
			NotFlag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
		return 0, err
	default:
		idle, err := s.c.Idle()
		if err != nil {
			return 0, err
		}
		time.Sleep(100 * time.Millisecond) // an IDLE that sees nothing, then DONE
		if err := idle.Close(); err != nil {
			return 0, err
		}
		return 0, idle.Wait()
	}
}

func (s *imapSession) close() {
	_ = s.conn.SetDeadline(time.Now().Add(5 * time.Second))
	_ = s.c.Logout().Wait()
	_ = s.c.Close()
}

// errEmpty ends a session whose mailbox has nothing to read.
var errEmpty = errors.New("empty mailbox")

// IMAPErrorCode names an IMAP failure for the error table: "NO", "BAD",
// with the response code when there is one ("NO [AUTHENTICATIONFAILED]"),
// else "timeout" or "io".
func IMAPErrorCode(err error) string {
	var ie *imap.Error
	if errors.As(err, &ie) {
		if ie.Code != "" {
			return fmt.Sprintf("%s [%s]", ie.Type, ie.Code)
		}
		return string(ie.Type)
	}
	return ioCode(err)
}

// ioCode classifies a transport error.
func ioCode(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, errEmpty):
		return "empty"
	}
	return "io"
}
