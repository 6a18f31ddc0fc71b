package bench

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// RawCluster is a bare 3-node hashicorp/raft cluster in one process over
// loopback TCP, with raft-boltdb logs (fsync on) and a batching FSM that
// writes each batch to bbolt in one transaction: the ceiling any raftmail
// write path can reach on this machine.
type RawCluster struct {
	nodes []*rawNode
}

type rawNode struct {
	r     *raft.Raft
	logs  *raftboltdb.BoltStore
	db    *bolt.DB
	trans *raft.NetworkTransport
}

type rawFSM struct{ db *bolt.DB }

func (f *rawFSM) Apply(l *raft.Log) interface{} { return f.ApplyBatch([]*raft.Log{l})[0] }

func (f *rawFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	_ = f.db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucketIfNotExists([]byte("data"))
		for _, l := range logs {
			if l.Type == raft.LogCommand {
				_ = b.Put(binary.BigEndian.AppendUint64(nil, l.Index), l.Data)
			}
		}
		return nil
	})
	return make([]interface{}, len(logs))
}

func (f *rawFSM) Snapshot() (raft.FSMSnapshot, error) { return noSnap{}, nil }
func (f *rawFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type noSnap struct{}

func (noSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (noSnap) Release()                          {}

// NewRawCluster starts three raw nodes under dir with raftmail's raft
// settings (MaxAppendEntries 32, 1s heartbeat/election).
func NewRawCluster(dir string) (*RawCluster, error) {
	rc := &RawCluster{}
	var servers []raft.Server
	for i := 0; i < 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addr := ln.Addr().String()
		ln.Close()
		trans, err := raft.NewTCPTransport(addr, nil, 4, 10*time.Second, io.Discard)
		if err != nil {
			return nil, err
		}
		d := filepath.Join(dir, fmt.Sprintf("raw%d", i))
		logs, err := raftboltdb.New(raftboltdb.Options{Path: d + "-raft.db"})
		if err != nil {
			return nil, err
		}
		db, err := bolt.Open(d+"-state.db", 0o600, nil)
		if err != nil {
			return nil, err
		}
		cfg := raft.DefaultConfig()
		cfg.LocalID = raft.ServerID(fmt.Sprint(i))
		cfg.MaxAppendEntries = 32
		cfg.CommitTimeout = 20 * time.Millisecond
		cfg.Logger = hclog.NewNullLogger()
		r, err := raft.NewRaft(cfg, &rawFSM{db: db}, logs, logs, raft.NewDiscardSnapshotStore(), trans)
		if err != nil {
			return nil, err
		}
		rc.nodes = append(rc.nodes, &rawNode{r: r, logs: logs, db: db, trans: trans})
		servers = append(servers, raft.Server{ID: cfg.LocalID, Address: trans.LocalAddr()})
	}
	if err := rc.nodes[0].r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for rc.leader() == nil {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("raw cluster: no leader")
		}
		time.Sleep(20 * time.Millisecond) // poll for the first election
	}
	return rc, nil
}

func (rc *RawCluster) leader() *raft.Raft {
	for _, n := range rc.nodes {
		if n.r.State() == raft.Leader {
			return n.r
		}
	}
	return nil
}

// Run applies total entries from concurrency goroutines and reports.
func (rc *RawCluster) Run(total, concurrency int, entry func(seq int64) []byte) Summary {
	return rc.run(total, 0, concurrency, entry, NewRecorder())
}

// RecordFor applies entries from concurrency goroutines for d, records
// them in rec (a fresh recorder) and reports.
func (rc *RawCluster) RecordFor(rec *Recorder, d time.Duration, concurrency int, entry func(seq int64) []byte) Summary {
	return rc.run(0, d, concurrency, entry, rec)
}

func (rc *RawCluster) run(total int, d time.Duration, concurrency int, entry func(seq int64) []byte, rec *Recorder) Summary {
	var next atomic.Int64
	var wg sync.WaitGroup
	r := rc.leader()
	deadline := time.Now().Add(d)
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seq := next.Add(1)
				if (total > 0 && seq > int64(total)) || (d > 0 && time.Now().After(deadline)) {
					return
				}
				data := entry(seq)
				start := time.Now()
				if err := r.Apply(data, 10*time.Second).Error(); err != nil {
					rec.Fail("apply")
					continue
				}
				rec.Ok(time.Since(start), len(data))
			}
		}()
	}
	wg.Wait()
	rec.Stop()
	return rec.Summary()
}

// Close stops the raw cluster.
func (rc *RawCluster) Close() {
	for _, n := range rc.nodes {
		_ = n.r.Shutdown().Error()
		_ = n.trans.Close()
		_ = n.logs.Close()
		_ = n.db.Close()
	}
}
