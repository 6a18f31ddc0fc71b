package outbound_test

import (
	"bytes"
	"fmt"
	"net/mail"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/frontends/outbound"
	"github.com/raftmail/raftmail/raftstore/command"
)

// TestLeaderKilledWhileDelivering: 1,000 queued messages, the leader
// (node and its delivery service) stopped mid-way: every message reaches
// the sink at least once, none is lost, possible duplicates are counted
// (reclaimed claims), and the queue drains under the new leader.
func TestLeaderKilledWhileDelivering(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 messages through a 3-node cluster")
	}
	const total = 1000
	e := newEnv(t, 3, func(c *outbound.Config) { c.PerDomainConns = 4; c.BatchSize = 16 })
	domains := []string{"a.test", "b.test", "c.test", "d.test"}
	for _, d := range domains {
		e.in.mx(d, 10, "mx."+d, "127.0.0.2")
	}
	s := e.in.sink("127.0.0.2")
	const batch = 50
	for i := 0; i < total; i += batch {
		var cmds []*command.QueueAdd
		for j := i; j < i+batch; j++ {
			cmds = append(cmds, &command.QueueAdd{From: "alice@example.test",
				Rcpts: rcpts(fmt.Sprintf("u%d@%s", j, domains[j%len(domains)])),
				Blob:  e.c.Node(0).Codec().NewBlob([]byte(message(fmt.Sprintf("f%d@test", j), "failover")), nil)})
		}
		proposeAll(t, e, cmds)
	}
	old := e.c.WaitLeader()
	clustertest.Eventually(t, 60*time.Second, "a fifth delivered", func() bool { return len(s.messages()) >= total/5 })
	e.stopService(old)
	e.c.Stop(old)
	t.Logf("stopped leader n%d after %d deliveries", old+1, len(s.messages()))

	clustertest.Eventually(t, 120*time.Second, "every message at the sink", func() bool { return len(unique(s)) == total })
	e.waitEmpty(60 * time.Second)
	got := unique(s)
	dups := len(s.messages()) - len(got)
	st := e.stats()
	t.Logf("delivered %d unique, %d duplicates, replicated counters %v", len(got), dups, st.Counters)
	if dups > 0 && st.Counters["reclaimed"] == 0 {
		t.Fatalf("%d duplicates but no reclaimed attempt counted", dups)
	}
	if st.Counters["delivered"] != total {
		t.Fatalf("delivered counter %d, want %d", st.Counters["delivered"], total)
	}
	e.c.WaitConverged(30 * time.Second)
}

func unique(s *sink) map[string]int {
	out := map[string]int{}
	for _, m := range s.messages() {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			continue
		}
		out[msg.Header.Get("Message-ID")]++
	}
	return out
}

// proposeAll commits commands concurrently through the leader.
func proposeAll(t *testing.T, e *env, cmds []*command.QueueAdd) {
	t.Helper()
	errs := make(chan error, len(cmds))
	for _, c := range cmds {
		go func(c *command.QueueAdd) {
			res, err := e.c.Node(e.c.WaitLeader()).Propose(t.Context(), &command.Command{Payload: c})
			if err == nil {
				err = res.Err()
			}
			errs <- err
		}(c)
	}
	for range cmds {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
