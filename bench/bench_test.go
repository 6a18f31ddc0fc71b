package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/frontends/lmtp"
	"github.com/raftmail/raftmail/frontends/smtp"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// corpusDir is the shared mail corpus (override with RAFTMAIL_CORPUS).
func corpusDir() string {
	if d := os.Getenv("RAFTMAIL_CORPUS"); d != "" {
		return d
	}
	return "../../shared/corpus"
}

const users = 16

type payload struct {
	name string
	msg  func(seq int64) []byte
}

func payloads(b *testing.B) []payload {
	corpus, err := LoadCorpus(corpusDir(), 1000)
	if err != nil {
		b.Skipf("corpus: %v", err)
	}
	return []payload{
		{"corpus", func(seq int64) []byte { return Unique(corpus[seq%int64(len(corpus))], seq) }},
		{"50KB", func(seq int64) []byte { return Synthetic(50<<10, int(seq)) }},
	}
}

// storeConfig is the benchmark clusters' store configuration:
// RAFTMAIL_BENCH_STATE_SYNC=1 fsyncs the state file at every apply batch
// (the pre-marker behaviour), to measure what that costs.
func storeConfig() raftstore.Config {
	return raftstore.Config{StateSyncPerBatch: os.Getenv("RAFTMAIL_BENCH_STATE_SYNC") != ""}
}

// benchCluster starts a 3-node cluster with the benchmark's users.
func benchCluster(b *testing.B) *clustertest.Cluster {
	c := clustertest.New(b, 3, clustertest.Options{Store: storeConfig()})
	for u := 0; u < users; u++ {
		c.AddAccount(fmt.Sprintf("u%d@example.test", u), "pw")
	}
	return c
}

// lmtpCluster starts a 3-node cluster with LMTP on every node and users.
func lmtpCluster(b *testing.B) []string {
	c := benchCluster(b)
	var addrs []string
	for i := 0; i < 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := lmtp.New(lmtp.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, c.Node(i))
		go func() { _ = srv.Serve(ln) }()
		b.Cleanup(func() { srv.Close() })
		addrs = append(addrs, ln.Addr().String())
	}
	// RAFTMAIL_BENCH_LEADER_ONLY=1 sends every delivery to the leader's
	// LMTP, to measure what forwarding from followers costs.
	if os.Getenv("RAFTMAIL_BENCH_LEADER_ONLY") != "" {
		return addrs[c.WaitLeader() : c.WaitLeader()+1]
	}
	return addrs
}

func report(b *testing.B, s Summary) {
	b.ReportMetric(s.PerSec, "msgs/s")
	b.ReportMetric(float64(s.P50.Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(s.P99.Microseconds())/1000, "p99_ms")
	b.ReportMetric(0, "ns/op")
	if len(s.Errors) > 0 {
		b.Logf("errors: %v", s.Errors)
	}
}

// BenchmarkLMTPDeliver measures end-to-end deliveries over LMTP into a
// 3-node cluster (fsync on), each acknowledged only after commit. Run with
// a fixed count, e.g. -benchtime 2000x (the count is the number of
// deliveries of each sub-benchmark).
func BenchmarkLMTPDeliver(b *testing.B) {
	for _, p := range payloads(b) {
		b.Run(p.name, func(pb *testing.B) {
			runDeliveries(pb, false, p.msg, func() []string { return lmtpCluster(pb) })
		})
	}
}

// runDeliveries runs one sub-benchmark per concurrency against the
// addresses start returns. start runs once, owned by the parent pb, so the
// cluster outlives each sub-benchmark's trial runs.
func runDeliveries(pb *testing.B, smtpProto bool, msg func(int64) []byte, start func() []string) {
	var once sync.Once
	var addrs []string
	for _, conc := range concurrencies() {
		pb.Run(fmt.Sprintf("c=%d", conc), func(b *testing.B) {
			once.Do(func() { addrs = start() })
			s := RunLMTP(context.Background(), LMTPLoad{
				SMTP: smtpProto, Targets: addrs, Concurrency: conc, Total: b.N, Message: msg,
				Rcpt: func(seq int64) string { return fmt.Sprintf("u%d@example.test", seq%users) },
			})
			report(b, s)
		})
	}
}

// BenchmarkRaftCeiling measures raw raft.Apply on a bare 3-node cluster with
// a batching bbolt FSM, with entries equal to the Deliver commands the LMTP
// path proposes for the same messages (compressed bodies): the ceiling.
func BenchmarkRaftCeiling(b *testing.B) {
	codec, err := raftstore.NewCodec(64 << 20)
	if err != nil {
		b.Fatal(err)
	}
	defer codec.Close()
	for _, p := range payloads(b) {
		b.Run(p.name, func(pb *testing.B) {
			entries := make([][]byte, 256)
			for i := range entries {
				cmd, err := frontends.NewDeliver(codec, frontends.Envelope{From: "bench@remote.test", Rcpts: []string{"u1@example.test"}}, p.msg(int64(i)))
				if err != nil {
					pb.Fatal(err)
				}
				if entries[i], err = command.Marshal(cmd); err != nil {
					pb.Fatal(err)
				}
			}
			var once sync.Once
			var rc *RawCluster
			for _, conc := range concurrencies() {
				pb.Run(fmt.Sprintf("c=%d", conc), func(b *testing.B) {
					once.Do(func() {
						if rc, err = NewRawCluster(pb.TempDir()); err != nil {
							b.Fatal(err)
						}
					})
					s := rc.Run(b.N, conc, func(seq int64) []byte { return entries[seq%int64(len(entries))] })
					report(b, s)
				})
			}
			if rc != nil {
				rc.Close()
			}
		})
	}
}

// smtpFrontends starts n MX frontends (in this process) in front of the
// cluster's node APIs, as "raftmail frontend" would.
func smtpFrontends(b *testing.B, c *clustertest.Cluster, n int) []string {
	var nodes []string
	for i := 0; i < c.N(); i++ {
		nodes = append(nodes, c.Node(i).APIURL())
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var addrs []string
	for i := 0; i < n; i++ {
		committer, err := smtp.NewNodesCommitter(smtp.NodesConfig{Nodes: append([]string(nil), nodes...), Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		srv, err := smtp.New(smtp.Config{Profile: smtp.ProfileMX, Hostname: "mx.bench", MaxConnectionsPerIP: 1000,
			MaxConnections: 1000, Logger: quiet}, committer, nil)
		if err != nil {
			b.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go func() { _ = srv.Serve(ln) }()
		b.Cleanup(func() { srv.Close() })
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// BenchmarkSMTPDeliver measures deliveries through one and two stateless MX
// frontends (SMTP in, body compressed on the frontend, committed through a
// node's API) into the same kind of 3-node cluster; compare with
// BenchmarkLMTPDeliver (straight to the nodes) in the same run.
func BenchmarkSMTPDeliver(b *testing.B) {
	for _, p := range payloads(b) {
		for _, fes := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/frontends=%d", p.name, fes), func(pb *testing.B) {
				runDeliveries(pb, true, p.msg, func() []string { return smtpFrontends(pb, benchCluster(pb), fes) })
			})
		}
	}
}

// BenchmarkStoreApply measures raftstore alone: the leader's Store.Apply of
// the Deliver commands the LMTP path would propose (parsed and compressed
// beforehand), without any protocol, from many goroutines. Between
// BenchmarkRaftCeiling and BenchmarkLMTPDeliver it tells how much the FSM
// costs and how much the protocol path costs.
func BenchmarkStoreApply(b *testing.B) {
	codec, err := raftstore.NewCodec(64 << 20)
	if err != nil {
		b.Fatal(err)
	}
	defer codec.Close()
	for _, p := range payloads(b) {
		b.Run(p.name, func(pb *testing.B) {
			var once sync.Once
			var st *raftstore.Store
			for _, conc := range concurrencies() {
				pb.Run(fmt.Sprintf("c=%d", conc), func(b *testing.B) {
					once.Do(func() {
						c := clustertest.New(pb, 3, clustertest.Options{Store: storeConfig()})
						for u := 0; u < users; u++ {
							c.AddAccount(fmt.Sprintf("u%d@example.test", u), "pw")
						}
						st = c.Leader().Store()
					})
					// One command per delivery, built before the clock starts,
					// each with a body of its own (p.msg makes every message
					// new, across runs too): a body the store already holds is
					// only reference-counted, a cheaper path than real mail's.
					b.StopTimer()
					cmds := make([]*command.Command, b.N)
					for i := range cmds {
						var err error
						if cmds[i], err = frontends.NewDeliver(codec, frontends.Envelope{From: "bench@remote.test",
							Rcpts: []string{fmt.Sprintf("u%d@example.test", i%users)}}, p.msg(int64(i))); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
					rec := NewRecorder()
					var next atomic.Int64
					var wg sync.WaitGroup
					for w := 0; w < conc; w++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for {
								seq := next.Add(1)
								if seq > int64(b.N) {
									return
								}
								cmd := *cmds[seq-1]
								cmd.Key = command.NewKey()
								data, err := command.Marshal(&cmd)
								if err != nil {
									b.Error(err)
									return
								}
								start := time.Now()
								if _, err := st.Apply(context.Background(), data); err != nil {
									rec.Fail("apply")
									continue
								}
								rec.Ok(time.Since(start), len(data))
							}
						}()
					}
					wg.Wait()
					rec.Stop()
					report(b, rec.Summary())
				})
			}
		})
	}
}

// concurrencies are the client counts each benchmark runs (RAFTMAIL_BENCH_C
// overrides, e.g. "64,128").
func concurrencies() []int {
	v := os.Getenv("RAFTMAIL_BENCH_C")
	if v == "" {
		return []int{1, 16, 64}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}
