package raftstore

import (
	"bytes"
	"encoding/binary"
	"strings"

	"github.com/raftmail/raftmail/raftstore/command"
)

// ---- mailboxes ----

func (t *txn) mailbox(id uint64) (Mailbox, bool) {
	v := t.b(bMailboxes).Get(u64(id))
	if v == nil {
		return Mailbox{}, false
	}
	var m Mailbox
	if err := decode(v, &m); err != nil {
		panic(storageError{err})
	}
	return m, true
}

func (t *txn) putMailbox(m Mailbox) { t.put(bMailboxes, u64(m.ID), encode(m)) }

func (t *txn) mailboxByName(account, name string) (Mailbox, bool) {
	v := t.b(bMboxNames).Get(mboxNameKey(account, name))
	if len(v) != 8 {
		return Mailbox{}, false
	}
	return t.mailbox(binary.BigEndian.Uint64(v))
}

// ownMailbox returns a mailbox by ID if it belongs to the account.
func (t *txn) ownMailbox(account string, id uint64) (Mailbox, error) {
	m, ok := t.mailbox(id)
	if !ok || m.Account != account {
		return Mailbox{}, errf(ErrNoSuchMailbox, "mailbox %d", id)
	}
	return m, nil
}

func (t *txn) mailboxesOf(account string) []Mailbox {
	prefix := []byte(account + "\x00")
	var out []Mailbox
	c := t.b(bMboxNames).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if m, ok := t.mailbox(binary.BigEndian.Uint64(v)); ok {
			out = append(out, m)
		}
	}
	return out
}

func (t *txn) nextCounter(key []byte) uint64 {
	meta := t.b(bMeta)
	n := getU64(meta, key) + 1
	t.put(bMeta, key, u64(n))
	return n
}

// createMailbox creates one mailbox; the name must be normalised and free.
func (t *txn) createMailbox(account, name, use string, subscribed bool) Mailbox {
	m := Mailbox{
		ID:          t.nextCounter(kNextMailboxID),
		Account:     account,
		Name:        name,
		SpecialUse:  use,
		Subscribed:  subscribed,
		UIDValidity: uint32(t.nextCounter(kNextUIDValid)),
		UIDNext:     1,
	}
	t.putMailbox(m)
	t.put(bMboxNames, mboxNameKey(account, name), u64(m.ID))
	t.changes = append(t.changes, MailboxChanged{Account: account, MailboxID: m.ID, Name: name})
	return m
}

var specialUses = []string{`\All`, `\Archive`, `\Drafts`, `\Flagged`, `\Junk`, `\Sent`, `\Trash`}

func (t *txn) createMailboxCmd(p *command.CreateMailbox) Result {
	if _, ok := t.account(p.Account); !ok {
		return fail(errf(ErrNoSuchUser, "%s", p.Account))
	}
	name, err := NormalizeMailboxName(p.Name)
	if err != nil {
		return fail(err)
	}
	if p.SpecialUse != "" && !hasFlag(specialUses, p.SpecialUse) {
		return fail(errf(ErrInvalid, "unknown special use %s", p.SpecialUse))
	}
	if _, ok := t.mailboxByName(p.Account, name); ok {
		return fail(errf(ErrMailboxExists, "%s", name))
	}
	// Create missing parents (RFC 3501 §6.3.3).
	parts := strings.Split(name, "/")
	for i := 1; i < len(parts); i++ {
		parent := strings.Join(parts[:i], "/")
		if _, ok := t.mailboxByName(p.Account, parent); !ok {
			t.createMailbox(p.Account, parent, "", false)
		}
	}
	m := t.createMailbox(p.Account, name, canonicalUse(p.SpecialUse), false)
	return Result{MailboxID: m.ID, UIDValidity: m.UIDValidity}
}

func canonicalUse(u string) string {
	for _, s := range specialUses {
		if strings.EqualFold(s, u) {
			return s
		}
	}
	return ""
}

// dropMailbox removes a mailbox with all its messages.
func (t *txn) dropMailbox(m Mailbox) {
	var uids []uint32
	t.eachMessage(m.ID, nil, func(msg *Message) { uids = append(uids, msg.UID) })
	for _, uid := range uids {
		t.removeMessage(&m, uid)
	}
	t.del(bMailboxes, u64(m.ID))
	t.del(bMboxNames, mboxNameKey(m.Account, m.Name))
	t.changes = append(t.changes, MailboxChanged{Account: m.Account, MailboxID: m.ID, Name: m.Name, Deleted: true})
}

func (t *txn) deleteMailboxCmd(p *command.DeleteMailbox) Result {
	name, err := NormalizeMailboxName(p.Name)
	if err != nil {
		return fail(err)
	}
	if name == "INBOX" {
		return fail(errf(ErrMailboxProtect, "INBOX cannot be deleted"))
	}
	m, ok := t.mailboxByName(p.Account, name)
	if !ok {
		return fail(errf(ErrNoSuchMailbox, "%s", name))
	}
	t.dropMailbox(m)
	return Result{MailboxID: m.ID}
}

func (t *txn) renameMailbox(p *command.RenameMailbox) Result {
	from, err := NormalizeMailboxName(p.Name)
	if err != nil {
		return fail(err)
	}
	to, err := NormalizeMailboxName(p.NewName)
	if err != nil {
		return fail(err)
	}
	src, ok := t.mailboxByName(p.Account, from)
	if !ok {
		return fail(errf(ErrNoSuchMailbox, "%s", from))
	}
	if _, ok := t.mailboxByName(p.Account, to); ok {
		return fail(errf(ErrMailboxExists, "%s", to))
	}
	if to == from || strings.HasPrefix(to, from+"/") {
		return fail(errf(ErrInvalid, "cannot rename %s into itself", from))
	}
	if from == "INBOX" {
		// RFC 3501 §6.3.5: renaming INBOX moves its messages into a new
		// mailbox and leaves INBOX empty.
		dst := t.createMailbox(p.Account, to, "", false)
		res := t.copyMsgs(&command.Copy{Account: p.Account, SrcID: src.ID, DstID: dst.ID, Move: true,
			UIDs: []command.UIDRange{{Start: 1, Stop: 0}}})
		res.MailboxID = dst.ID
		return res
	}
	var all []Mailbox
	for _, m := range t.mailboxesOf(p.Account) {
		if m.Name == from || strings.HasPrefix(m.Name, from+"/") {
			all = append(all, m)
		}
	}
	for _, m := range all {
		newName := to + strings.TrimPrefix(m.Name, from)
		if _, clash := t.mailboxByName(p.Account, newName); clash {
			return fail(errf(ErrMailboxExists, "%s", newName))
		}
	}
	for _, m := range all {
		old := m.Name
		t.del(bMboxNames, mboxNameKey(p.Account, old))
		m.Name = to + strings.TrimPrefix(old, from)
		t.putMailbox(m)
		t.put(bMboxNames, mboxNameKey(p.Account, m.Name), u64(m.ID))
		t.changes = append(t.changes, MailboxChanged{Account: p.Account, MailboxID: m.ID, Name: m.Name, OldName: old})
	}
	return Result{MailboxID: src.ID}
}

func (t *txn) subscribe(p *command.Subscribe) Result {
	name, err := NormalizeMailboxName(p.Name)
	if err != nil {
		return fail(err)
	}
	m, ok := t.mailboxByName(p.Account, name)
	if !ok {
		return fail(errf(ErrNoSuchMailbox, "%s", name))
	}
	m.Subscribed = p.Subscribed
	t.putMailbox(m)
	t.changes = append(t.changes, MailboxChanged{Account: p.Account, MailboxID: m.ID, Name: m.Name})
	return Result{MailboxID: m.ID}
}

// ---- messages ----

// eachMessage calls fn for each message of a mailbox within the ranges (all
// when ranges is empty), in UID order. fn must not write to the messages
// bucket; collect first, then write.
func (t *txn) eachMessage(mbox uint64, ranges []command.UIDRange, fn func(*Message)) {
	eachMessage(t.b(bMessages), mbox, ranges, func(m *Message) error { fn(m); return nil })
}

func (t *txn) getMessage(mbox uint64, uid uint32) (Message, bool) {
	v := t.b(bMessages).Get(msgKey(mbox, uid))
	if v == nil {
		return Message{}, false
	}
	var m Message
	if err := decode(v, &m); err != nil {
		panic(storageError{err})
	}
	return m, true
}

// addMessage stores a message in a mailbox, taking a reference on its
// blob (which must exist: see ensureBlob), and updates counters and quota.
func (t *txn) addMessage(m *Mailbox, blobID [32]byte, size int64, flags []string, idate int64) uint32 {
	t.addBlobRef(blobID)
	if idate == 0 {
		idate = t.time
	}
	msg := Message{UID: m.UIDNext, ModSeq: t.index, Flags: normFlags(flags), InternalDate: idate, Size: size, BlobID: blobID}
	t.put(bMessages, msgKey(m.ID, msg.UID), encode(msg))
	m.UIDNext++
	m.Messages++
	m.Bytes += size
	m.HighestModSeq = t.index
	m.countFlags(msg.Flags, 1)
	t.putMailbox(*m)
	if a, ok := t.account(m.Account); ok {
		a.Used += size
		t.putAccount(a)
	}
	t.changes = append(t.changes, MessageAdded{Account: m.Account, MailboxID: m.ID, UID: msg.UID, ModSeq: t.index, Flags: msg.Flags})
	return msg.UID
}

func (m *Mailbox) countFlags(flags []string, d int) {
	if !hasFlag(flags, FlagSeen) {
		m.Unseen = uint32(int(m.Unseen) + d)
	}
	if hasFlag(flags, FlagDeleted) {
		m.Deleted = uint32(int(m.Deleted) + d)
	}
}

// removeMessage deletes one message and drops its blob reference.
func (t *txn) removeMessage(m *Mailbox, uid uint32) bool {
	msg, ok := t.getMessage(m.ID, uid)
	if !ok {
		return false
	}
	t.del(bMessages, msgKey(m.ID, uid))
	m.Messages--
	m.Bytes -= msg.Size
	m.HighestModSeq = t.index
	m.countFlags(msg.Flags, -1)
	t.putMailbox(*m)
	if a, ok := t.account(m.Account); ok {
		a.Used -= msg.Size
		t.putAccount(a)
	}
	t.unrefBlob(msg.BlobID)
	return true
}

func (t *txn) blobInfo(id [32]byte) (blobInfo, bool) {
	v := t.b(bBlobInfo).Get(id[:])
	if v == nil {
		return blobInfo{}, false
	}
	var bi blobInfo
	if err := decode(v, &bi); err != nil {
		panic(storageError{err})
	}
	return bi, true
}

// ensureBlob makes sure the command's body is stored (one copy per content
// hash): inline data is written now; a chunked body must have all its
// pieces uploaded. A blob left without references is removed again by
// dropUnreferenced.
func (t *txn) ensureBlob(b *command.Blob) error {
	if b.Size < 0 || (len(b.Data) == 0 && b.Chunks == 0) {
		return errf(ErrInvalid, "empty or malformed message body")
	}
	if _, ok := t.blobInfo(b.ID); ok {
		return nil
	}
	bi := blobInfo{Size: b.Size, CSize: int64(len(b.Data)), Meta: b.Meta, Chunks: b.Chunks}
	if b.Chunks == 0 {
		bi.Num = t.nextCounter(kNextBlobNum)
		t.put(bBlobs, u64(bi.Num), b.Data)
	} else {
		bi.CSize = 0
		for seq := uint32(0); seq < b.Chunks; seq++ {
			v := t.b(bChunks).Get(chunkKey(b.ID, seq))
			if v == nil {
				return errf(ErrInvalid, "body %x: piece %d of %d was not uploaded", b.ID[:8], seq, b.Chunks)
			}
			bi.CSize += int64(len(v))
		}
	}
	t.put(bBlobInfo, b.ID[:], encode(bi))
	return nil
}

// blobChunk stores one uploaded piece of a large body.
func (t *txn) blobChunk(p *command.BlobChunk) Result {
	if len(p.Data) == 0 {
		return fail(errf(ErrInvalid, "empty body piece"))
	}
	if _, ok := t.blobInfo(p.ID); ok {
		return Result{} // already stored complete
	}
	t.put(bChunks, chunkKey(p.ID, p.Seq), p.Data)
	t.put(bChunkAge, append(u64(uint64(t.time)), chunkKey(p.ID, p.Seq)...), nil)
	return Result{}
}

const chunkTTL = int64(3600 * 1e9)

// pruneChunks removes pieces that no body claimed within an hour.
func (t *txn) pruneChunks() {
	cutoff := t.time - chunkTTL
	for _, k := range t.expired(bChunkAge, cutoff) {
		t.del(bChunkAge, k)
		var id [32]byte
		copy(id[:], k[8:40])
		if _, claimed := t.blobInfo(id); !claimed {
			t.del(bChunks, k[8:])
		}
	}
}

// addBlobRef takes a reference on a stored blob.
func (t *txn) addBlobRef(id [32]byte) {
	bi, ok := t.blobInfo(id)
	if !ok {
		panic(storageError{errf(ErrNoSuchMessage, "blob %x missing", id[:8])})
	}
	bi.Refs++
	t.put(bBlobInfo, id[:], encode(bi))
}

func (t *txn) unrefBlob(id [32]byte) {
	bi, ok := t.blobInfo(id)
	if !ok {
		return
	}
	if bi.Refs > 0 {
		bi.Refs--
	}
	if bi.Refs > 0 {
		t.put(bBlobInfo, id[:], encode(bi))
		return
	}
	t.del(bBlobInfo, id[:])
	if bi.Num != 0 {
		t.del(bBlobs, u64(bi.Num))
	}
	for seq := uint32(0); seq < bi.Chunks; seq++ {
		t.del(bChunks, chunkKey(id, seq))
	}
}

// dropUnreferenced removes a blob that ensureBlob stored but no message
// took (every recipient refused).
func (t *txn) dropUnreferenced(id [32]byte) {
	if bi, ok := t.blobInfo(id); ok && bi.Refs == 0 {
		t.unrefBlob(id)
	}
}

func (t *txn) deliver(p *command.Deliver) Result {
	if err := t.ensureBlob(&p.Blob); err != nil {
		return fail(err)
	}
	defer t.dropUnreferenced(p.Blob.ID)
	res := Result{Rcpts: make([]RcptResult, 0, len(p.Rcpts))}
	done := make(map[string]RcptResult) // lookup only, never ranged
	for _, rcpt := range p.Rcpts {
		rr := RcptResult{Rcpt: rcpt}
		acct, err := resolve(t.tx, rcpt)
		if err != nil {
			rr.Status = statusOf(err)
			res.Rcpts = append(res.Rcpts, rr)
			continue
		}
		if prev, ok := done[acct]; ok {
			prev.Rcpt = rcpt
			res.Rcpts = append(res.Rcpts, prev)
			continue
		}
		a, _ := t.account(acct)
		if a.OverQuota(p.Blob.Size) {
			rr.Status = statusOf(errf(ErrQuotaExceeded, "mailbox of %s is full", acct))
			res.Rcpts = append(res.Rcpts, rr)
			continue
		}
		flags := p.Flags
		mb, ok := t.mailboxByName(acct, "INBOX")
		if p.Junk {
			if junk, jok := t.specialUse(acct, `\Junk`); jok {
				mb, ok = junk, true
			}
			flags = append(append([]string(nil), flags...), FlagJunk)
		}
		if !ok {
			mb = t.createMailbox(acct, "INBOX", "", true)
		}
		uid := t.addMessage(&mb, p.Blob.ID, p.Blob.Size, flags, p.InternalDate)
		rr.Account, rr.MailboxID, rr.UID = acct, mb.ID, uid
		done[acct] = rr
		res.Rcpts = append(res.Rcpts, rr)
	}
	return res
}

func (t *txn) specialUse(account, use string) (Mailbox, bool) {
	for _, m := range t.mailboxesOf(account) {
		if m.SpecialUse == use {
			return m, true
		}
	}
	return Mailbox{}, false
}

func (t *txn) appendMsg(p *command.Append) Result {
	m, err := t.ownMailbox(p.Account, p.MailboxID)
	if err != nil {
		return fail(err)
	}
	if err := t.ensureBlob(&p.Blob); err != nil {
		return fail(err)
	}
	defer t.dropUnreferenced(p.Blob.ID)
	a, _ := t.account(p.Account)
	if a.OverQuota(p.Blob.Size) {
		return fail(errf(ErrQuotaExceeded, "mailbox of %s is full", p.Account))
	}
	uid := t.addMessage(&m, p.Blob.ID, p.Blob.Size, p.Flags, p.InternalDate)
	return Result{MailboxID: m.ID, UIDValidity: m.UIDValidity, UIDs: []uint32{uid}, ModSeq: t.index}
}

func applyFlags(cur []string, op command.FlagOp, flags []string) []string {
	switch op {
	case command.FlagsAdd:
		return normFlags(append(append([]string(nil), cur...), flags...))
	case command.FlagsRemove:
		var out []string
		for _, f := range cur {
			if !hasFlag(flags, f) {
				out = append(out, f)
			}
		}
		return normFlags(out)
	default:
		return normFlags(flags)
	}
}

func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (t *txn) setFlags(p *command.SetFlags) Result {
	m, err := t.ownMailbox(p.Account, p.MailboxID)
	if err != nil {
		return fail(err)
	}
	var matched []Message
	t.eachMessage(m.ID, p.UIDs, func(msg *Message) { matched = append(matched, *msg) })
	res := Result{MailboxID: m.ID, ModSeq: t.index}
	changed := false
	for _, msg := range matched {
		if p.UnchangedSince > 0 && msg.ModSeq > p.UnchangedSince {
			res.Failed = append(res.Failed, msg.UID)
			continue
		}
		res.UIDs = append(res.UIDs, msg.UID)
		nf := applyFlags(msg.Flags, p.Op, p.Flags)
		if sameFlags(nf, msg.Flags) {
			continue
		}
		m.countFlags(msg.Flags, -1)
		m.countFlags(nf, 1)
		msg.Flags, msg.ModSeq = nf, t.index
		t.put(bMessages, msgKey(m.ID, msg.UID), encode(msg))
		t.changes = append(t.changes, FlagsChanged{Account: m.Account, MailboxID: m.ID, UID: msg.UID, Flags: nf, ModSeq: t.index, Origin: p.Origin})
		changed = true
	}
	if changed {
		m.HighestModSeq = t.index
		t.putMailbox(m)
	}
	return res
}

func (t *txn) expunge(p *command.Expunge) Result {
	m, err := t.ownMailbox(p.Account, p.MailboxID)
	if err != nil {
		return fail(err)
	}
	var uids []uint32
	t.eachMessage(m.ID, p.UIDs, func(msg *Message) {
		if !p.OnlyDeleted || msg.HasFlag(FlagDeleted) {
			uids = append(uids, msg.UID)
		}
	})
	for _, uid := range uids {
		t.removeMessage(&m, uid)
	}
	if len(uids) > 0 {
		t.changes = append(t.changes, MessagesExpunged{Account: m.Account, MailboxID: m.ID, UIDs: uids, ModSeq: t.index})
	}
	return Result{MailboxID: m.ID, UIDs: uids, ModSeq: t.index}
}

func (t *txn) copyMsgs(p *command.Copy) Result {
	src, err := t.ownMailbox(p.Account, p.SrcID)
	if err != nil {
		return fail(err)
	}
	dst, err := t.ownMailbox(p.Account, p.DstID)
	if err != nil {
		return fail(err)
	}
	if src.ID == dst.ID && p.Move {
		return fail(errf(ErrInvalid, "cannot move a message into its own mailbox"))
	}
	var msgs []Message
	var total int64
	t.eachMessage(src.ID, p.UIDs, func(msg *Message) { msgs = append(msgs, *msg); total += msg.Size })
	if a, _ := t.account(p.Account); !p.Move && a.OverQuota(total) {
		return fail(errf(ErrQuotaExceeded, "mailbox of %s is full", p.Account))
	}
	res := Result{MailboxID: dst.ID, UIDValidity: dst.UIDValidity, ModSeq: t.index}
	for _, msg := range msgs {
		flags := applyFlags(applyFlags(msg.Flags, command.FlagsAdd, p.AddFlags), command.FlagsRemove, p.DelFlags)
		uid := t.addMessage(&dst, msg.BlobID, msg.Size, flags, msg.InternalDate)
		res.UIDs = append(res.UIDs, uid)
		res.SrcUIDs = append(res.SrcUIDs, msg.UID)
		if src.ID == dst.ID {
			src = dst
		}
	}
	if p.Move && len(msgs) > 0 {
		for _, msg := range msgs {
			t.removeMessage(&src, msg.UID)
		}
		t.changes = append(t.changes, MessagesExpunged{Account: src.Account, MailboxID: src.ID, UIDs: res.SrcUIDs, ModSeq: t.index})
	}
	return res
}
