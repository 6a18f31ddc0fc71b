package bayes_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/filters/bayes"
	"github.com/raftmail/raftmail/filters/mimetext"
	imapfe "github.com/raftmail/raftmail/frontends/imap"
	"github.com/raftmail/raftmail/raftstore"
)

const spamMsg = "From: winner@lottery.example\r\nTo: alice@example.test\r\nSubject: You won a million dollars\r\n\r\nClaim your prize money now, click here, viagra casino jackpot!\r\n"
const hamMsg = "From: bob@example.test\r\nTo: alice@example.test\r\nSubject: Minutes of the design review\r\n\r\nAttached are the minutes of Tuesday's raft design review.\r\n"

func toks(raw string) []uint64 {
	var out []uint64
	for _, t := range bayes.Tokenize(mimetext.Parse([]byte(raw), mimetext.Limits{})) {
		out = append(out, uint64(t))
	}
	return out
}

// countsOn reads the totals and the sum of a message's spam/ham token
// counts on node i.
func countsOn(t *testing.T, c *clustertest.Cluster, i int, tk []uint64) (raftstore.BayesTotals, uint64, uint64) {
	t.Helper()
	var tot raftstore.BayesTotals
	var spam, ham uint64
	err := c.Node(i).View(func(tx *raftstore.ReadTx) error {
		var cs []raftstore.BayesCount
		tot, cs = tx.BayesCounts(tk)
		for _, x := range cs {
			spam += uint64(x.Spam)
			ham += uint64(x.Ham)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tot, spam, ham
}

// TestIMAPJunkTrainsEveryNode: a user MOVEs a message into Junk over IMAP
// on a follower; the learner proposes a BayesTrain and the token counts
// change on every node. Moving it back out trains it as ham instead
// (the remembered class moves). A Remote model on the node API sees the
// same counts.
func TestIMAPJunkTrainsEveryNode(t *testing.T) {
	c := clustertest.New(t, 3)
	const alice = "alice@example.test"
	c.AddAccount(alice, "pw")
	c.Deliver(0, "x@lottery.example", []string{alice}, []byte(spamMsg))
	c.Deliver(0, "bob@example.test", []string{alice}, []byte(hamMsg))

	node := c.Follower()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	learner := bayes.NewLearner(c.Node(node), logger)
	srv, err := imapfe.New(imapfe.Config{InsecureAuth: true, Logger: logger, JunkTrainer: learner}, c.Store(node))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	cl, err := imapclient.DialInsecure(ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Login(alice, "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Move(imap.UIDSetNum(1), "Junk").Wait(); err != nil {
		t.Fatal(err)
	}
	learner.Wait()
	spamToks := toks(spamMsg)
	for i := 0; i < 3; i++ {
		clustertest.Eventually(t, 10*time.Second, "spam trained on every node", func() bool {
			tot, spam, ham := countsOn(t, c, i, spamToks)
			return tot.Spam == 1 && tot.Ham == 0 && spam == uint64(len(spamToks)) && ham == 0
		})
	}

	remote, err := bayes.NewRemote(bayes.RemoteConfig{Nodes: []string{c.Node(0).APIURL(), c.Node(2).APIURL()}})
	if err != nil {
		t.Fatal(err)
	}
	btoks := make([]bayes.Token, len(spamToks))
	for i, x := range spamToks {
		btoks[i] = bayes.Token(x)
	}
	tot, cs, err := remote.Counts(context.Background(), btoks)
	if err != nil || tot.Spam != 1 || cs[0].Spam != 1 {
		t.Fatalf("remote counts: %+v %v %v", tot, cs[:1], err)
	}
	// The node's filter (GET /internal/bayes/filter) holds every trained
	// token, so none was skipped above; tokens of a message no one
	// trained are answered zero without being asked, and every count
	// equals the node's own.
	if n := remote.Skipped(); n != 0 {
		t.Fatalf("%d trained tokens skipped as unknown", n)
	}
	unseen := bayes.Tokenize(mimetext.Parse([]byte("Subject: quarterly hydrology survey\r\n\r\nsediment turbidity piezometer readings\r\n"), mimetext.Limits{}))
	_, cs, err = remote.Counts(context.Background(), unseen)
	if err != nil || remote.Skipped() == 0 {
		t.Fatalf("unseen tokens: %d skipped, %v", remote.Skipped(), err)
	}
	for i, tok := range unseen {
		_, spam, ham := countsOn(t, c, 0, []uint64{uint64(tok)})
		if uint64(cs[i].Spam) != spam || uint64(cs[i].Ham) != ham {
			t.Fatalf("token %x: remote %+v, node %d/%d", tok, cs[i], spam, ham)
		}
	}

	// Out of Junk again: the same message becomes ham.
	if _, err := cl.Select("Junk", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Move(imap.SeqSetNum(1), "INBOX").Wait(); err != nil {
		t.Fatal(err)
	}
	learner.Wait()
	for i := 0; i < 3; i++ {
		clustertest.Eventually(t, 10*time.Second, "ham trained on every node", func() bool {
			tot, spam, ham := countsOn(t, c, i, spamToks)
			return tot.Spam == 0 && tot.Ham == 1 && spam == 0 && ham == uint64(len(spamToks))
		})
	}
	if d := c.WaitConverged(10 * time.Second); d == "" {
		t.Fatal("nodes did not converge")
	}
}
