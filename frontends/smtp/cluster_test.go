package smtp_test

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/frontends/smtp"
)

// TestQuorumLost stops 2 of 3 nodes: DATA must answer 451 4.3.0 within
// the commit timeout and store nothing; once quorum is back the same
// message is accepted and stored exactly once (the content-derived key
// dedupes an entry the lone leader may have appended and later committed).
func TestQuorumLost(t *testing.T) {
	e := newEnv(t)
	cfg := e.baseConfig(smtp.ProfileMX)
	cfg.CommitTimeout = 3 * time.Second
	addr, _ := e.serve(cfg, nil)
	body := msg("quorum@test", "while the cluster is down")

	li := e.c.WaitLeader()
	var stopped []int
	for _, i := range e.c.Running() {
		if i != li {
			e.c.Stop(i)
			stopped = append(stopped, i)
		}
	}
	cl := dial(t, addr)
	start := time.Now()
	err := send(cl, "s@remote.test", []string{"alice@example.test"}, body)
	took := time.Since(start)
	wantCode(t, err, 451, "4.3.0")
	if took > cfg.CommitTimeout+2*time.Second {
		t.Fatalf("451 after %v, commit timeout %v", took, cfg.CommitTimeout)
	}
	t.Logf("451 4.3.0 after %v without quorum", took.Round(time.Millisecond))
	if n := len(stored(t, e.c, li, "alice@example.test")["quorum@test"]); n != 0 {
		t.Fatalf("stored %d times without quorum", n)
	}

	for _, i := range stopped {
		e.c.Restart(i)
	}
	e.c.WaitLeader()
	clustertest.Eventually(t, 30*time.Second, "the message accepted after quorum is back", func() bool {
		cl, err := gosmtp.Dial(addr)
		if err != nil {
			return false
		}
		defer cl.Close()
		if err := cl.Hello("client.test"); err != nil {
			return false
		}
		err = send(cl, "s@remote.test", []string{"alice@example.test"}, body)
		var se *gosmtp.SMTPError
		if err != nil && !(errors.As(err, &se) && se.Code/100 == 4) {
			t.Fatalf("retry: %v", err)
		}
		return err == nil
	})
	e.c.WaitConverged(30 * time.Second)
	for _, i := range e.c.Running() {
		if n := len(stored(t, e.c, i, "alice@example.test")["quorum@test"]); n != 1 {
			t.Fatalf("node %d holds the message %d times, want 1", i+1, n)
		}
	}
}

// TestLeaderStopped stops the leader during concurrent deliveries through
// two frontends: every message that got 250 is stored exactly once on
// every node, and none twice.
func TestLeaderStopped(t *testing.T) {
	e := newEnv(t)
	cfg := e.baseConfig(smtp.ProfileMX)
	cfg.CommitTimeout = 10 * time.Second
	addr1, _ := serveWith(t, cfg, e.committer(), nil)
	addr2, _ := serveWith(t, cfg, e.committer(), nil)
	addrs := []string{addr1, addr2}

	const senders, each = 4, 12
	var (
		mu        sync.Mutex
		acked     = map[string]bool{}
		maxStall  time.Duration
		maxData   time.Duration
		tempFails int
	)
	deliver := func(addr, id string) (dataWait time.Duration, err error) {
		cl, err := gosmtp.Dial(addr)
		if err != nil {
			return 0, err
		}
		defer cl.Close()
		if err := cl.Hello("client.test"); err != nil {
			return 0, err
		}
		if err := cl.Mail("s@remote.test", nil); err != nil {
			return 0, err
		}
		if err := cl.Rcpt("alice@example.test", nil); err != nil {
			return 0, err
		}
		w, err := cl.Data()
		if err != nil {
			return 0, err
		}
		io.WriteString(w, msg(id, "failover test "+id))
		start := time.Now()
		err = w.Close()
		return time.Since(start), err
	}
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < each; k++ {
				id := fmt.Sprintf("fo-%d-%d@test", s, k)
				first := time.Now()
				for attempt := 0; ; attempt++ {
					d, err := deliver(addrs[(s+k+attempt)%2], id)
					mu.Lock()
					maxData = max(maxData, d)
					mu.Unlock()
					if err == nil {
						mu.Lock()
						acked[id] = true
						maxStall = max(maxStall, time.Since(first))
						mu.Unlock()
						break
					}
					var se *gosmtp.SMTPError
					if errors.As(err, &se) && se.Code/100 == 5 {
						t.Errorf("%s: permanent failure %v", id, err)
						return
					}
					mu.Lock()
					tempFails++
					mu.Unlock()
					if time.Since(first) > 60*time.Second {
						t.Errorf("%s: not accepted within 60s: %v", id, err)
						return
					}
					<-time.After(100 * time.Millisecond) // client retry backoff
				}
			}
		}()
	}
	clustertest.Eventually(t, 60*time.Second, "a third of the messages acknowledged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= senders*each/3
	})
	li := e.c.WaitLeader()
	e.c.Stop(li)
	t.Logf("stopped leader n%d", li+1)
	wg.Wait()
	e.c.Restart(li)
	e.c.WaitConverged(60 * time.Second)

	mu.Lock()
	defer mu.Unlock()
	for _, i := range e.c.Running() {
		got := stored(t, e.c, i, "alice@example.test")
		for id := range acked {
			if n := len(got[id]); n != 1 {
				t.Errorf("node %d: acknowledged %s stored %d times", i+1, id, n)
			}
		}
		for id, m := range got {
			if len(m) > 1 {
				t.Errorf("node %d: %s stored %d times", i+1, id, len(m))
			}
		}
	}
	t.Logf("%d acknowledged, %d temporary failures retried; longest client stall %v (first try to 250), longest single DATA wait %v",
		len(acked), tempFails, maxStall.Round(time.Millisecond), maxData.Round(time.Millisecond))
}
