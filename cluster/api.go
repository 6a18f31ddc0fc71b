package cluster

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

const timeoutHeader = "X-Raftmail-Timeout-Ms"

// LeaderHeader, on a successful /internal/commit answer, names the API URL
// of the leader that committed: a frontend that reached a follower learns
// where to send its next commits without a forwarding hop.
const LeaderHeader = "X-Raftmail-Leader-Api"

// routes builds the node's HTTP API (docs/api.md).
func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	open := func(p string, h http.HandlerFunc) { mux.HandleFunc(p, h) }
	guarded := func(p string, h http.HandlerFunc) { mux.HandleFunc(p, n.guard(h)) }

	open("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	open("GET /status", n.handleStatus)
	open("GET /readyz", n.handleReady)
	open("GET /metrics", n.handleMetrics)
	guarded("GET /admin/backup", n.handleBackup)
	guarded("POST /admin/restore", n.handleRestore)
	guarded("GET /digest", n.handleDigest)
	guarded("POST /internal/apply", n.handleApply)
	guarded("POST /internal/commit", n.handleCommit)
	guarded("POST /internal/apply-batch", n.handleBatch(n.store.Apply))
	guarded("POST /internal/commit-batch", n.handleBatch(n.Commit))
	guarded("GET /internal/result/{key}", n.handleLookup)
	guarded("GET /directory/{address}", n.handleDirectory)
	guarded("POST /internal/auth", n.handleAuth)
	guarded("POST /cluster/join", n.handleJoin)
	guarded("POST /cluster/remove", n.handleRemove)
	guarded("GET /cluster/servers", n.handleServers)
	n.adminRoutes(guarded)
	n.queueRoutes(guarded)
	n.bayesRoutes(guarded)
	return mux
}

// guard requires the bearer token, except for loopback callers in dev mode.
func (n *Node) guard(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if n.cfg.Dev && isLoopback(r.RemoteAddr) || verifiedPeer(r) {
			h(w, r)
			return
		}
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if n.cfg.Token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(n.cfg.Token)) != 1 {
			writeErr(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
			return
		}
		h(w, r)
	}
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, APIError{Code: code, Msg: msg})
}

// writeFailure maps an error to an HTTP status and API error code.
func (n *Node) writeFailure(w http.ResponseWriter, err error) {
	status, ae := n.failure(err)
	writeJSON(w, status, ae)
}

// failure maps an error to an HTTP status and API error (the answer of a
// single request, or one command's answer in a batch).
func (n *Node) failure(err error) (int, APIError) {
	switch {
	case errors.Is(err, raftstore.ErrNotLeader):
		id, _ := n.store.Leader()
		return http.StatusServiceUnavailable, APIError{Code: "not_leader", Msg: err.Error(), Leader: id}
	case errors.Is(err, raftstore.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, APIError{Code: "too_large", Msg: err.Error()}
	case errors.Is(err, command.ErrShort), errors.Is(err, command.ErrUnknownType), errors.Is(err, command.ErrMalformed),
		errors.Is(err, errBadRequest):
		return http.StatusBadRequest, APIError{Code: "bad_request", Msg: err.Error()}
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, raftstore.ErrClosed):
		return http.StatusServiceUnavailable, APIError{Code: "unavailable", Msg: err.Error()}
	}
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{raftstore.ErrNoSuchUser, 404, "no_user"}, {raftstore.ErrNoSuchDomain, 404, "no_domain"},
		{raftstore.ErrNoSuchMailbox, 404, "no_mailbox"}, {raftstore.ErrAccountExists, 409, "acct_exists"},
		{raftstore.ErrAliasExists, 409, "alias_exists"}, {raftstore.ErrMailboxExists, 409, "mbox_exists"},
		{raftstore.ErrDomainInUse, 409, "domain_used"}, {raftstore.ErrQuotaExceeded, 422, "quota"},
		{raftstore.ErrInvalid, 400, "invalid"}, {raftstore.ErrLeaseHeld, 409, "lease_held"},
		{raftstore.ErrNoSuchMessage, 404, "no_message"},
	} {
		if errors.Is(err, c.err) {
			return c.status, APIError{Code: c.code, Msg: err.Error()}
		}
	}
	n.logger.Warn("api request failed", "err", err)
	return http.StatusInternalServerError, APIError{Code: "internal", Msg: err.Error()}
}

// reqContext bounds a request by the caller's timeout header, capped at
// CommitTimeout.
func (n *Node) reqContext(r *http.Request) (context.Context, context.CancelFunc) {
	d := n.cfg.CommitTimeout
	if ms, err := strconv.ParseInt(r.Header.Get(timeoutHeader), 10, 64); err == nil && ms > 0 && time.Duration(ms)*time.Millisecond < d {
		d = time.Duration(ms) * time.Millisecond
	}
	return context.WithTimeout(r.Context(), d)
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeErr(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
		} else {
			writeErr(w, http.StatusBadRequest, "bad_request", err.Error())
		}
		return nil, false
	}
	return b, true
}

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	b, ok := readBody(w, r, 1<<20)
	if !ok {
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_request", "malformed JSON: "+err.Error())
		return false
	}
	return true
}

// StatusNow returns this node's status.
func (n *Node) StatusNow() Status {
	st := n.store.Raft().Stats()
	u := func(k string) uint64 { v, _ := strconv.ParseUint(st[k], 10, 64); return v }
	leaderID, _ := n.store.Leader()
	s := Status{
		ID: n.cfg.ID, State: n.store.State(), LeaderID: leaderID, LeaderAPI: n.leaderAPI(),
		AppliedIndex: n.store.AppliedIndex(), CommitIndex: u("commit_index"), LastIndex: u("last_log_index"),
		Term: u("term"), LastSnapshotIndex: u("last_snapshot_index"), PID: os.Getpid(), RaftAddr: n.store.RaftAddr(), APIAddr: n.apiURL,
	}
	apis := map[string]string{}
	_ = n.store.View(func(r *raftstore.ReadTx) error {
		nodes, err := r.Nodes()
		for _, nd := range nodes {
			apis[nd.ID] = nd.APIAddr
		}
		return err
	})
	if servers, err := n.store.Servers(); err == nil {
		for _, srv := range servers {
			s.Servers = append(s.Servers, Member{ID: string(srv.ID), RaftAddr: string(srv.Address),
				Suffrage: srv.Suffrage.String(), APIAddr: apis[string(srv.ID)]})
		}
	}
	return s
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, n.StatusNow()) }

func (n *Node) handleServers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, n.StatusNow().Servers)
}

func (n *Node) handleDigest(w http.ResponseWriter, r *http.Request) {
	digest := n.store.Digest
	if r.URL.Query().Get("scope") == "data" {
		digest = n.store.DataDigest // without node records and command keys (backup.go)
	}
	d, idx, err := digest()
	if err != nil {
		n.writeFailure(w, err)
		return
	}
	writeJSON(w, 200, DigestAnswer{ID: n.cfg.ID, AppliedIndex: idx, Digest: d})
}

// handleApply applies a forwarded command here, as leader, without
// forwarding further (the sender retries against the leader it learns).
func (n *Node) handleApply(w http.ResponseWriter, r *http.Request) {
	data, ok := readBody(w, r, int64(64<<20))
	if !ok {
		return
	}
	ctx, cancel := n.reqContext(r)
	defer cancel()
	res, err := n.store.Apply(ctx, data)
	if err != nil {
		n.writeFailure(w, err)
		return
	}
	writeJSON(w, 200, res)
}

// handleCommit commits a command through the leader from any node (the
// stateless frontends' entry point).
func (n *Node) handleCommit(w http.ResponseWriter, r *http.Request) {
	data, ok := readBody(w, r, int64(64<<20))
	if !ok {
		return
	}
	ctx, cancel := n.reqContext(r)
	defer cancel()
	res, err := n.Commit(ctx, data)
	if err != nil {
		n.writeFailure(w, err)
		return
	}
	if api := n.leaderAPI(); api != "" {
		w.Header().Set(LeaderHeader, api)
	}
	writeJSON(w, 200, res)
}

func (n *Node) handleLookup(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := n.reqContext(r)
	defer cancel()
	res, found, err := n.Lookup(ctx, r.PathValue("key"))
	if err != nil {
		n.writeFailure(w, err)
		return
	}
	writeJSON(w, 200, LookupAnswer{Found: found, Result: res})
}

// LookupRecipient answers the directory question for one address from
// local state: is its domain local, which account, is it over quota.
func (n *Node) LookupRecipient(ctx context.Context, addr string) (frontends.Directory, error) {
	d := frontends.Directory{Address: addr}
	err := n.store.View(func(r *raftstore.ReadTx) error {
		norm, err := raftstore.NormalizeAddress(addr)
		if err != nil {
			return err
		}
		d.Address = norm
		d.Local = r.IsLocalDomain(norm[strings.LastIndexByte(norm, '@')+1:])
		acct, err := r.Resolve(norm)
		if err != nil {
			if errors.Is(err, raftstore.ErrNoSuchUser) || errors.Is(err, raftstore.ErrNoSuchDomain) {
				return nil
			}
			return err
		}
		a, err := r.Account(acct)
		if err != nil {
			return err
		}
		d.Account, d.Quota, d.Used = acct, a.Quota, a.Used
		d.OverQuota = a.Quota > 0 && a.Used >= a.Quota
		return nil
	})
	return d, err
}

func (n *Node) handleDirectory(w http.ResponseWriter, r *http.Request) {
	d, err := n.LookupRecipient(r.Context(), r.PathValue("address"))
	if err != nil {
		n.writeFailure(w, err)
		return
	}
	writeJSON(w, 200, d)
}

type joinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
}

func (n *Node) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req joinRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.ID == "" || req.RaftAddr == "" || req.APIAddr == "" {
		writeErr(w, 400, "bad_request", "join needs id, raft_addr and api_addr")
		return
	}
	ctx, cancel := n.reqContext(r)
	defer cancel()
	if err := n.AddMember(ctx, req.ID, req.RaftAddr, req.APIAddr); err != nil {
		n.writeFailure(w, err)
		return
	}
	writeJSON(w, 200, n.StatusNow())
}

func (n *Node) handleRemove(w http.ResponseWriter, r *http.Request) {
	var req joinRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	ctx, cancel := n.reqContext(r)
	defer cancel()
	if err := n.RemoveMember(ctx, req.ID); err != nil {
		n.writeFailure(w, err)
		return
	}
	writeJSON(w, 200, map[string]string{"removed": req.ID})
}

// proposeJSON proposes a command for an admin call and answers its result.
func (n *Node) proposeJSON(w http.ResponseWriter, r *http.Request, p command.Payload) {
	ctx, cancel := n.reqContext(r)
	defer cancel()
	res, err := n.Propose(ctx, &command.Command{Payload: p})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		n.writeFailure(w, err)
		return
	}
	writeJSON(w, 200, res)
}

// handleAuth verifies a password for the stateless submission frontends:
// 200 {"account": ...} or 401 {"error": "auth_failed"}. The node's
// verification cache spares repeated argon2id work.
func (n *Node) handleAuth(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	acct, err := n.store.Authenticate(req.User, req.Password)
	if err != nil {
		writeErr(w, http.StatusUnauthorized, "auth_failed", "authentication failed")
		return
	}
	writeJSON(w, 200, map[string]string{"account": acct})
}
