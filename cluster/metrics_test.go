package cluster_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/raftstore"
)

// scrape fetches and parses a /metrics page.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics answered %d: %s", rec.Code, rec.Body.String())
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value sums a family's samples whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	var sum float64
	found := false
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			match := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					match = true
				}
			}
			if !match {
				continue next
			}
		}
		found = true
		switch {
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum, found
}

// TestNodeMetrics scrapes /metrics of a leader and a follower: every
// series exists, and the indexes, commit latency and snapshot series move
// with writes and a snapshot.
func TestNodeMetrics(t *testing.T) {
	oc := newOpsCluster(t, nil)
	for _, id := range []string{"n1", "n2", "n3"} {
		oc.add(id)
	}
	oc.waitMembers(3)
	leader := oc.leader()
	var follower *cluster.Node
	for _, n := range oc.running() {
		if n != leader {
			follower = n
		}
	}
	before := scrape(t, follower.OpsHandler())
	for _, name := range []string{"raftmail_raft_state", "raftmail_raft_term", "raftmail_raft_commit_index",
		"raftmail_raft_applied_index", "raftmail_raft_apply_lag", "raftmail_raft_last_contact_seconds",
		"raftmail_raft_voters", "raftmail_ready", "raftmail_file_bytes", "raftmail_snapshot_bytes"} {
		if _, ok := before[name]; !ok {
			t.Errorf("series %s missing", name)
		}
	}
	if v, _ := value(before, "raftmail_raft_state", map[string]string{"state": "Follower"}); v != 1 {
		t.Errorf("follower reports raft_state{Follower}=%v", v)
	}
	if v, _ := value(before, "raftmail_raft_voters", nil); v != 3 {
		t.Errorf("voters = %v, want 3", v)
	}
	if v, ok := value(before, "raftmail_file_bytes", map[string]string{"file": "state.db"}); !ok || v <= 0 {
		t.Errorf("state.db size = %v", v)
	}
	applied0, _ := value(before, "raftmail_raft_applied_index", nil)

	oc.addAccount("alice@example.test")
	for i := 0; i < 3; i++ {
		if err := deliver(follower, "alice@example.test", "metrics"); err != nil {
			t.Fatal(err)
		}
	}
	if err := follower.Store().Snapshot(); err != nil {
		t.Fatal(err)
	}
	// The follower applies the last delivery a moment after the leader
	// answered: poll the scrape instead of reading it once.
	var after map[string]*dto.MetricFamily
	deadline := time.Now().Add(10 * time.Second)
	for {
		after = scrape(t, follower.OpsHandler())
		v, _ := value(after, "raftmail_raft_applied_index", nil)
		if v >= applied0+5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("applied index moved from %v to %v, want ≥ +5", applied0, v)
		}
		time.Sleep(20 * time.Millisecond) // poll the follower's apply
	}
	if v, _ := value(after, "raftmail_commit_duration_seconds", map[string]string{"result": "ok"}); v < 3 {
		t.Errorf("commit latency histogram counted %v commits, want ≥ 3", v)
	}
	if v, _ := value(after, "raftmail_snapshot_duration_seconds", map[string]string{"result": "ok"}); v < 1 {
		t.Errorf("snapshot histogram counted %v snapshots", v)
	}
	if v, _ := value(after, "raftmail_snapshot_bytes", nil); v <= 0 {
		t.Errorf("snapshot bytes = %v", v)
	}
	// Read each delivered body twice through the follower's body cache:
	// the cache series count one miss and one hit per body.
	err := follower.Store().View(func(r *raftstore.ReadTx) error {
		mb, err := r.MailboxByName("alice@example.test", "INBOX")
		if err != nil {
			return err
		}
		return r.Messages(mb.ID, nil, func(m *raftstore.Message) error {
			for i := 0; i < 2; i++ {
				if _, err := r.SharedBody(m.BlobID); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	cache := scrape(t, follower.OpsHandler())
	for name, min := range map[string]float64{"raftmail_body_cache_hits_total": 1, "raftmail_body_cache_misses_total": 1,
		"raftmail_body_cache_entries": 1, "raftmail_body_cache_bytes": 1} {
		if v, ok := value(cache, name, nil); !ok || v < min {
			t.Errorf("%s = %v (present %v), want ≥ %v", name, v, ok, min)
		}
	}
	lead := scrape(t, leader.OpsHandler())
	if v, _ := value(lead, "raftmail_raft_state", map[string]string{"state": "Leader"}); v != 1 {
		t.Errorf("leader reports raft_state{Leader}=%v", v)
	}
	// The API serves the same registry at /metrics.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, leader.APIURL()+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("API /metrics answered %d", resp.StatusCode)
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestReadinessFollowsQuorum: /readyz is 200 on every member of a healthy
// cluster, 503 on the survivor once two of three nodes are gone (no
// quorum, no leader), and 200 again when one comes back; /healthz stays
// 200 throughout.
func TestReadinessFollowsQuorum(t *testing.T) {
	oc := newOpsCluster(t, nil)
	for _, id := range []string{"n1", "n2", "n3"} {
		oc.add(id)
	}
	oc.waitMembers(3)
	status := func(n *cluster.Node, path string) int {
		rec := httptest.NewRecorder()
		n.OpsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	clustertest.Eventually(t, 10*time.Second, "every node ready", func() bool {
		for _, n := range oc.running() {
			if status(n, "/readyz") != 200 {
				return false
			}
		}
		return true
	})
	oc.stop("n2")
	oc.stop("n3")
	n1 := oc.node("n1")
	clustertest.Eventually(t, 20*time.Second, "n1 not ready without quorum", func() bool {
		return status(n1, "/readyz") == 503
	})
	if err := n1.Ready(); err == nil {
		t.Fatal("Ready() is nil without quorum")
	}
	if got := status(n1, "/healthz"); got != 200 {
		t.Fatalf("/healthz = %d without quorum, want 200", got)
	}
	if v, _ := value(scrape(t, n1.OpsHandler()), "raftmail_ready", nil); v != 0 {
		t.Fatalf("raftmail_ready = %v without quorum", v)
	}
	oc.restart("n2")
	clustertest.Eventually(t, 20*time.Second, "n1 and n2 ready again", func() bool {
		return status(n1, "/readyz") == 200 && status(oc.node("n2"), "/readyz") == 200
	})
}
