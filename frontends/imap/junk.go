package imap

import (
	"strings"

	"github.com/raftmail/raftmail/raftstore"
)

// junkMoved tells the configured JunkTrainer about a committed COPY or
// MOVE between Junk and another mailbox: into Junk is spam, out of it is
// ham (the user's judgement trains the Bayes filter).
func (s *session) junkMoved(srcID uint64, dst raftstore.Mailbox, uids []uint32) {
	t := s.srv.cfg.JunkTrainer
	if t == nil || len(uids) == 0 {
		return
	}
	var src raftstore.Mailbox
	if err := s.view(func(tx *raftstore.ReadTx) (err error) { src, err = tx.Mailbox(srcID); return }); err != nil {
		return
	}
	srcJunk, dstJunk := isJunk(src), isJunk(dst)
	if srcJunk == dstJunk {
		return
	}
	t.JunkMoved(s.account, dst.ID, append([]uint32(nil), uids...), dstJunk)
}

func isJunk(m raftstore.Mailbox) bool {
	return strings.EqualFold(m.SpecialUse, `\Junk`)
}
