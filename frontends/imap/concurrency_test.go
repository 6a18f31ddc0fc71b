package imap

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestConcurrentClients runs 12 clients over 3 nodes doing random flag
// changes, copies, moves and expunges while deliveries stream in through
// every node. Afterwards every node holds the same state (digest), UIDs,
// flags and MODSEQs agree, UIDVALIDITY is unchanged, no UID was assigned
// twice, and every client's sequence view matches the store.
func TestConcurrentClients(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	const (
		nodes      = 3
		clients    = 12
		opsEach    = 20
		deliveries = 36
	)
	e := newEnv(t, nodes)
	for i := 0; i < 6; i++ {
		e.deliver(i%nodes, testMail(i))
	}
	boxes := []string{"INBOX", "Archive", "Trash"}
	validity := map[string]uint32{}
	for _, b := range boxes {
		mb, _ := mailboxState(t, e, 0, b)
		validity[b] = mb.UIDValidity
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)

	var mu sync.Mutex
	assigned := map[string][]uint32{} // every UID the store handed out, per mailbox
	record := func(box string, uids ...uint32) {
		mu.Lock()
		assigned[box] = append(assigned[box], uids...)
		mu.Unlock()
	}
	_, inbox0 := mailboxState(t, e, 0, "INBOX")
	record("INBOX", slices.Collect(maps.Keys(inbox0))...)

	var wg sync.WaitGroup
	errs := make(chan error, clients*opsEach+deliveries)
	wg.Add(1)
	go func() { // deliveries through every node
		defer wg.Done()
		for i := 0; i < deliveries; i++ {
			res := e.c.Deliver(i%nodes, "s@remote.test", []string{alice}, []byte(testMail(100+i)))
			record("INBOX", res.Rcpts[0].UID)
		}
	}()
	cls := make([]*imapclient.Client, clients)
	for k := 0; k < clients; k++ {
		cls[k] = e.login(k%nodes, nil)
		box := boxes[k%2] // INBOX and Archive sessions
		mustSelect(t, cls[k], box)
		wg.Add(1)
		go func(k int, c *imapclient.Client, box string) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(k)))
			for op := 0; op < opsEach; op++ {
				if err := randomOp(rng, c, box, record); err != nil {
					errs <- fmt.Errorf("client %d (%s) op %d: %w", k, box, op, err)
					return
				}
			}
		}(k, cls[k], box)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	digest := e.c.WaitConverged(20 * time.Second)
	t.Logf("converged, digest %s", digest[:16])

	for _, b := range boxes {
		mb0, msgs0 := mailboxState(t, e, 0, b)
		if mb0.UIDValidity != validity[b] {
			t.Errorf("%s: UIDVALIDITY changed %d → %d", b, validity[b], mb0.UIDValidity)
		}
		for i := 1; i < nodes; i++ {
			mbi, msgsi := mailboxState(t, e, i, b)
			if !maps.Equal(msgs0, msgsi) || mbi.UIDNext != mb0.UIDNext || mbi.HighestModSeq != mb0.HighestModSeq {
				t.Errorf("%s differs between node 1 and node %d", b, i+1)
			}
		}
		mu.Lock()
		uids := slices.Clone(assigned[b])
		mu.Unlock()
		slices.Sort(uids)
		if d := slices.Compact(slices.Clone(uids)); len(d) != len(uids) {
			t.Errorf("%s: a UID was assigned twice: %v", b, uids)
		}
		for uid := range msgs0 {
			if uid >= mb0.UIDNext {
				t.Errorf("%s: UID %d not below UIDNEXT %d", b, uid, mb0.UIDNext)
			}
		}
	}
	// Every client's view (after NOOP) equals the store's: the trackers kept
	// sequence numbers right through concurrent expunges and appends.
	for k, c := range cls {
		box := boxes[k%2]
		if err := c.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		_, msgs := mailboxState(t, e, k%nodes, box)
		want := slices.Sorted(maps.Keys(msgs))
		n := c.Mailbox().NumMessages
		if int(n) != len(want) {
			t.Errorf("client %d on node %d sees %d messages in %s, store has %d", k, k%nodes+1, n, box, len(want))
			continue
		}
		if n == 0 {
			continue
		}
		fetched, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range fetched {
			if m.SeqNum != uint32(i+1) || uint32(m.UID) != want[i] {
				t.Errorf("client %d: seq %d has UID %d, store says %d", k, m.SeqNum, m.UID, want[i])
				break
			}
		}
	}
}

// randomOp runs one random command on the selected mailbox box.
func randomOp(rng *rand.Rand, c *imapclient.Client, box string, record func(string, ...uint32)) error {
	mb := c.Mailbox()
	if mb == nil {
		return fmt.Errorf("client not in selected state (%v)", c.State())
	}
	n := mb.NumMessages
	if n == 0 {
		return c.Noop().Wait()
	}
	seq := imap.SeqSetNum(uint32(rng.IntN(int(n))) + 1)
	other := map[string]string{"INBOX": "Archive", "Archive": "INBOX"}[box]
	switch rng.IntN(6) {
	case 0, 1:
		flag := []imap.Flag{imap.FlagSeen, imap.FlagFlagged, "$Label1"}[rng.IntN(3)]
		op := []imap.StoreFlagsOp{imap.StoreFlagsAdd, imap.StoreFlagsDel}[rng.IntN(2)]
		_, err := c.Store(seq, &imap.StoreFlags{Op: op, Silent: rng.IntN(2) == 0, Flags: []imap.Flag{flag}}, nil).Collect()
		return err
	case 2:
		d, err := c.Copy(seq, other).Wait()
		if err == nil && d != nil {
			record(other, uidList(d.DestUIDs)...)
		}
		return err
	case 3:
		d, err := c.Move(seq, "Trash").Wait()
		if err == nil && d != nil {
			record("Trash", uidList(d.DestUIDs)...)
		}
		return err
	case 4:
		if err := c.Store(seq, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			return err
		}
		_, err := c.Expunge().Collect()
		return err
	default:
		_, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, Envelope: true}).Collect()
		return err
	}
}

func uidList(ns imap.NumSet) []uint32 {
	set, ok := ns.(imap.UIDSet)
	if !ok {
		return nil
	}
	uids, _ := set.Nums()
	out := make([]uint32, len(uids))
	for i, u := range uids {
		out[i] = uint32(u)
	}
	return out
}
