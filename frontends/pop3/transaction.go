package pop3

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

func (s *session) replyf(format string, args ...any) bool {
	return s.reply(fmt.Sprintf(format, args...))
}

// msgArg parses a message-number argument and looks the message up. When
// it cannot, errLine is the -ERR answer.
func (s *session) msgArg(arg string) (m *dropMsg, n int, errLine string) {
	n, ok := parseMsgNum(arg)
	if !ok {
		return nil, 0, "-ERR invalid message number"
	}
	m, ok = s.drop.get(n)
	if !ok {
		return nil, 0, "-ERR no such message"
	}
	return m, n, ""
}

// STAT: RFC 1939 §5.
func (s *session) cmdSTAT(cmd Command) bool {
	if len(cmd.Args) != 0 {
		return s.reply("-ERR STAT takes no arguments")
	}
	n, size := s.drop.stat()
	return s.replyf("+OK %d %d", n, size)
}

// LIST: RFC 1939 §5.
func (s *session) cmdLIST(cmd Command) bool {
	switch len(cmd.Args) {
	case 0:
		n, size := s.drop.stat()
		lines := make([]string, 0, n)
		for i := range s.drop.msgs {
			if m := &s.drop.msgs[i]; !m.deleted {
				lines = append(lines, strconv.Itoa(i+1)+" "+strconv.FormatInt(m.wire, 10))
			}
		}
		return s.multiline(fmt.Sprintf("+OK %d messages (%d octets)", n, size), lines)
	case 1:
		m, n, e := s.msgArg(cmd.Args[0])
		if e != "" {
			return s.reply(e)
		}
		return s.replyf("+OK %d %d", n, m.wire)
	default:
		return s.reply("-ERR usage: LIST [msg]")
	}
}

// UIDL: RFC 1939 §7.
func (s *session) cmdUIDL(cmd Command) bool {
	switch len(cmd.Args) {
	case 0:
		lines := make([]string, 0, len(s.drop.msgs))
		for i := range s.drop.msgs {
			if m := &s.drop.msgs[i]; !m.deleted {
				lines = append(lines, strconv.Itoa(i+1)+" "+s.drop.uidl(m))
			}
		}
		return s.multiline("+OK unique-id listing follows", lines)
	case 1:
		m, n, e := s.msgArg(cmd.Args[0])
		if e != "" {
			return s.reply(e)
		}
		return s.replyf("+OK %d %s", n, s.drop.uidl(m))
	default:
		return s.reply("-ERR usage: UIDL [msg]")
	}
}

// RETR: RFC 1939 §5.
func (s *session) cmdRETR(cmd Command) bool {
	if len(cmd.Args) != 1 {
		return s.reply("-ERR usage: RETR msg")
	}
	m, _, e := s.msgArg(cmd.Args[0])
	if e != "" {
		return s.reply(e)
	}
	return s.sendBody(m, -1, fmt.Sprintf("+OK %d octets", m.wire))
}

// TOP: RFC 1939 §7.
func (s *session) cmdTOP(cmd Command) bool {
	if len(cmd.Args) != 2 {
		return s.reply("-ERR usage: TOP msg n")
	}
	m, _, e := s.msgArg(cmd.Args[0])
	if e != "" {
		return s.reply(e)
	}
	lines, ok := parseUint(cmd.Args[1], 0)
	if !ok {
		return s.reply("-ERR invalid line count")
	}
	return s.sendBody(m, lines, "+OK top of message follows")
}

// sendBody reads a body from the local replica and sends it dot-stuffed.
func (s *session) sendBody(m *dropMsg, bodyLines int, first string) bool {
	body, err := s.srv.be.Body(m.BlobID)
	if err != nil {
		if errors.Is(err, raftstore.ErrNoSuchMessage) {
			return s.reply("-ERR message was deleted by another client")
		}
		s.log.Warn("pop3 read body failed", "uid", m.UID, "err", err)
		return s.reply("-ERR [SYS/TEMP] cannot read message, try again later")
	}
	s.w.WriteString(first)
	s.w.WriteString("\r\n")
	n, err := writeBody(s.w, body, bodyLines)
	if err != nil {
		s.log.Debug("pop3 write failed", "err", err)
		return false
	}
	if bodyLines < 0 && n != m.wire {
		// Cannot happen while bodies are immutable; the client was told
		// a size, so say loudly if it ever does.
		s.log.Error("pop3 sent size differs from announced size", "uid", m.UID, "announced", m.wire, "sent", n)
	}
	return s.flush()
}

// DELE: RFC 1939 §5. It only marks; QUIT expunges.
func (s *session) cmdDELE(cmd Command) bool {
	if len(cmd.Args) != 1 {
		return s.reply("-ERR usage: DELE msg")
	}
	m, n, e := s.msgArg(cmd.Args[0])
	if e != "" {
		return s.reply(e)
	}
	m.deleted = true
	return s.replyf("+OK message %d deleted", n)
}

// NOOP: RFC 1939 §5.
func (s *session) cmdNOOP(cmd Command) bool {
	if len(cmd.Args) != 0 {
		return s.reply("-ERR NOOP takes no arguments")
	}
	return s.reply("+OK")
}

// RSET: RFC 1939 §5.
func (s *session) cmdRSET(cmd Command) bool {
	if len(cmd.Args) != 0 {
		return s.reply("-ERR RSET takes no arguments")
	}
	for i := range s.drop.msgs {
		s.drop.msgs[i].deleted = false
	}
	n, size := s.drop.stat()
	return s.replyf("+OK maildrop has %d messages (%d octets)", n, size)
}

// QUIT: RFC 1939 §4 (AUTHORIZATION) and §6 (UPDATE). In TRANSACTION the
// marked messages are expunged by ONE command through the leader; the
// answer waits until this node has applied it (read-your-writes). If the
// commit fails, nothing further is deleted and the answer is
// -ERR [SYS/TEMP] (RFC 2449 §8.1.2).
func (s *session) cmdQUIT(cmd Command) bool {
	if len(cmd.Args) != 0 {
		return s.reply("-ERR QUIT takes no arguments")
	}
	if s.state != stateTransaction {
		s.reply("+OK raftmail POP3 server signing off")
		return false
	}
	s.state = stateUpdate
	uids, n := s.drop.marked()
	if n == 0 {
		s.releaseLease()
		s.reply("+OK raftmail POP3 server signing off")
		return false
	}
	removed, err := s.expunge(uids)
	s.releaseLease()
	if err != nil {
		if errors.Is(err, raftstore.ErrNoSuchMailbox) || errors.Is(err, raftstore.ErrNoSuchUser) {
			s.log.Warn("pop3 expunge refused", "err", err)
			s.reply("-ERR [SYS/PERM] cannot delete messages: maildrop no longer exists")
			return false
		}
		s.log.Warn("pop3 expunge failed", "marked", n, "err", err)
		s.reply("-ERR [SYS/TEMP] could not delete the marked messages, try again later")
		return false
	}
	left, _ := s.drop.stat()
	s.log.Info("pop3 expunged", "marked", n, "removed", removed)
	s.replyf("+OK raftmail POP3 server signing off (%d messages left)", left)
	return false
}

// expunge renews the lock (so a session that lost it deletes nothing) and
// proposes the Expunge. It never sends an empty UID list, which would mean
// the whole mailbox.
func (s *session) expunge(uids []command.UIDRange) (int, error) {
	if len(uids) == 0 {
		return 0, nil
	}
	if err := s.lease.renew(s.srv.ctx); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(s.srv.ctx, s.srv.cfg.CommitTimeout)
	defer cancel()
	res, err := s.srv.be.Propose(ctx, &command.Command{Payload: &command.Expunge{
		Account: s.account, MailboxID: s.drop.mailboxID, UIDs: uids,
	}})
	if err != nil {
		return 0, fmt.Errorf("expunge: %w", err)
	}
	if err := res.Err(); err != nil {
		return 0, fmt.Errorf("expunge: %w", err)
	}
	return len(res.UIDs), nil
}
