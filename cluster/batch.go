package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftmail/raftmail/raftstore"
)

// Batched commits (docs/api.md, "Batched commits").
//
// Every commit a frontend sends, and every write a follower forwards, used
// to be one HTTP request: a write and a read on each side and four
// goroutine hand-offs per message, about a tenth of all the CPU of the
// SMTP path on two CPUs. The commits that callers send to the same node
// while earlier ones are in flight now travel together: POST
// /internal/commit-batch (or /internal/apply-batch) carries several
// commands, each framed as a uvarint length and the command's bytes, and
// the node answers one result or one error per command, in order. Each
// command is committed on its own (one raft entry, its own idempotency
// key), so batching changes no result and no guarantee; it only shares
// the request.
//
// A batcher keeps at most batchesInFlight requests open per node. A call
// that finds a free slot is sent at once, so an idle frontend adds no
// latency; under load the calls that arrive while all slots are busy wait
// for the next free one and go together.

const (
	// batchesInFlight is how many batch requests one client keeps open to
	// one node endpoint.
	batchesInFlight = 4
	// maxBatchItems and maxBatchBytes bound one batch; a single command
	// larger than maxBatchBytes goes alone.
	maxBatchItems = 256
	maxBatchBytes = 8 << 20
	// maxBatchBody is what a node reads of one batch request: one command
	// of the largest size (64 MiB, as /internal/commit) plus a full batch
	// of smaller ones.
	maxBatchBody = 64<<20 + maxBatchBytes + 16*maxBatchItems
	// batchRetryAfter is how long a client sends single requests to a
	// node that does not know the batch endpoints (an older version during
	// a rolling upgrade) before it tries again.
	batchRetryAfter = time.Minute
)

// maxBatchWait bounds a batch whose callers set no deadline (a variable
// for the test that proves the bound).
var maxBatchWait = 5 * time.Minute

// batchItem is one command's answer in a batch: Result, or Error with its
// HTTP status, exactly as the single endpoint would have answered it.
type batchItem struct {
	Status int               `json:"status"`
	Result *raftstore.Result `json:"result,omitempty"`
	Error  *APIError         `json:"error,omitempty"`
}

// batchAnswer is the body of a batch answer.
type batchAnswer struct {
	// Leader is the API URL of the leader when the node knows it (as
	// LeaderHeader on a single commit).
	Leader string      `json:"leader,omitempty"`
	Items  []batchItem `json:"items"`
}

// encodeBatch frames commands for a batch request.
func encodeBatch(cmds [][]byte) []byte {
	size := 0
	for _, c := range cmds {
		size += binary.MaxVarintLen64 + len(c)
	}
	out := make([]byte, 0, size)
	for _, c := range cmds {
		out = binary.AppendUvarint(out, uint64(len(c)))
		out = append(out, c...)
	}
	return out
}

// errBadBatch marks a batch body that cannot be split into commands.
var errBadBatch = errors.New("malformed batch")

// decodeBatch splits a batch request body into its commands (sub-slices of
// body, which the caller must not reuse).
func decodeBatch(body []byte) ([][]byte, error) {
	var cmds [][]byte
	for len(body) > 0 {
		n, w := binary.Uvarint(body)
		if w <= 0 {
			return nil, fmt.Errorf("%w: bad length of command %d", errBadBatch, len(cmds)+1)
		}
		body = body[w:]
		if n == 0 || n > uint64(len(body)) {
			return nil, fmt.Errorf("%w: command %d: length %d, %d bytes left", errBadBatch, len(cmds)+1, n, len(body))
		}
		if len(cmds) == maxBatchItems {
			return nil, fmt.Errorf("%w: more than %d commands", errBadBatch, maxBatchItems)
		}
		cmds = append(cmds, body[:n:n])
		body = body[n:]
	}
	if len(cmds) == 0 {
		return nil, fmt.Errorf("%w: no command", errBadBatch)
	}
	return cmds, nil
}

// batchCall is one caller's command waiting in a batcher.
type batchCall struct {
	data     []byte
	deadline time.Time // zero: the caller set none
	done     chan batchResult
	// gone is set when the caller stopped waiting (its context ended):
	// a call still queued then is not sent.
	gone atomic.Bool
}

type batchResult struct {
	res    raftstore.Result
	leader string
	err    error
}

// batcher groups the calls to one node endpoint (base URL + batch path).
type batcher struct {
	c    *Client
	base string
	path string

	mu      sync.Mutex
	queue   []*batchCall
	running int
	// singleUntil is set when the node answered that it has no batch
	// endpoint (UnixNano; 0 when batching).
	singleUntil atomic.Int64
}

// errNoBatchEndpoint tells the waiting callers to send their command alone.
var errNoBatchEndpoint = errors.New("the node has no batch endpoint")

// batched sends data to base's batch endpoint together with the other
// calls in flight to it, and returns its result and the leader the node
// named; single is the endpoint of one command, used when the node has
// no batch endpoint. A cancelled ctx returns at once; the command may
// still commit (its key makes a retry safe).
func (c *Client) batched(ctx context.Context, base, single, path string, data []byte) (raftstore.Result, string, error) {
	base = strings.TrimSuffix(base, "/")
	key := base + path
	v, ok := c.batchers.Load(key)
	if !ok {
		v, _ = c.batchers.LoadOrStore(key, &batcher{c: c, base: base, path: path})
	}
	b := v.(*batcher)
	if until := b.singleUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		return c.single(ctx, base, single, data)
	}
	call := &batchCall{data: data, done: make(chan batchResult, 1)}
	call.deadline, _ = ctx.Deadline()
	b.enqueue(call)
	select {
	case r := <-call.done:
		if errors.Is(r.err, errNoBatchEndpoint) {
			return c.single(ctx, base, single, data)
		}
		return r.res, r.leader, r.err
	case <-ctx.Done():
		call.gone.Store(true)
		return raftstore.Result{}, "", fmt.Errorf("POST %s: %w", path, ctx.Err())
	}
}

// single sends one command to a single-command endpoint.
func (c *Client) single(ctx context.Context, base, path string, data []byte) (raftstore.Result, string, error) {
	var res raftstore.Result
	h, err := c.do(ctx, http.MethodPost, base, path, data, &res)
	return res, h.Get(LeaderHeader), err
}

func (b *batcher) enqueue(call *batchCall) {
	b.mu.Lock()
	b.queue = append(b.queue, call)
	start := b.running < batchesInFlight
	if start {
		b.running++
	}
	b.mu.Unlock()
	if start {
		go b.run()
	}
}

// run sends batches while calls are queued, then frees its slot.
func (b *batcher) run() {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.running--
			b.mu.Unlock()
			return
		}
		var calls []*batchCall
		n, size := 0, 0
		for ; n < len(b.queue) && len(calls) < maxBatchItems; n++ {
			c := b.queue[n]
			if c.gone.Load() {
				continue
			}
			if len(calls) > 0 && size+len(c.data) > maxBatchBytes {
				break
			}
			calls = append(calls, c)
			size += len(c.data)
		}
		b.queue = slices.Delete(b.queue, 0, n)
		b.mu.Unlock()
		if len(calls) > 0 {
			b.send(calls)
		}
	}
}

// batchDeadline is when a batch request made at now gives up: at its
// latest caller's deadline. A caller without a deadline must not hold a
// slot for ever on a node that never answers (the nodes bound a commit at
// their --commit-timeout anyway), so it counts as now+maxBatchWait; a
// caller in the same batch with a later deadline keeps it.
func batchDeadline(calls []*batchCall, now time.Time) time.Time {
	var latest time.Time
	for _, c := range calls {
		d := c.deadline
		if d.IsZero() {
			d = now.Add(maxBatchWait)
		}
		if d.After(latest) {
			latest = d
		}
	}
	return latest
}

// send makes one batch request and hands each caller its answer. The
// request lives until the latest caller's deadline (maxBatchWait when one
// has none): callers that give up earlier have already returned.
func (b *batcher) send(calls []*batchCall) {
	cmds := make([][]byte, len(calls))
	for i, c := range calls {
		cmds[i] = c.data
	}
	ctx, cancel := context.WithDeadline(context.Background(), batchDeadline(calls, time.Now()))
	defer cancel()
	var ans batchAnswer
	_, err := b.c.do(ctx, http.MethodPost, b.base, b.path, encodeBatch(cmds), &ans)
	if err == nil && len(ans.Items) != len(calls) {
		err = fmt.Errorf("POST %s: %d answers for %d commands", b.path, len(ans.Items), len(calls))
	}
	if err != nil {
		if ae := (*APIError)(nil); errors.As(err, &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusMethodNotAllowed) {
			b.singleUntil.Store(time.Now().Add(batchRetryAfter).UnixNano())
			err = errNoBatchEndpoint
		}
		for _, c := range calls {
			c.done <- batchResult{err: err}
		}
		return
	}
	for i, c := range calls {
		it := ans.Items[i]
		switch {
		case it.Error != nil:
			e := *it.Error
			e.Status = it.Status
			c.done <- batchResult{err: fmt.Errorf("POST %s: %w", b.path, &e)}
		case it.Result != nil:
			c.done <- batchResult{res: *it.Result, leader: ans.Leader}
		default:
			c.done <- batchResult{err: fmt.Errorf("POST %s: answer %d has neither result nor error", b.path, i+1)}
		}
	}
}

// handleBatch answers a batch of commands (POST /internal/commit-batch
// with n.Commit, /internal/apply-batch with the store's Apply): each is
// committed on its own and concurrently, so raft batches them as it
// batches separate requests, and each gets the answer its single request
// would have had. A body that cannot be split into commands is refused
// whole (400), before anything is proposed.
func (n *Node) handleBatch(apply func(context.Context, []byte) (raftstore.Result, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r, maxBatchBody)
		if !ok {
			return
		}
		cmds, err := decodeBatch(body)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		ctx, cancel := n.reqContext(r)
		defer cancel()
		ans := batchAnswer{Items: make([]batchItem, len(cmds))}
		var wg sync.WaitGroup
		for i, data := range cmds {
			wg.Go(func() {
				res, err := apply(ctx, data)
				if err != nil {
					status, ae := n.failure(err)
					ans.Items[i] = batchItem{Status: status, Error: &ae}
					return
				}
				ans.Items[i] = batchItem{Status: http.StatusOK, Result: &res}
			})
		}
		wg.Wait()
		ans.Leader = n.leaderAPI()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ans) // compact: read by programs only
	}
}
