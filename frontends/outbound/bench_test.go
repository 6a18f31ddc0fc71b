package outbound_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/frontends/outbound"
	"github.com/raftmail/raftmail/raftstore/command"
)

// BenchmarkDrain measures how fast a queue of b.N messages drains to a
// local go-smtp sink, spread over 1 or 20 destination domains, through a
// 3-node cluster (each message: a claim shared by its batch, the SMTP
// transaction, a result command). Reported as msgs/s.
func BenchmarkDrain(b *testing.B) {
	for _, nd := range []int{1, 20} {
		b.Run(fmt.Sprintf("domains=%d", nd), func(b *testing.B) {
			e := newEnv(b, 3, func(c *outbound.Config) { c.Logger = testLogger() })
			li := e.c.WaitLeader()
			e.stopAll()
			var doms []string
			for i := 0; i < nd; i++ {
				d := fmt.Sprintf("d%d.test", i)
				doms = append(doms, d)
				e.in.mx(d, 10, "mx."+d, "127.0.0.2")
			}
			s := e.in.sink("127.0.0.2")
			body := []byte(message("bench@test", "drain") + strings.Repeat("line of text for a realistic body size\r\n", 100))
			blob := e.c.Node(li).Codec().NewBlob(body, nil)
			var cmds []*command.QueueAdd
			for i := 0; i < b.N; i++ {
				bl := blob
				bl.ID[0], bl.ID[1] = byte(i), byte(i>>8) // a distinct body per message, as in real traffic
				cmds = append(cmds, &command.QueueAdd{From: "alice@example.test",
					Rcpts: rcpts(fmt.Sprintf("u%d@%s", i, doms[i%nd])), Blob: bl})
			}
			for i := 0; i < len(cmds); i += 64 {
				proposeAllTB(b, e, cmds[i:min(i+64, len(cmds))])
			}
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < e.c.N(); i++ {
				e.startService(i)
			}
			clustertest.Eventually(b, 10*time.Minute, "the queue to drain", func() bool {
				return len(s.messages()) >= b.N && len(e.entries()) == 0
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

func proposeAllTB(tb testing.TB, e *env, cmds []*command.QueueAdd) {
	tb.Helper()
	var wg sync.WaitGroup
	var failed atomic.Value
	for _, c := range cmds {
		wg.Add(1)
		go func(c *command.QueueAdd) {
			defer wg.Done()
			res, err := e.c.Node(e.c.WaitLeader()).Propose(tb.Context(), &command.Command{Payload: c})
			if err == nil {
				err = res.Err()
			}
			if err != nil {
				failed.Store(err)
			}
		}(c)
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkSubmitRemote measures the commit rate of remote mail through
// the submission frontend (AUTH, MAIL, RCPT to a remote domain, DATA
// answered after the QueueAdd commits) with 16 concurrent clients, the
// delivery service stopped so only the accepting side is measured.
func BenchmarkSubmitRemote(b *testing.B) {
	e := newEnv(b, 3, nil)
	e.stopAll()
	addr := e.submission()
	body := message("bench@test", "submit") + strings.Repeat("line of text for a realistic body size\r\n", 100)
	const clients = 16
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := gosmtp.Dial(addr)
			if err != nil {
				errs <- err
				return
			}
			defer cl.Close()
			if err := cl.Auth(sasl.NewPlainClient("", "alice@example.test", "pw")); err != nil {
				errs <- err
				return
			}
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if err := sendOne(cl, fmt.Sprintf("u%d@remote.test", i), body); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func sendOne(cl *gosmtp.Client, rcpt, body string) error {
	return cl.SendMail("alice@example.test", []string{rcpt}, strings.NewReader(body))
}
