package imap

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/raftstore/command"
)

const multipartMail = "From: Carol <carol@remote.test>\r\nTo: alice@example.test\r\nSubject: parts\r\n" +
	"Date: Tue, 03 Jan 2006 10:00:00 +0000\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=XX\r\n\r\n" +
	"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello plain needle\r\n" +
	"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n" +
	"Content-Disposition: attachment; filename=a.bin\r\n\r\naGVsbG8gYmluYXJ5\r\n--XX--\r\n"

func TestLoginAndCapabilities(t *testing.T) {
	e := newEnv(t, 1)
	c := e.dial(0, nil)
	if err := c.Login(alice, "wrong").Wait(); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
		t.Fatalf("bad password: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err == nil {
		t.Fatal("SELECT before authentication succeeded")
	}
	start := time.Now()
	if err := c.Login(alice, "wrong again").Wait(); err == nil {
		t.Fatal("second bad password accepted")
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Errorf("second failure answered in %v: not throttled", time.Since(start))
	}
	if err := c.Login(alice, alicePw).Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []imap.Cap{imap.CapIMAP4rev2, imap.CapIMAP4rev1, imap.CapMove, imap.CapUIDPlus, imap.CapIdle,
		imap.CapNamespace, imap.CapSpecialUse, imap.CapListStatus, imap.CapLiteralPlus, imap.CapESearch, imap.CapBinary} {
		if !caps.Has(want) {
			t.Errorf("capability %s missing from %v", want, caps)
		}
	}
	if !caps.Has("APPENDLIMIT=1048576") {
		t.Errorf("APPENDLIMIT missing: %v", caps)
	}
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' {
		t.Fatalf("namespace %+v %v", ns, err)
	}

	// AUTHENTICATE PLAIN on a second connection.
	c2 := e.dial(0, nil)
	if err := c2.Authenticate(sasl.NewPlainClient("", alice, alicePw)); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN: %v", err)
	}
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	c3 := e.dial(0, nil)
	if err := c3.Authenticate(sasl.NewPlainClient("", alice, "nope")); err == nil {
		t.Fatal("AUTHENTICATE PLAIN with a bad password succeeded")
	}
}

func TestMailboxCommands(t *testing.T) {
	e := newEnv(t, 1)
	c := e.login(0, nil)
	list, err := c.List("", "*", &imap.ListOptions{ReturnSpecialUse: true, ReturnStatus: &imap.StatusOptions{NumMessages: true, UIDValidity: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	uses := map[string]imap.MailboxAttr{}
	for _, l := range list {
		for _, a := range l.Attrs {
			if slices.Contains([]imap.MailboxAttr{imap.MailboxAttrSent, imap.MailboxAttrDrafts, imap.MailboxAttrTrash, imap.MailboxAttrJunk, imap.MailboxAttrArchive}, a) {
				uses[l.Mailbox] = a
			}
		}
		if l.Status == nil || l.Status.NumMessages == nil || l.Status.UIDValidity == 0 {
			t.Errorf("LIST-STATUS missing for %s", l.Mailbox)
		}
	}
	want := map[string]imap.MailboxAttr{"Sent": imap.MailboxAttrSent, "Drafts": imap.MailboxAttrDrafts, "Trash": imap.MailboxAttrTrash,
		"Junk": imap.MailboxAttrJunk, "Archive": imap.MailboxAttrArchive}
	if len(list) != 6 || !reflect.DeepEqual(uses, want) {
		t.Fatalf("LIST gave %d mailboxes with special uses %v", len(list), uses)
	}

	if err := c.Create("Projects/2026", nil).Wait(); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := c.Create("Projects/2026", nil).Wait(); imapCode(err) != imap.ResponseCodeAlreadyExists {
		t.Fatalf("create existing: %v", err)
	}
	if err := c.Create("Flagged", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrFlagged}}).Wait(); err != nil {
		t.Fatalf("create special-use: %v", err)
	}
	if err := c.Rename("Projects", "Work", nil).Wait(); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if err := c.Subscribe("Work/2026").Wait(); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	subs, err := c.List("", "Work/*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil || len(subs) != 1 || subs[0].Mailbox != "Work/2026" {
		t.Fatalf("subscribed list %+v %v", subs, err)
	}
	if err := c.Unsubscribe("Work/2026").Wait(); err != nil {
		t.Fatal(err)
	}
	top, err := c.List("", "%", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, l := range top {
		names = append(names, l.Mailbox)
		if l.Mailbox == "Work" && !slices.Contains(l.Attrs, imap.MailboxAttrHasChildren) {
			t.Errorf("Work lacks \\HasChildren: %v", l.Attrs)
		}
	}
	if !slices.Contains(names, "Work") || slices.Contains(names, "Projects") || slices.Contains(names, "Work/2026") {
		t.Fatalf("LIST %% after rename: %v", names)
	}
	if err := c.Delete("Work/2026").Wait(); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := c.Delete("Nope").Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
		t.Fatalf("delete unknown: %v", err)
	}
	if _, err := c.Select("Nope", nil).Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
		t.Fatalf("select unknown: %v", err)
	}
	if err := c.Delete("INBOX").Wait(); err == nil {
		t.Fatal("INBOX deleted")
	}
	e.deliver(0, testMail(1))
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDNext: true, NumUnseen: true, Size: true}).Wait()
	if err != nil || *st.NumMessages != 1 || st.UIDNext != 2 || *st.NumUnseen != 1 || *st.Size != int64(len(testMail(1))) {
		t.Fatalf("status %+v %v", st, err)
	}
	// LSUB sees the default subscriptions.
	r := e.raw(0)
	r.send("a LOGIN " + alice + " " + alicePw)
	r.expect("a OK")
	r.send(`b LSUB "" "*"`)
	if line := r.expect("* LSUB"); !strings.Contains(line, `\Subscribed`) {
		t.Errorf("LSUB line %q", line)
	}
	r.expect("b OK")
}

func TestAppendAndFetch(t *testing.T) {
	e := newEnv(t, 1)
	c := e.login(0, nil)
	date := time.Date(2020, 5, 6, 7, 8, 9, 0, time.FixedZone("", 2*3600))
	ad := appendMsg(t, c, "Drafts", multipartMail, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft, "$Custom"}, Time: date})
	if ad.UID != 1 || ad.UIDValidity == 0 {
		t.Fatalf("APPENDUID %+v", ad)
	}
	sel := mustSelect(t, c, "Drafts")
	if sel.NumMessages != 1 || sel.UIDValidity != ad.UIDValidity {
		t.Fatalf("select %+v", sel)
	}

	opts := &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection: []*imap.FetchItemBodySection{
			{Peek: true},
			{Specifier: imap.PartSpecifierHeader, Peek: true},
			{Part: []int{1}, Peek: true},
			{Specifier: imap.PartSpecifierText, Peek: true, Partial: &imap.SectionPartial{Offset: 2, Size: 10}},
			{Part: []int{7, 3, 9}, Peek: true},
		},
		BinarySection: []*imap.FetchItemBinarySection{{Part: []int{2}, Peek: true}},
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), opts).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v (%d)", err, len(msgs))
	}
	m := msgs[0]
	if m.UID != 1 || m.RFC822Size != int64(len(multipartMail)) || !m.InternalDate.Equal(date) {
		t.Errorf("uid %d size %d date %v", m.UID, m.RFC822Size, m.InternalDate)
	}
	if !slices.Contains(m.Flags, imap.FlagDraft) || !slices.Contains(m.Flags, "$Custom") || slices.Contains(m.Flags, imap.FlagSeen) {
		t.Errorf("flags %v", m.Flags)
	}
	h, _ := textproto.ReadHeader(bufio.NewReader(strings.NewReader(multipartMail)))
	wantEnv := imapserver.ExtractEnvelope(h)
	if m.Envelope.Subject != "parts" || m.Envelope.From[0].Addr() != "carol@remote.test" || !m.Envelope.Date.Equal(wantEnv.Date) {
		t.Errorf("envelope %+v", m.Envelope)
	}
	mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || len(mp.Children) != 2 || mp.Children[1].Disposition() == nil || mp.Children[1].Disposition().Params["filename"] != "a.bin" {
		t.Fatalf("bodystructure %#v", m.BodyStructure)
	}
	if got := m.FindBodySection(opts.BodySection[0]); string(got) != multipartMail {
		t.Errorf("BODY[] = %q", got)
	}
	if got := m.FindBodySection(opts.BodySection[1]); !bytes.HasPrefix(got, []byte("From: Carol")) || !bytes.HasSuffix(got, []byte("\r\n\r\n")) {
		t.Errorf("BODY[HEADER] = %q", got)
	}
	if got := m.FindBodySection(opts.BodySection[2]); string(got) != "hello plain needle" {
		t.Errorf("BODY[1] = %q", got)
	}
	if got := m.FindBodySection(opts.BodySection[3]); len(got) != 10 {
		t.Errorf("BODY[TEXT]<2.10> = %q", got)
	}
	if len(m.BinarySection) != 1 || string(m.BinarySection[0].Bytes) != "hello binary" {
		t.Errorf("BINARY[2] = %+v", m.BinarySection)
	}

	// A non-PEEK body fetch sets \Seen and reports it.
	msgs, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierText}}}).Collect()
	if err != nil || !slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Fatalf("non-peek fetch: flags %v err %v", msgs[0].Flags, err)
	}
	_, state := mailboxState(t, e, 0, "Drafts")
	if !strings.Contains(state[1], `\Seen`) {
		t.Fatalf("\\Seen not stored: %v", state)
	}
	// EXAMINE never sets \Seen.
	appendMsg(t, c, "INBOX", testMail(2), nil)
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, st := mailboxState(t, e, 0, "INBOX"); strings.Contains(st[1], `\Seen`) {
		t.Fatalf("EXAMINE set \\Seen: %v", st)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err == nil {
		t.Fatal("STORE in EXAMINE succeeded")
	}
}

func TestStoreAndSearch(t *testing.T) {
	e := newEnv(t, 1)
	for i := 1; i <= 5; i++ {
		e.deliver(0, testMail(i))
	}
	e.deliver(0, multipartMail)
	c := e.login(0, nil)
	mustSelect(t, c, "INBOX")
	store := func(set imap.NumSet, op imap.StoreFlagsOp, silent bool, flags ...imap.Flag) []*imapclient.FetchMessageBuffer {
		t.Helper()
		msgs, err := c.Store(set, &imap.StoreFlags{Op: op, Silent: silent, Flags: flags}, nil).Collect()
		if err != nil {
			t.Fatalf("store: %v", err)
		}
		return msgs
	}
	msgs := store(imap.SeqSetNum(1, 2), imap.StoreFlagsAdd, false, imap.FlagFlagged, "$Work")
	if len(msgs) != 2 || !slices.Contains(msgs[0].Flags, imap.FlagFlagged) || msgs[0].UID != 1 {
		t.Fatalf("STORE +FLAGS answer %+v", msgs)
	}
	if msgs := store(imap.SeqSetNum(2), imap.StoreFlagsDel, true, "$Work"); len(msgs) != 0 {
		t.Fatalf(".SILENT answered %d FETCH", len(msgs))
	}
	store(imap.UIDSetNum(3), imap.StoreFlagsSet, true, imap.FlagSeen, imap.FlagDeleted)

	cases := []struct {
		name string
		crit imap.SearchCriteria
		want []uint32
	}{
		{"all", imap.SearchCriteria{}, []uint32{1, 2, 3, 4, 5, 6}},
		{"flagged", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, []uint32{1, 2}},
		{"keyword", imap.SearchCriteria{Flag: []imap.Flag{"$Work"}}, []uint32{1}},
		{"unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []uint32{1, 2, 4, 5, 6}},
		{"deleted", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagDeleted}}, []uint32{3}},
		{"subject", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "MESSAGE 4"}}}, []uint32{4}},
		{"from", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "carol"}}}, []uint32{6}},
		{"header exists", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "MIME-Version"}}}, []uint32{6}},
		{"body", imap.SearchCriteria{Body: []string{"NEEDLE"}}, []uint32{6}},
		{"text", imap.SearchCriteria{Text: []string{"of message 2"}}, []uint32{2}},
		{"larger", imap.SearchCriteria{Larger: 300}, []uint32{6}},
		{"smaller", imap.SearchCriteria{Smaller: 300}, []uint32{1, 2, 3, 4, 5}},
		{"sentbefore", imap.SearchCriteria{SentBefore: time.Date(2006, 1, 3, 0, 0, 0, 0, time.UTC)}, []uint32{1, 2, 3, 4, 5}},
		{"senton", imap.SearchCriteria{SentSince: time.Date(2006, 1, 3, 0, 0, 0, 0, time.UTC), SentBefore: time.Date(2006, 1, 4, 0, 0, 0, 0, time.UTC)}, []uint32{6}},
		{"since today", imap.SearchCriteria{Since: time.Now().UTC().Add(-48 * time.Hour)}, []uint32{1, 2, 3, 4, 5, 6}},
		{"before 2000", imap.SearchCriteria{Before: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}, nil},
		{"seqset", imap.SearchCriteria{SeqNum: []imap.SeqSet{imap.SeqSetNum(2, 4)}}, []uint32{2, 4}},
		{"uid star", imap.SearchCriteria{UID: []imap.UIDSet{{imap.UIDRange{Start: 5, Stop: 0}}}}, []uint32{5, 6}},
		{"not", imap.SearchCriteria{Not: []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagFlagged}}}}, []uint32{3, 4, 5, 6}},
		{"or", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Flag: []imap.Flag{imap.FlagDeleted}}, {Body: []string{"needle"}}}}}, []uint32{3, 6}},
		{"new is never", imap.SearchCriteria{Flag: []imap.Flag{`\Recent`}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := c.UIDSearch(&tc.crit, nil).Wait()
			if err != nil {
				t.Fatal(err)
			}
			var got []uint32
			for _, u := range d.AllUIDs() {
				got = append(got, uint32(u))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("UID SEARCH = %v, want %v", got, tc.want)
			}
		})
	}
	// ESEARCH return options and SEARCHRES.
	d, err := c.Search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true, ReturnSave: true}).Wait()
	if err != nil || d.Min != 1 || d.Max != 6 || d.Count != 5 {
		t.Fatalf("ESEARCH %+v %v", d, err)
	}
	// imapclient cannot match FETCH answers to "$", so check on the wire.
	r := e.raw(0)
	r.send("a LOGIN " + alice + " " + alicePw)
	r.expect("a OK")
	r.send("b SELECT INBOX")
	r.expect("b OK")
	r.send("c SEARCH RETURN (SAVE) UNSEEN")
	r.expect("c OK")
	r.send("d FETCH $ (UID)")
	n := 0
	for line := r.expect(""); !strings.HasPrefix(line, "d "); line = r.expect("") {
		if strings.Contains(line, "FETCH (UID") {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("FETCH $ answered %d messages, want 5", n)
	}
}

func TestCopyMoveExpunge(t *testing.T) {
	e := newEnv(t, 1)
	for i := 1; i <= 6; i++ {
		e.deliver(0, testMail(i))
	}
	c := e.login(0, nil)
	mustSelect(t, c, "INBOX")
	cd, err := c.Copy(imap.SeqSetNum(1, 2), "Archive").Wait()
	if err != nil || cd.UIDValidity == 0 || cd.SourceUIDs.String() != "1:2" || cd.DestUIDs.String() != "1:2" {
		t.Fatalf("COPY %+v %v", cd, err)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Nope").Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Fatalf("COPY to missing: %v", err)
	}
	md, err := c.Move(imap.UIDSetNum(3, 4), "Trash").Wait()
	if err != nil || md.DestUIDs.String() != "1:2" || md.SourceUIDs.String() != "3:4" {
		t.Fatalf("MOVE %+v %v", md, err)
	}
	if _, err := c.Move(imap.SeqSetNum(1), "Nope").Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Fatalf("MOVE to missing: %v", err)
	}
	if n := c.Mailbox().NumMessages; n != 4 {
		t.Fatalf("after MOVE client sees %d messages, want 4", n)
	}
	// UIDs now 1,2,5,6. Mark 1 and 5 deleted; UID EXPUNGE only 5.
	if err := c.Store(imap.UIDSetNum(1, 5), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	seqs, err := c.UIDExpunge(imap.UIDSetNum(5)).Collect()
	if err != nil || !slices.Equal(seqs, []uint32{3}) {
		t.Fatalf("UID EXPUNGE gave %v %v", seqs, err)
	}
	seqs, err = c.Expunge().Collect()
	if err != nil || !slices.Equal(seqs, []uint32{1}) {
		t.Fatalf("EXPUNGE gave %v %v", seqs, err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != 2 || msgs[0].UID != 2 || msgs[1].UID != 6 {
		t.Fatalf("after expunges: %+v %v", msgs, err)
	}
	mb, state := mailboxState(t, e, 0, "INBOX")
	if mb.Messages != 2 || len(state) != 2 {
		t.Fatalf("store has %d messages %v", mb.Messages, state)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	// APPEND to a missing mailbox: TRYCREATE.
	cmd := c.Append("Nope", int64(len(testMail(9))), nil)
	_, _ = cmd.Write([]byte(testMail(9)))
	_ = cmd.Close()
	if _, err := cmd.Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Fatalf("APPEND to missing: %v", err)
	}
	// Over quota: APPEND and COPY answer NO [OVERQUOTA] and store nothing.
	e.c.Propose(0, &command.SetQuota{Address: alice, Quota: 10})
	cmd = c.Append("INBOX", int64(len(testMail(9))), nil)
	_, _ = cmd.Write([]byte(testMail(9)))
	_ = cmd.Close()
	if _, err := cmd.Wait(); imapCode(err) != codeOverQuota {
		t.Fatalf("APPEND over quota: %v", err)
	}
	mustSelect(t, c, "INBOX")
	if _, err := c.Copy(imap.SeqSetNum(1), "Archive").Wait(); imapCode(err) != codeOverQuota {
		t.Fatalf("COPY over quota: %v", err)
	}
	if mb, _ := mailboxState(t, e, 0, "INBOX"); mb.Messages != 2 {
		t.Fatalf("over-quota APPEND stored something: %d messages", mb.Messages)
	}
}

// TestAppendLargeBody: a body above frontends.ChunkSize is uploaded in
// pieces before the APPEND commits, and reads back byte for byte on another
// node.
func TestAppendLargeBody(t *testing.T) {
	e := newEnv(t, 2)
	var b strings.Builder
	b.WriteString("From: big@remote.test\r\nSubject: big\r\n\r\n")
	rng := rand.New(rand.NewPCG(1, 2))
	chunk := make([]byte, 57)
	for b.Len() < 900<<10 { // random base64 compresses to ~75%: above ChunkSize
		for i := range chunk {
			chunk[i] = byte(rng.Uint32())
		}
		fmt.Fprintf(&b, "%s\r\n", base64.StdEncoding.EncodeToString(chunk))
	}
	raw := b.String()
	if n := len(e.c.Node(0).Codec().NewBlob([]byte(raw), nil).Data); n <= frontends.ChunkSize {
		t.Fatalf("compressed body %d bytes does not exercise chunking", n)
	}
	c := e.login(0, nil)
	ad := appendMsg(t, c, "INBOX", raw, nil)
	r := e.login(1, nil)
	clustertest.Eventually(t, 10*time.Second, "large message on node 2", func() bool {
		st, err := r.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
		return err == nil && *st.NumMessages == 1
	})
	mustSelect(t, r, "INBOX")
	msgs, err := r.Fetch(imap.UIDSetNum(ad.UID), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 || string(msgs[0].BodySection[0].Bytes) != raw {
		t.Fatalf("large body did not read back intact (%v)", err)
	}
}
