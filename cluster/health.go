package cluster

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Readiness (docs/operations.md "Health checks"): /healthz answers while
// the process serves HTTP; /readyz only while this node can serve reads
// that are close to current and pass writes on to a leader.

// Ready returns nil when this node is a member of a cluster that has a
// leader, and has applied all but at most ReadyMaxLag committed entries;
// otherwise the reason it is not ready.
func (n *Node) Ready() error {
	if n.store.State() == "Shutdown" {
		return errors.New("raft is shut down")
	}
	if id, _ := n.store.Leader(); id == "" {
		return errors.New("no leader known (no quorum?)")
	}
	if !n.isMember() {
		return errors.New("not a member of the cluster configuration")
	}
	commit, _ := strconv.ParseUint(n.store.Raft().Stats()["commit_index"], 10, 64)
	if applied := n.store.AppliedIndex(); commit > applied && commit-applied > n.cfg.ReadyMaxLag {
		return fmt.Errorf("applied index %d lags commit index %d by more than %d", applied, commit, n.cfg.ReadyMaxLag)
	}
	return nil
}

func (n *Node) handleReady(w http.ResponseWriter, r *http.Request) {
	if err := n.Ready(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleMetrics serves the node's registry (404 without one).
func (n *Node) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if n.cfg.Metrics == nil {
		writeErr(w, http.StatusNotFound, "no_metrics", "metrics are not enabled on this node")
		return
	}
	MetricsHandler(n.cfg.Metrics).ServeHTTP(w, r)
}

// MetricsHandler serves a registry in the Prometheus exposition formats.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// OpsHandler serves /metrics, /healthz and /readyz, for a plain-HTTP
// listener that monitoring and load balancers reach without a client
// certificate (the node flag --metrics).
func (n *Node) OpsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", handleHealthz)
	mux.HandleFunc("GET /readyz", n.handleReady)
	mux.HandleFunc("GET /metrics", n.handleMetrics)
	return mux
}
