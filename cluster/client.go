package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/raftstore"
)

// Client speaks a node's HTTP API: leader forwarding between nodes, the
// admin CLI and the stateless SMTP frontends all use it.
type Client struct {
	token string
	http  *http.Client
	// batchers group concurrent commits per node endpoint (batch.go).
	batchers sync.Map
}

// errBadRequest marks a request the server refused as malformed; retrying
// cannot help.
var errBadRequest = errors.New("bad request")

// APIError is an error answer from a node.
type APIError struct {
	Status int    `json:"-"`
	Code   string `json:"error"`
	Msg    string `json:"message"`
	Leader string `json:"leader,omitempty"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("api %d %s: %s", e.Status, e.Code, e.Msg)
}

// Unwrap maps API error codes back to the errors callers test with
// errors.Is.
func (e *APIError) Unwrap() error {
	switch e.Code {
	case "not_leader":
		return raftstore.ErrNotLeader
	case "too_large":
		return raftstore.ErrTooLarge
	case "bad_request":
		return errBadRequest
	case "unavailable":
		return ErrUnavailable
	case "unauthorized", "forbidden":
		return errBadRequest
	}
	return (raftstore.Status{Code: e.Code, Msg: e.Msg}).Err()
}

// NewClient returns a client that sends token as a bearer token (if set).
func NewClient(token string) *Client {
	return &Client{token: token, http: NewHTTPClient(nil)}
}

// NewHTTPClient is the HTTP client for the node API that every caller
// shares the shape of: up to 64 idle connections per node (Go's default of
// 2 makes concurrent callers dial and tear down a connection per request)
// and, with m, the cluster's client certificate.
func NewHTTPClient(m *MutualTLS) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	if m != nil {
		tr.TLSClientConfig = m.Client.Clone()
	}
	return &http.Client{Transport: tr}
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Do sends a request to base+path with a JSON (or raw []byte) body and
// decodes a JSON answer into out (if non-nil).
func (c *Client) Do(ctx context.Context, method, base, path string, body, out any) error {
	_, err := c.do(ctx, method, base, path, body, out)
	return err
}

// do is Do that also returns the answer's header.
func (c *Client) do(ctx context.Context, method, base, path string, body, out any) (http.Header, error) {
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, ctype = bytes.NewReader(b), "application/octet-stream"
	default:
		js, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd, ctype = bytes.NewReader(js), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if dl, ok := ctx.Deadline(); ok {
		req.Header.Set(timeoutHeader, fmt.Sprint(time.Until(dl).Milliseconds()))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		ae := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, ae) != nil || ae.Code == "" {
			ae.Code, ae.Msg = "http_error", strings.TrimSpace(string(data))
		}
		return resp.Header, ae
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.Header, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

// Apply forwards an encoded command to a node that applies it as leader,
// batched with the other commands in flight to it (batch.go).
func (c *Client) Apply(ctx context.Context, base string, data []byte) (raftstore.Result, error) {
	res, _, err := c.batched(ctx, base, "/internal/apply", "/internal/apply-batch", data)
	return res, err
}

// Commit forwards an encoded command to any node, which commits it through
// the leader (used by stateless frontends).
func (c *Client) Commit(ctx context.Context, base string, data []byte) (raftstore.Result, error) {
	res, _, err := c.CommitVia(ctx, base, data)
	return res, err
}

// CommitVia is Commit that also returns the API URL of the leader that
// committed (LeaderHeader; "" when the node did not say), so that a
// frontend sends its next commits there instead of through a follower.
// Commands in flight to the same node at the same time share a request
// (batch.go).
func (c *Client) CommitVia(ctx context.Context, base string, data []byte) (raftstore.Result, string, error) {
	return c.batched(ctx, base, "/internal/commit", "/internal/commit-batch", data)
}

// LookupAnswer is the answer of /internal/result.
type LookupAnswer struct {
	Found  bool             `json:"found"`
	Result raftstore.Result `json:"result"`
}

// Lookup asks a leader whether the command with key has committed.
func (c *Client) Lookup(ctx context.Context, base, key string) (raftstore.Result, bool, error) {
	var ans LookupAnswer
	err := c.Do(ctx, http.MethodGet, base, "/internal/result/"+url.PathEscape(key), nil, &ans)
	return ans.Result, ans.Found, err
}

// Lookup a recipient in the directory of any node.
func (c *Client) Directory(ctx context.Context, base, addr string) (frontends.Directory, error) {
	var d frontends.Directory
	err := c.Do(ctx, http.MethodGet, base, "/directory/"+url.PathEscape(addr), nil, &d)
	return d, err
}

// Status is the answer of /status.
type Status struct {
	ID           string `json:"id"`
	State        string `json:"state"`
	LeaderID     string `json:"leader_id"`
	LeaderAPI    string `json:"leader_api"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	LastIndex    uint64 `json:"last_index"`
	Term         uint64 `json:"term"`
	// LastSnapshotIndex is the index of this node's latest snapshot; the
	// log before it (less the trailing entries) is compacted away.
	LastSnapshotIndex uint64   `json:"last_snapshot_index"`
	PID               int      `json:"pid"`
	RaftAddr          string   `json:"raft_addr"`
	APIAddr           string   `json:"api_addr"`
	Servers           []Member `json:"servers"`
}

// Member is one server of the raft configuration.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	Suffrage string `json:"suffrage"`
	APIAddr  string `json:"api_addr,omitempty"`
}

// Status fetches a node's status.
func (c *Client) Status(ctx context.Context, base string) (Status, error) {
	var s Status
	err := c.Do(ctx, http.MethodGet, base, "/status", nil, &s)
	return s, err
}

// DigestAnswer is the answer of /digest.
type DigestAnswer struct {
	ID           string `json:"id"`
	AppliedIndex uint64 `json:"applied_index"`
	Digest       string `json:"digest"`
}

// Digest fetches a node's state digest.
func (c *Client) Digest(ctx context.Context, base string) (DigestAnswer, error) {
	var d DigestAnswer
	err := c.Do(ctx, http.MethodGet, base, "/digest", nil, &d)
	return d, err
}
