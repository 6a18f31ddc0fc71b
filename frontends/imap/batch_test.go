package imap

import (
	"fmt"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// FETCH and SEARCH read in batches of batchMessages; a mailbox longer than
// two batches must come back whole, in order, every body the one stored.
func TestFetchAndSearchAcrossBatches(t *testing.T) {
	e := newEnv(t, 1)
	const n = 2*batchMessages + 7
	for i := 1; i <= n; i++ {
		e.deliver(0, testMail(i))
	}
	c := e.login(0, nil)
	defer c.Close()
	mustSelect(t, c, "INBOX")
	msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != n {
		t.Fatalf("FETCH 1:* returned %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if m.SeqNum != uint32(i+1) {
			t.Fatalf("message %d has sequence number %d", i+1, m.SeqNum)
		}
		var body []byte
		for _, b := range m.BodySection {
			body = b.Bytes
		}
		if string(body) != testMail(i+1) {
			t.Fatalf("message %d: body %q…", i+1, body[:min(len(body), 60)])
		}
	}
	data, err := c.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: fmt.Sprintf("message %d", n)}}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := data.AllSeqNums(); len(got) != 1 || got[0] != n {
		t.Fatalf("SEARCH for the last message's subject found %v, want [%d]", got, n)
	}
}
