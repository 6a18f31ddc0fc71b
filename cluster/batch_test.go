package cluster_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// countingProxy forwards to a node's API, counting requests per path and
// holding each for delay, so that concurrent callers pile up behind the
// batches in flight.
type countingProxy struct {
	srv   *httptest.Server
	mu    sync.Mutex
	paths map[string]int
}

func newCountingProxy(t *testing.T, target string, delay time.Duration, refuse func(path string) bool) *countingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{paths: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.paths[r.URL.Path]++
		p.mu.Unlock()
		if refuse != nil && refuse(r.URL.Path) {
			http.NotFound(w, r)
			return
		}
		time.Sleep(delay)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *countingProxy) count(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paths[path]
}

// TestConcurrentCommitsShareRequests: 64 deliveries sent at once through
// a follower travel in a handful of batch requests (to the follower, and
// from it to the leader), and each is stored exactly once, on every node.
func TestConcurrentCommitsShareRequests(t *testing.T) {
	c := clustertest.New(t, 3)
	c.AddAccount("alice@example.test", "pw")
	f := c.Follower()
	proxy := newCountingProxy(t, c.Node(f).APIURL(), 50*time.Millisecond, nil)
	client := cluster.NewClient("")
	defer client.Close()

	const n = 64
	cmds := make([][]byte, n)
	for i := range cmds {
		raw := fmt.Appendf(nil, "From: a@remote.test\r\nTo: alice@example.test\r\nMessage-ID: <batch-%d@remote.test>\r\nSubject: batch %d\r\n\r\nbody %d\r\n", i, i, i)
		cmd, err := frontends.NewDeliver(c.Node(f).Codec(), frontends.Envelope{From: "a@remote.test", Rcpts: []string{"alice@example.test"}}, raw)
		if err != nil {
			t.Fatal(err)
		}
		if cmds[i], err = command.Marshal(cmd); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results := make([]raftstore.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range cmds {
		wg.Go(func() { results[i], _, errs[i] = client.CommitVia(ctx, proxy.srv.URL, cmds[i]) })
	}
	wg.Wait()
	var uids []uint32
	var last uint64
	for i, res := range results {
		if errs[i] != nil {
			t.Fatalf("delivery %d: %v", i, errs[i])
		}
		if len(res.Rcpts) != 1 || res.Rcpts[0].UID == 0 {
			t.Fatalf("delivery %d: %+v", i, res)
		}
		uids = append(uids, res.Rcpts[0].UID)
		last = max(last, res.Index)
	}
	slices.Sort(uids)
	if len(slices.Compact(uids)) != n {
		t.Fatalf("%d distinct UIDs for %d deliveries", len(slices.Compact(uids)), n)
	}
	batches := proxy.count("/internal/commit-batch")
	if proxy.count("/internal/commit") != 0 || batches == 0 || batches > n/4 {
		t.Fatalf("%d batch requests and %d single ones for %d concurrent deliveries", batches, proxy.count("/internal/commit"), n)
	}
	t.Logf("%d deliveries in %d batch requests", n, batches)
	c.WaitApplied(last)
	c.WaitConverged(20 * time.Second)
	for i := range c.N() {
		if got := inboxCount(t, c, i, "alice@example.test"); got != n {
			t.Fatalf("node %d holds %d messages, want %d", i+1, got, n)
		}
	}
}

// batchItem mirrors one answer of a batch (docs/api.md).
type batchItem struct {
	Status int               `json:"status"`
	Result *raftstore.Result `json:"result"`
	Error  *struct {
		Code string `json:"error"`
	} `json:"error"`
}

func postBatch(t *testing.T, base string, body []byte) (int, []batchItem) {
	t.Helper()
	resp, err := http.Post(base+"/internal/commit-batch", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct {
		Items []batchItem `json:"items"`
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, ans.Items
}

func frame(cmds ...[]byte) []byte {
	var out []byte
	for _, c := range cmds {
		out = binary.AppendUvarint(out, uint64(len(c)))
		out = append(out, c...)
	}
	return out
}

// TestBatchAnswersEachCommandAlone: in one batch, a malformed command gets
// the single endpoint's 400 while the others commit, and a command sent
// twice in the batch is stored once and answered twice with the same
// result.
func TestBatchAnswersEachCommandAlone(t *testing.T) {
	c := clustertest.New(t, 3)
	base := c.Node(c.WaitLeader()).APIURL()
	ok1 := noop(t, "k-batch-a")
	status, items := postBatch(t, base, frame(ok1, []byte{0xff, 0x00, 0x13}, noop(t, "k-batch-b"), ok1))
	if status != http.StatusOK || len(items) != 4 {
		t.Fatalf("status %d, %d answers for 4 commands", status, len(items))
	}
	for i, want := range []int{200, 400, 200, 200} {
		if items[i].Status != want {
			t.Fatalf("answer %d: status %d, want %d (%+v)", i+1, items[i].Status, want, items)
		}
	}
	if items[1].Error == nil || items[1].Error.Code != "bad_request" || items[1].Result != nil {
		t.Fatalf("malformed command answered %+v", items[1])
	}
	a, b, again := items[0].Result, items[2].Result, items[3].Result
	if a == nil || b == nil || again == nil || a.Index == 0 || b.Index == a.Index || again.Index != a.Index {
		t.Fatalf("results %+v %+v %+v: want two entries, the repeated key answered with its first", a, b, again)
	}
}

// TestMalformedBatchIsRefusedWhole: a body that cannot be split into
// commands is refused with 400 before anything reaches the log.
func TestMalformedBatchIsRefusedWhole(t *testing.T) {
	c := clustertest.New(t, 3)
	leader := c.Node(c.WaitLeader())
	before := leader.StatusNow().LastIndex
	good := noop(t, "k-never")
	for name, body := range map[string][]byte{
		"empty":          nil,
		"truncated":      frame(good)[:len(good)],
		"zero length":    append(frame(good), 0),
		"length too big": append(binary.AppendUvarint(nil, 1<<40), good...),
		"bad varint":     bytes.Repeat([]byte{0xff}, 11),
		"too many":       frame(slices.Repeat([][]byte{good}, 257)...),
	} {
		if status, _ := postBatch(t, leader.APIURL(), body); status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", name, status)
		}
	}
	if after := leader.StatusNow().LastIndex; after != before {
		t.Fatalf("the log grew from %d to %d on refused batches", before, after)
	}
}

// TestBatchFallsBackToSingleRequests: a node without the batch endpoints
// (an older version during a rolling upgrade) still gets every commit, as
// single requests, and is not asked for a batch again at once.
func TestBatchFallsBackToSingleRequests(t *testing.T) {
	c := clustertest.New(t, 3)
	proxy := newCountingProxy(t, c.Node(c.WaitLeader()).APIURL(), 0,
		func(path string) bool { return strings.HasSuffix(path, "-batch") })
	client := cluster.NewClient("")
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		res, err := client.Commit(ctx, proxy.srv.URL, noop(t, fmt.Sprintf("k-fallback-%d", i)))
		if err != nil || res.Index == 0 {
			t.Fatalf("commit %d: %+v, %v", i, res, err)
		}
	}
	if b, s := proxy.count("/internal/commit-batch"), proxy.count("/internal/commit"); b != 1 || s != 3 {
		t.Fatalf("%d batch and %d single requests; want 1 refused batch, then 3 singles", b, s)
	}
}

// TestCancelledCallerReturnsAtOnce: a caller whose context ends while its
// batch hangs on a frozen node returns at once.
func TestCancelledCallerReturnsAtOnce(t *testing.T) {
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hung.Close()
	defer close(release)
	client := cluster.NewClient("")
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := client.CommitVia(ctx, hung.URL, noop(t, "k-hung"))
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("commit at a hung node: %v after %v", err, time.Since(start))
	}
}

// TestBatchWithoutDeadlineIsBounded: a caller that sets no deadline, at a
// node that never answers, gets an error once the batch bound passes
// instead of holding the batch slot (and its own goroutine) for ever.
func TestBatchWithoutDeadlineIsBounded(t *testing.T) {
	defer cluster.SetMaxBatchWait(300 * time.Millisecond)()
	release := make(chan struct{})
	hungUp := make(chan string, 1) // the path of a request the client hung up
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // so that the server sees the client hang up
		select {
		case <-r.Context().Done():
			hungUp <- r.URL.Path
		case <-release:
		}
	}))
	defer hung.Close()
	defer close(release)
	client := cluster.NewClient("")
	defer client.Close()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, _, err := client.CommitVia(context.Background(), hung.URL, noop(t, "k-no-deadline"))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("commit without a deadline at a hung node: %v after %v", err, time.Since(start))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a commit without a deadline at a hung node is still waiting after 10 s (bound 300 ms)")
	}
	select {
	case path := <-hungUp:
		if !strings.HasSuffix(path, "-batch") {
			t.Errorf("hung-up request %s, want the batch endpoint", path)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the batch request is still open at the node")
	}
}

func noop(t *testing.T, key string) []byte {
	t.Helper()
	data, err := command.Marshal(&command.Command{Key: key, Payload: &command.Noop{}})
	if err != nil {
		t.Fatal(err)
	}
	return data
}
