package imap

import (
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// delim is the hierarchy separator of every mailbox name.
const delim = '/'

// mailboxFlags are announced in FLAGS; PERMANENTFLAGS adds \* (keywords
// may be created).
var mailboxFlags = []imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagSeen, imap.FlagDraft,
	imap.FlagJunk, imap.FlagNotJunk, imap.FlagForwarded, imap.FlagMDNSent}

// cleanName normalises a client-supplied name: INBOX in any case, a
// trailing separator dropped (RFC 9051 §6.3.4).
func cleanName(name string) string {
	name = strings.TrimSuffix(name, string(delim))
	if n, err := raftstore.NormalizeMailboxName(name); err == nil {
		return n
	}
	return name
}

// Select implements SELECT and EXAMINE (RFC 9051 §6.3.2, §6.3.3). The
// mailbox is read once from local state; a second session selecting it
// shares the same view.
func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.unselect()
	var m raftstore.Mailbox
	err := s.view(func(tx *raftstore.ReadTx) error {
		var err error
		m, err = tx.MailboxByName(s.account, cleanName(name))
		return err
	})
	if err != nil {
		return nil, s.fail(opPlain, err)
	}
	mb, st, info, err := s.srv.reg.acquire(s.account, m.ID)
	if err != nil {
		return nil, s.fail(opPlain, err)
	}
	sel := &selection{mb: mb, st: st, name: m.Name, readOnly: options != nil && options.ReadOnly}
	s.selMu.Lock()
	s.sel = sel
	s.selMu.Unlock()
	data := &imap.SelectData{
		Flags:          mailboxFlags,
		PermanentFlags: append(append([]imap.Flag(nil), mailboxFlags...), imap.FlagWildcard),
		NumMessages:    info.count,
		UIDNext:        imap.UID(info.uidNext),
		UIDValidity:    info.uidValidity,
	}
	if sel.readOnly {
		data.PermanentFlags = nil
	}
	data.FirstUnseenSeqNum = s.firstUnseen(sel)
	s.logger.Debug("selected", "mailbox_id", m.ID, "messages", info.count, "read_only", sel.readOnly)
	return data, nil
}

// firstUnseen returns the client sequence number of the first message
// without \Seen (IMAP4rev1 UNSEEN response code), 0 if none. The
// mailbox's unseen count answers "none" without reading a message: in a
// mailbox where everything is read, the scan decoded every record.
func (s *session) firstUnseen(sel *selection) uint32 {
	var uid uint32
	_ = s.view(func(tx *raftstore.ReadTx) error {
		if m, err := tx.Mailbox(sel.mb.id); err != nil || m.Unseen == 0 {
			return err
		}
		return tx.Messages(sel.mb.id, nil, func(m *raftstore.Message) error {
			if !m.HasFlag(raftstore.FlagSeen) {
				uid = m.UID
				return errStop
			}
			return nil
		})
	})
	if uid == 0 {
		return 0
	}
	sel.mb.mu.Lock()
	defer sel.mb.mu.Unlock()
	return sel.st.EncodeSeqNum(sel.mb.seqOf(uid))
}

// exists checks a mailbox on local state before a proposal, so that
// garbage never reaches the raft log. Local state holds this session's own
// writes (read-your-writes); a mailbox created through another node a
// moment ago may not be visible yet, and the client retries.
func (s *session) exists(name string) error {
	_, err := s.destination(name)
	return err
}

// Create implements CREATE (RFC 9051 §6.3.4) with CREATE-SPECIAL-USE
// (RFC 6154 §3).
func (s *session) Create(name string, options *imap.CreateOptions) error {
	if _, err := raftstore.NormalizeMailboxName(cleanName(name)); err != nil {
		return noCode(imap.ResponseCodeCannot, "Invalid mailbox name")
	}
	p := &command.CreateMailbox{Account: s.account, Name: cleanName(name)}
	if options != nil && len(options.SpecialUse) > 0 {
		if len(options.SpecialUse) > 1 {
			return noCode(codeUseAttr, "Only one special use per mailbox")
		}
		p.SpecialUse = string(options.SpecialUse[0])
	}
	_, err := s.propose(p)
	if err != nil && p.SpecialUse != "" && strings.Contains(err.Error(), "special use") {
		return noCode(codeUseAttr, "Unsupported special use")
	}
	return s.fail(opPlain, err)
}

// Delete implements DELETE (RFC 9051 §6.3.5).
func (s *session) Delete(name string) error {
	if err := s.exists(name); err != nil {
		return s.fail(opPlain, err)
	}
	_, err := s.propose(&command.DeleteMailbox{Account: s.account, Name: cleanName(name)})
	return s.fail(opPlain, err)
}

// Rename implements RENAME (RFC 9051 §6.3.6); renaming INBOX moves its
// messages (done by the store).
func (s *session) Rename(name, newName string, _ *imap.RenameOptions) error {
	if err := s.exists(name); err != nil {
		return s.fail(opPlain, err)
	}
	if _, err := raftstore.NormalizeMailboxName(cleanName(newName)); err != nil {
		return noCode(imap.ResponseCodeCannot, "Invalid mailbox name")
	}
	_, err := s.propose(&command.RenameMailbox{Account: s.account, Name: cleanName(name), NewName: cleanName(newName)})
	return s.fail(opPlain, err)
}

// Subscribe implements SUBSCRIBE (RFC 9051 §6.3.7).
func (s *session) Subscribe(name string) error {
	if err := s.exists(name); err != nil {
		return s.fail(opPlain, err)
	}
	_, err := s.propose(&command.Subscribe{Account: s.account, Name: cleanName(name), Subscribed: true})
	return s.fail(opPlain, err)
}

// Unsubscribe implements UNSUBSCRIBE (RFC 9051 §6.3.8).
func (s *session) Unsubscribe(name string) error {
	_, err := s.propose(&command.Subscribe{Account: s.account, Name: cleanName(name), Subscribed: false})
	return s.fail(opPlain, err)
}

// Status implements STATUS (RFC 9051 §6.3.11) from the mailbox record's
// counters, without reading messages.
func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	var m raftstore.Mailbox
	err := s.view(func(tx *raftstore.ReadTx) error {
		var err error
		m, err = tx.MailboxByName(s.account, cleanName(name))
		return err
	})
	if err != nil {
		return nil, s.fail(opPlain, err)
	}
	return s.statusData(&m, options), nil
}

func (s *session) statusData(m *raftstore.Mailbox, o *imap.StatusOptions) *imap.StatusData {
	d := &imap.StatusData{Mailbox: m.Name}
	u32 := func(v uint32) *uint32 { return &v }
	if o.NumMessages {
		d.NumMessages = u32(m.Messages)
	}
	if o.NumRecent {
		d.NumRecent = u32(0)
	}
	if o.UIDNext {
		d.UIDNext = imap.UID(m.UIDNext)
	}
	if o.UIDValidity {
		d.UIDValidity = m.UIDValidity
	}
	if o.NumUnseen {
		d.NumUnseen = u32(m.Unseen)
	}
	if o.NumDeleted {
		d.NumDeleted = u32(m.Deleted)
	}
	if o.Size {
		size := m.Bytes
		d.Size = &size
	}
	if o.AppendLimit {
		d.AppendLimit = u32(s.srv.cfg.MaxAppendSize)
	}
	return d
}

// List implements LIST and LSUB (RFC 9051 §6.3.9) with LIST-EXTENDED
// selection and return options (RFC 5258), LIST-STATUS (RFC 5819) and
// SPECIAL-USE (RFC 6154).
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if options == nil {
		options = &imap.ListOptions{}
	}
	if len(patterns) == 1 && patterns[0] == "" {
		// RFC 9051 §6.3.9: an empty pattern asks for the separator.
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	var mbs []raftstore.Mailbox
	if err := s.view(func(tx *raftstore.ReadTx) error {
		var err error
		mbs, err = tx.Mailboxes(s.account)
		return err
	}); err != nil {
		return s.fail(opPlain, err)
	}
	for _, d := range listData(mbs, ref, patterns, options) {
		if options.ReturnStatus != nil && d.mb != nil {
			d.Status = s.statusData(d.mb, options.ReturnStatus)
		}
		if err := w.WriteList(&d.ListData); err != nil {
			return err
		}
	}
	return nil
}

type listEntry struct {
	imap.ListData
	mb *raftstore.Mailbox
}

// listData computes the LIST answer: matching mailboxes plus, as \Noselect,
// missing parents of existing mailboxes.
func listData(mbs []raftstore.Mailbox, ref string, patterns []string, o *imap.ListOptions) []listEntry {
	byName := make(map[string]*raftstore.Mailbox, len(mbs))
	names := make([]string, 0, len(mbs))
	hasChild := make(map[string]bool)
	for i := range mbs {
		byName[mbs[i].Name] = &mbs[i]
		names = append(names, mbs[i].Name)
		parts := strings.Split(mbs[i].Name, string(delim))
		for j := 1; j < len(parts); j++ {
			p := strings.Join(parts[:j], string(delim))
			if !hasChild[p] {
				hasChild[p] = true
				if _, ok := byName[p]; !ok {
					names = append(names, p)
				}
			}
		}
	}
	sort.Strings(names)
	var out []listEntry
	seen := make(map[string]bool)
	for _, name := range names {
		if seen[name] || !matchAny(name, ref, patterns) {
			continue
		}
		seen[name] = true
		m := byName[name]
		if e, ok := listEntryFor(name, m, hasChild[name], o); ok {
			out = append(out, e)
		}
	}
	return out
}

func matchAny(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if strings.EqualFold(p, "INBOX") {
			p = "INBOX"
		}
		if imapserver.MatchList(name, delim, ref, p) {
			return true
		}
	}
	return false
}

func listEntryFor(name string, m *raftstore.Mailbox, children bool, o *imap.ListOptions) (listEntry, bool) {
	e := listEntry{ListData: imap.ListData{Mailbox: name, Delim: delim}, mb: m}
	if m == nil {
		if o.SelectSubscribed || o.SelectSpecialUse {
			return e, false
		}
		e.Attrs = append(e.Attrs, imap.MailboxAttrNoSelect)
	} else {
		if o.SelectSubscribed && !m.Subscribed {
			return e, false
		}
		if o.SelectSpecialUse && m.SpecialUse == "" {
			return e, false
		}
		if m.Subscribed && (o.ReturnSubscribed || o.SelectSubscribed) {
			e.Attrs = append(e.Attrs, imap.MailboxAttrSubscribed)
		}
		if m.SpecialUse != "" {
			e.Attrs = append(e.Attrs, imap.MailboxAttr(m.SpecialUse))
		}
	}
	if children {
		e.Attrs = append(e.Attrs, imap.MailboxAttrHasChildren)
	} else {
		e.Attrs = append(e.Attrs, imap.MailboxAttrHasNoChildren)
	}
	return e, true
}
