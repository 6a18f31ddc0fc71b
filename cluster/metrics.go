package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmail/raftmail/raftstore"
)

// nodeMetrics are a node's Prometheus metrics (Config.Metrics). Raft
// positions and file sizes are read at scrape time by a collector; commit
// latency and snapshots are recorded as they happen. A nil *nodeMetrics
// records nothing.
type nodeMetrics struct {
	commit       *prometheus.HistogramVec
	snapDuration *prometheus.HistogramVec
	snapBytes    prometheus.Gauge
}

var _ raftstore.Observer = (*nodeMetrics)(nil)

func newNodeMetrics(reg *prometheus.Registry) *nodeMetrics { // concrete type: a nil *Registry in an interface is not nil
	if reg == nil {
		return nil
	}
	return &nodeMetrics{
		commit: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "raftmail_commit_duration_seconds",
			Help:    "Time from a commit request on this node to the leader's answer (committed on a majority and applied on the leader), by result.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"result"}),
		snapDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "raftmail_snapshot_duration_seconds",
			Help:    "Time to write a raft snapshot of the state, by result.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10),
		}, []string{"result"}),
		snapBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "raftmail_snapshot_bytes",
			Help: "Compressed size of the last snapshot written.",
		}),
	}
}

// register adds the node's collectors to reg.
func (m *nodeMetrics) register(reg prometheus.Registerer, n *Node) error {
	if m == nil {
		return nil
	}
	for _, result := range []string{"ok", "error"} { // export the series before the first event
		m.commit.WithLabelValues(result)
		m.snapDuration.WithLabelValues(result)
	}
	for _, c := range []prometheus.Collector{m.commit, m.snapDuration, m.snapBytes, &raftCollector{n: n}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// SnapshotPersisted implements raftstore.Observer.
func (m *nodeMetrics) SnapshotPersisted(bytes int64, took time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.snapDuration.WithLabelValues("error").Observe(took.Seconds())
		return
	}
	m.snapDuration.WithLabelValues("ok").Observe(took.Seconds())
	m.snapBytes.Set(float64(bytes))
}

func (m *nodeMetrics) commitDone(start time.Time, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.commit.WithLabelValues(result).Observe(time.Since(start).Seconds())
}

// Commit sends an encoded command to the leader and returns once it is
// committed on a majority and applied on the leader; see commit. It
// records the latency in raftmail_commit_duration_seconds.
func (n *Node) Commit(ctx context.Context, data []byte) (raftstore.Result, error) {
	start := time.Now()
	res, err := n.commit(ctx, data)
	n.metrics.commitDone(start, err)
	return res, err
}

// raftCollector reads raft's position, this node's readiness and the data
// files' sizes at each scrape.
type raftCollector struct{ n *Node }

var (
	descState   = prometheus.NewDesc("raftmail_raft_state", "Raft state of this node (1 for the current state).", []string{"state"}, nil)
	descTerm    = prometheus.NewDesc("raftmail_raft_term", "Current raft term.", nil, nil)
	descCommit  = prometheus.NewDesc("raftmail_raft_commit_index", "Highest log index known committed.", nil, nil)
	descApplied = prometheus.NewDesc("raftmail_raft_applied_index", "Highest log index applied to this node's state.", nil, nil)
	descLast    = prometheus.NewDesc("raftmail_raft_last_index", "Last index in this node's raft log.", nil, nil)
	descLag     = prometheus.NewDesc("raftmail_raft_apply_lag", "Committed entries not yet applied here (commit index - applied index).", nil, nil)
	descContact = prometheus.NewDesc("raftmail_raft_last_contact_seconds", "Seconds since a follower last heard from the leader (0 on the leader).", nil, nil)
	descVoters  = prometheus.NewDesc("raftmail_raft_voters", "Voters in the raft configuration.", nil, nil)
	descSnapIdx = prometheus.NewDesc("raftmail_raft_last_snapshot_index", "Index of this node's latest snapshot.", nil, nil)
	descReady   = prometheus.NewDesc("raftmail_ready", "1 when /readyz answers ready.", nil, nil)
	descFile    = prometheus.NewDesc("raftmail_file_bytes", "Size of the node's data files (bbolt files never shrink).", []string{"file"}, nil)
	descCacheB  = prometheus.NewDesc("raftmail_body_cache_bytes", "Decompressed bodies held by the body cache (IMAP, POP3 and SEARCH read through it).", nil, nil)
	descCacheN  = prometheus.NewDesc("raftmail_body_cache_entries", "Bodies held by the body cache.", nil, nil)
	descCacheH  = prometheus.NewDesc("raftmail_body_cache_hits_total", "Body reads answered from the cache.", nil, nil)
	descCacheM  = prometheus.NewDesc("raftmail_body_cache_misses_total", "Body reads that decompressed.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descTerm, descCommit, descApplied, descLast, descLag,
		descContact, descVoters, descSnapIdx, descReady, descFile, descCacheB, descCacheN, descCacheH, descCacheM} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.store.Raft().Stats()
	u := func(k string) float64 { v, _ := strconv.ParseUint(st[k], 10, 64); return float64(v) }
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	cur := c.n.store.Raft().State()
	for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		v := 0.0
		if s == cur {
			v = 1
		}
		gauge(descState, v, s.String())
	}
	applied := float64(c.n.store.AppliedIndex())
	commit := u("commit_index")
	gauge(descTerm, u("term"))
	gauge(descCommit, commit)
	gauge(descApplied, applied)
	gauge(descLast, u("last_log_index"))
	gauge(descLag, max(0, commit-applied))
	gauge(descSnapIdx, u("last_snapshot_index"))
	contact := 0.0
	if cur != raft.Leader {
		if lc := c.n.store.Raft().LastContact(); !lc.IsZero() {
			contact = time.Since(lc).Seconds()
		}
	}
	gauge(descContact, contact)
	voters := 0.0
	if servers, err := c.n.store.Servers(); err == nil {
		for _, s := range servers {
			if s.Suffrage == raft.Voter {
				voters++
			}
		}
	}
	gauge(descVoters, voters)
	ready := 0.0
	if c.n.Ready() == nil {
		ready = 1
	}
	gauge(descReady, ready)
	for _, f := range []string{"raft.db", "state.db"} {
		if fi, err := os.Stat(filepath.Join(c.n.cfg.DataDir, f)); err == nil {
			gauge(descFile, float64(fi.Size()), f)
		}
	}
	gauge(descFile, float64(dirSize(filepath.Join(c.n.cfg.DataDir, "snapshots"))), "snapshots")
	bc := c.n.store.BodyCacheStats()
	gauge(descCacheB, float64(bc.Bytes))
	gauge(descCacheN, float64(bc.Entries))
	ch <- prometheus.MustNewConstMetric(descCacheH, prometheus.CounterValue, float64(bc.Hits))
	ch <- prometheus.MustNewConstMetric(descCacheM, prometheus.CounterValue, float64(bc.Misses))
}

func dirSize(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	return total
}
