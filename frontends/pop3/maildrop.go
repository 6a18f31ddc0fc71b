package pop3

import (
	"errors"
	"fmt"

	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// maildrop is the INBOX as it stood at login (RFC 1939 §7: message numbers
// and sizes stay fixed for the session). Messages that arrive later are
// not seen; messages another client expunges meanwhile keep their number
// and fail on RETR/TOP.
type maildrop struct {
	mailboxID   uint64
	uidValidity uint32
	msgs        []dropMsg
}

type dropMsg struct {
	msgInfo
	wire    int64 // octets as sent, before dot-stuffing
	deleted bool  // marked by DELE
}

// loadMaildrop reads the INBOX in one view and works out every message's
// size on the wire. A body whose wire size is not cached is read once;
// bodies are immutable and content-addressed, so the cache never goes
// stale.
func (s *Server) loadMaildrop(account string) (*maildrop, error) {
	info, err := s.be.Maildrop(account)
	if err != nil {
		return nil, err
	}
	d := &maildrop{mailboxID: info.MailboxID, uidValidity: info.UIDValidity, msgs: make([]dropMsg, len(info.Msgs))}
	for i, m := range info.Msgs {
		d.msgs[i] = dropMsg{msgInfo: m}
		if n, ok := s.sizes.get(m.BlobID); ok {
			d.msgs[i].wire = n
			continue
		}
		body, err := s.be.Body(m.BlobID)
		switch {
		case err == nil:
			n := wireSize(body)
			s.sizes.put(m.BlobID, n)
			d.msgs[i].wire = n
		case errors.Is(err, raftstore.ErrNoSuchMessage):
			// Expunged since the view: RETR will say so; the raw size
			// is the best guess meanwhile.
			d.msgs[i].wire = m.Size
		default:
			return nil, fmt.Errorf("size of uid %d: %w", m.UID, err)
		}
	}
	return d, nil
}

// stat counts the messages not marked deleted and their octets.
func (d *maildrop) stat() (n int, size int64) {
	for _, m := range d.msgs {
		if !m.deleted {
			n++
			size += m.wire
		}
	}
	return n, size
}

// get returns message number n (1-based) unless it is out of range or
// marked deleted.
func (d *maildrop) get(n int) (*dropMsg, bool) {
	if n < 1 || n > len(d.msgs) || d.msgs[n-1].deleted {
		return nil, false
	}
	return &d.msgs[n-1], true
}

// uidl is the unique-id of a message (RFC 1939 §7 UIDL): "UIDVALIDITY.UID",
// both assigned by the FSM, so identical on every node and stable across
// sessions.
func (d *maildrop) uidl(m *dropMsg) string {
	return fmt.Sprintf("%d.%d", d.uidValidity, m.UID)
}

// marked returns the UIDs marked deleted as ranges, nil if none.
func (d *maildrop) marked() ([]command.UIDRange, int) {
	var rs []command.UIDRange
	n := 0
	for _, m := range d.msgs {
		if !m.deleted {
			continue
		}
		n++
		if k := len(rs); k > 0 && rs[k-1].Stop+1 == m.UID {
			rs[k-1].Stop = m.UID
			continue
		}
		rs = append(rs, command.UIDRange{Start: m.UID, Stop: m.UID})
	}
	return rs, n
}
