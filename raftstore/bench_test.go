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
		for _, batch := range []int{1, 32} {
			b.Run(fmt.Sprintf("nosync=%v/batch=%d", noSync, batch), func(b *testing.B) {
				f, err := openFSM(filepath.Join(b.TempDir(), "state.db"), noSync, discardLogger())
				if err != nil {
					b.Fatal(err)
				}
				defer f.close()
				index := uint64(0)
				next := func(p command.Payload) *raft.Log {
					index++
					// Random-looking keys, as frontends make them (hex of 128 bits).
					key := fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprint(index))))[:32]
					data, err := command.Marshal(&command.Command{Time: t0 + int64(index), Key: key, Payload: p})
					if err != nil {
						b.Fatal(err)
					}
					return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
				}
				f.ApplyBatch([]*raft.Log{next(&command.AddDomain{Name: "example.org"}), next(&command.AddAccount{Address: alice, PassHash: "h"})})
				var bytesIn int64
				b.ResetTimer()
				for done := 0; done < b.N; {
					b.StopTimer()
					logs := make([]*raft.Log, 0, batch)
					for range min(batch, b.N-done) {
						blob := codec.NewBlob(body(fmt.Sprint("bench", index), 5000), nil)
						logs = append(logs, next(&command.Deliver{Blob: blob, Rcpts: []string{alice}}))
						bytesIn += int64(len(logs[len(logs)-1].Data))
					}
					b.StartTimer()
					f.ApplyBatch(logs)
					done += len(logs)
				}
				b.StopTimer()
				b.SetBytes(bytesIn / int64(b.N))
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
			})
		}
	}
}
