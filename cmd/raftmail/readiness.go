package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/raftmail/raftmail/cluster"
)

// readiness answers a frontend's /readyz: ready while some node answers
// its own /readyz with 200, that is, the frontend can reach a node that
// can commit (a member with a leader, caught up). Answers are reused for
// a second so a busy load balancer does not multiply node calls.
type readiness struct {
	client *cluster.Client
	nodes  []string

	mu      sync.Mutex
	checked time.Time
	err     error
}

func newReadiness(c *cluster.Client, nodes []string) *readiness {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		if !strings.HasPrefix(n, "http://") && !strings.HasPrefix(n, "https://") {
			n = "http://" + n
		}
		out[i] = strings.TrimSuffix(n, "/")
	}
	return &readiness{client: c, nodes: out}
}

// check returns nil when a node is ready.
func (r *readiness) check(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < time.Second {
		return r.err
	}
	r.err = fmt.Errorf("no node is ready")
	for _, n := range r.nodes {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := r.client.Do(cctx, http.MethodGet, n, "/readyz", nil, nil)
		cancel()
		if err == nil {
			r.err = nil
			break
		}
		r.err = fmt.Errorf("no node is ready (last: %s: %v)", n, err)
	}
	r.checked = time.Now()
	return r.err
}

func (r *readiness) handle(w http.ResponseWriter, req *http.Request) {
	if err := r.check(req.Context()); err != nil {
		writeStatus(w, http.StatusServiceUnavailable, "not ready", err.Error())
		return
	}
	writeStatus(w, http.StatusOK, "ready", "")
}

func writeStatus(w http.ResponseWriter, code int, status, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	m := map[string]string{"status": status}
	if reason != "" {
		m["reason"] = reason
	}
	_ = json.NewEncoder(w).Encode(m)
}
