package raftstore

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftmail/raftmail/raftstore/command"
)

// BenchmarkApplyBatch measures the FSM alone: deliveries of distinct 5 kB
// bodies (zstd-compressed beforehand, as a frontend does) to one account,
// applied in batches of 1 or 32 entries, with and without the state file's
// fsync per batch. One op is one entry. docs/storage.md records results.
func BenchmarkApplyBatch(b *testing.B) {
	codec := testCodec(b)
	for _, noSync := range []bool{false, true} {
		for _, batch := range []int{1, 16, 32} {
			b.Run(fmt.Sprintf("nosync=%v/batch=%d", noSync, batch), func(b *testing.B) {
				// Random-looking keys, as SMTP frontends make them (hex of 128 bits).
				bl := newBenchLog(b, noSync, false)
				f, next := bl.f, bl.next
				f.ApplyBatch([]*raft.Log{next(&command.AddDomain{Name: "example.org"}), next(&command.AddAccount{Address: alice, PassHash: "h"})})
				var bytesIn int64
				b.ResetTimer()
				for done := 0; done < b.N; {
					b.StopTimer()
					logs := make([]*raft.Log, 0, batch)
					for range min(batch, b.N-done) {
						blob := codec.NewBlob(body(fmt.Sprint("bench", bl.index), 5000), nil)
						logs = append(logs, next(&command.Deliver{Blob: blob, Rcpts: []string{alice}}))
						bytesIn += int64(len(logs[len(logs)-1].Data))
					}
					b.StartTimer()
					f.ApplyBatch(logs)
					done += len(logs)
				}
				b.StopTimer()
				b.SetBytes(bytesIn / int64(b.N))
				ts := f.db.Stats().TxStats
				b.ReportMetric(float64(ts.GetWrite())/float64(b.N), "pwrites/entry")
				b.ReportMetric(float64(ts.GetPageCount())/float64(b.N), "pages/entry")
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
			})
		}
	}
}

// BenchmarkApplySteady measures the FSM in a steady state closer to the
// bench's load: deliveries of distinct 5 kB bodies with 800 bytes of parsed
// structure to 100 accounts, after 20,000 earlier ones, applied in batches
// of 16 with the state file's fsync on. ordered=false draws idempotency
// keys as 128 random bits; ordered=true starts each with the time.
func BenchmarkApplySteady(b *testing.B) {
	codec := testCodec(b)
	for _, ordered := range []bool{false, true} {
		b.Run(fmt.Sprintf("ordered=%v", ordered), func(b *testing.B) {
			bl := newBenchLog(b, true, ordered)
			f, next := bl.f, bl.next
			setup := []*raft.Log{next(&command.AddDomain{Name: "example.org"})}
			for u := range 100 {
				setup = append(setup, next(&command.AddAccount{Address: fmt.Sprintf("u%d@example.org", u), PassHash: "h"}))
			}
			f.ApplyBatch(setup)
			meta := body("meta", 800)[:800]
			batch := func(n int) []*raft.Log {
				logs := make([]*raft.Log, 0, n)
				for range n {
					blob := codec.NewBlob(body(fmt.Sprint("bench", bl.index), 5000), meta)
					logs = append(logs, next(&command.Deliver{Blob: blob, Rcpts: []string{fmt.Sprintf("u%d@example.org", bl.index%100)}}))
				}
				return logs
			}
			for range 20000 / 32 {
				f.ApplyBatch(batch(32))
			}
			f.db.NoSync = false
			before := f.db.Stats().TxStats
			b.ResetTimer()
			for done := 0; done < b.N; {
				b.StopTimer()
				logs := batch(min(16, b.N-done))
				b.StartTimer()
				f.ApplyBatch(logs)
				done += len(logs)
			}
			b.StopTimer()
			ts := f.db.Stats().TxStats
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
			b.ReportMetric(float64(ts.GetWrite()-before.GetWrite())/float64(b.N), "pwrites/entry")
			b.ReportMetric(float64(ts.GetPageCount()-before.GetPageCount())/float64(b.N), "pages/entry")
			b.ReportMetric(float64(ts.GetSpillTime()-before.GetSpillTime())/float64(b.N), "spill-ns/entry")
			b.ReportMetric(float64(ts.GetWriteTime()-before.GetWriteTime())/float64(b.N), "write-ns/entry")
		})
	}
}

// benchLog feeds an FSM of its own (in a temp dir) with log entries of
// ascending index, each with an idempotency key: 128 random-looking bits,
// or the time first when ordered (command.NewKey's layout).
type benchLog struct {
	b       testing.TB
	f       *fsm
	index   uint64
	ordered bool
}

func newBenchLog(b testing.TB, noSync, ordered bool) *benchLog {
	f, err := openFSM(filepath.Join(b.TempDir(), "state.db"), noSync, discardLogger())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.close() })
	return &benchLog{b: b, f: f, ordered: ordered}
}

func (l *benchLog) next(p command.Payload) *raft.Log {
	l.index++
	h := sha256.Sum256([]byte(fmt.Sprint(l.index)))
	key := fmt.Sprintf("%x", h)[:32]
	if l.ordered {
		key = fmt.Sprintf("%016x%x", t0+int64(l.index)*1000, h[:8])
	}
	data, err := command.Marshal(&command.Command{Time: t0 + int64(l.index), Key: key, Payload: p})
	if err != nil {
		l.b.Fatal(err)
	}
	return &raft.Log{Index: l.index, Term: 1, Type: raft.LogCommand, Data: data}
}
