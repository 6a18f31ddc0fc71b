package bayes

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CountsPath is the node API endpoint that answers token counts
// (cluster/bayes_api.go). Request: the tokens as 8-byte big-endian
// integers; response: the totals (spam, ham: 8 bytes each) then per token
// its spam and ham counts (4 bytes each), all big-endian.
const CountsPath = "/internal/bayes/counts"

// MaxBatch is the most tokens asked in one request.
const MaxBatch = 8192

// RemoteConfig configures a Remote model.
type RemoteConfig struct {
	// Nodes are node API base URLs; any node answers (its local replica).
	Nodes []string
	// Token is the node API bearer token.
	Token string
	// TTL is how long a token's counts are reused (default 60s): training
	// shows in classification after at most this long.
	TTL time.Duration
	// MaxEntries bounds the cache (default 500,000 tokens, about 15 MB).
	MaxEntries int
	// HTTP is the client (default: one with a 5s timeout).
	HTTP   *http.Client
	Logger *slog.Logger
}

// Remote is the frontends' Model: counts fetched in batches from any node
// over the node API and cached with a TTL. Tokens that a Bloom filter of
// the model (FilterPath, refreshed every TTL) says the model lacks count
// as zero without a request, so a token first trained after the filter
// was built shows in classification after up to one more TTL (two while
// refreshes fail). Safe for concurrent use.
type Remote struct {
	cfg  RemoteConfig
	next atomic.Uint32

	mu     sync.Mutex
	cache  map[Token]cached
	tot    Totals
	totExp time.Time

	filter     *Filter   // nil: not loaded, or the nodes have none
	filterExp  time.Time // refresh after
	filterUse  time.Time // stop trusting an unrefreshed filter after
	refreshing bool
	skipped    atomic.Uint64
}

// cached is a cache entry. It holds no pointer (the expiry in unix
// nanoseconds, not a time.Time with its *Location), so the garbage
// collector never scans the cache's hundreds of thousands of entries, and
// an entry takes 16 bytes instead of 32.
type cached struct {
	c   Counts
	exp int64
}

var _ Model = (*Remote)(nil)

// NewRemote returns a Remote model.
func NewRemote(cfg RemoteConfig) (*Remote, error) {
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("bayes: no nodes")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = time.Minute
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 500_000
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for i, n := range cfg.Nodes {
		cfg.Nodes[i] = strings.TrimRight(n, "/")
	}
	return &Remote{cfg: cfg, cache: make(map[Token]cached)}, nil
}

// Counts implements Model: cached counts, the misses fetched in batches.
func (r *Remote) Counts(ctx context.Context, tokens []Token) (Totals, []Counts, error) {
	now := time.Now()
	f := r.currentFilter(ctx, now)
	out := make([]Counts, len(tokens))
	var missIdx []int
	skipped := 0
	nowNS := now.UnixNano()
	r.mu.Lock()
	for i, t := range tokens {
		if e, ok := r.cache[t]; ok && nowNS < e.exp {
			out[i] = e.c
			continue
		}
		if f != nil && !f.MayContain(t) {
			skipped++ // the model has never seen it: zero counts
			continue
		}
		missIdx = append(missIdx, i)
	}
	r.skipped.Add(uint64(skipped))
	tot, totOK := r.tot, now.Before(r.totExp)
	r.mu.Unlock()
	if len(missIdx) == 0 && totOK {
		return tot, out, nil
	}
	if len(missIdx) == 0 {
		missIdx = nil
	}
	for start := 0; start == 0 || start < len(missIdx); start += MaxBatch {
		batch := missIdx[start:min(start+MaxBatch, len(missIdx))]
		toks := make([]Token, len(batch))
		for j, i := range batch {
			toks[j] = tokens[i]
		}
		t, cs, err := r.fetch(ctx, toks)
		if err != nil {
			return Totals{}, nil, err
		}
		tot = t
		for j, i := range batch {
			out[i] = cs[j]
		}
		r.store(toks, cs, t, now)
		if len(missIdx) == 0 {
			break
		}
	}
	return tot, out, nil
}

// Skipped returns how many token lookups the filter answered without a
// request.
func (r *Remote) Skipped() uint64 { return r.skipped.Load() }

// currentFilter returns the filter to use now (nil: none), first
// refreshing it when it is due and no other caller is at it. A failed
// refresh leaves the old filter in use up to twice the TTL after it was
// fetched; nodes without the endpoint are asked again after a TTL.
func (r *Remote) currentFilter(ctx context.Context, now time.Time) *Filter {
	r.mu.Lock()
	if now.Before(r.filterExp) || r.refreshing {
		f := r.filter
		if !now.Before(r.filterUse) {
			f = nil
		}
		r.mu.Unlock()
		return f
	}
	r.refreshing = true
	r.mu.Unlock()

	f, err := r.fetchFilter(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshing = false
	r.filterExp = now.Add(r.cfg.TTL)
	switch {
	case err == nil:
		r.filter, r.filterUse = f, now.Add(2*r.cfg.TTL)
	case errors.Is(err, errNotServed):
		r.filter = nil
	default:
		r.cfg.Logger.Debug("bayes filter refresh failed; the last one stays in use up to two TTLs after it was fetched", "err", err)
	}
	if !now.Before(r.filterUse) {
		return nil
	}
	return r.filter
}

var errNotServed = errors.New("endpoint not served")

// fetchFilter asks the nodes in turn for the model's filter.
func (r *Remote) fetchFilter(ctx context.Context) (*Filter, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var f *Filter
	err := r.call(ctx, "bayes filter", http.MethodGet, FilterPath, nil, maxFilterBytes, func(data []byte) error {
		f = new(Filter)
		return f.UnmarshalBinary(data)
	})
	return f, err
}

func (r *Remote) store(toks []Token, cs []Counts, tot Totals, now time.Time) {
	exp := now.Add(r.cfg.TTL)
	nowNS, expNS := now.UnixNano(), exp.UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache)+len(toks) > r.cfg.MaxEntries {
		for t, e := range r.cache {
			if nowNS >= e.exp {
				delete(r.cache, t)
			}
		}
		if len(r.cache)+len(toks) > r.cfg.MaxEntries {
			clear(r.cache)
		}
	}
	for i, t := range toks {
		r.cache[t] = cached{c: cs[i], exp: expNS}
	}
	r.tot, r.totExp = tot, exp
}

// fetch asks the nodes for the counts of toks.
func (r *Remote) fetch(ctx context.Context, toks []Token) (tot Totals, cs []Counts, err error) {
	body := make([]byte, 0, 8*len(toks))
	for _, t := range toks {
		body = binary.BigEndian.AppendUint64(body, uint64(t))
	}
	err = r.call(ctx, "bayes counts", http.MethodPost, CountsPath, body, 16+8*len(toks), func(data []byte) error {
		tot, cs, err = DecodeCounts(data, len(toks))
		return err
	})
	return tot, cs, err
}

// call sends one request to the nodes in turn, starting with the last one
// that answered, until one answers 200 with a body (at most limit bytes)
// that decode accepts. A node answering 404 or 405 predates the endpoint
// (errNotServed among the joined errors).
func (r *Remote) call(ctx context.Context, what, method, path string, body []byte, limit int, decode func([]byte) error) error {
	var errs []error
	first := int(r.next.Load())
	for k := range r.cfg.Nodes {
		i := (first + k) % len(r.cfg.Nodes)
		err := r.callOne(ctx, method, r.cfg.Nodes[i]+path, body, limit, decode)
		if err == nil {
			r.next.Store(uint32(i))
			return nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("%s from %d nodes: %w", what, len(r.cfg.Nodes), errors.Join(errs...))
}

func (r *Remote) callOne(ctx context.Context, method, url string, body []byte, limit int, decode func([]byte) error) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	if r.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	}
	resp, err := r.cfg.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", url, err)
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
		return fmt.Errorf("%s: %w", url, errNotServed) // a node from before the endpoint
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	if err := decode(data); err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	return nil
}

// DecodeCounts decodes a CountsPath response for n tokens.
func DecodeCounts(data []byte, n int) (Totals, []Counts, error) {
	if len(data) != 16+8*n {
		return Totals{}, nil, fmt.Errorf("bayes counts: %d bytes for %d tokens", len(data), n)
	}
	tot := Totals{Spam: binary.BigEndian.Uint64(data), Ham: binary.BigEndian.Uint64(data[8:])}
	cs := make([]Counts, n)
	for i := range cs {
		p := data[16+8*i:]
		cs[i] = Counts{Spam: binary.BigEndian.Uint32(p), Ham: binary.BigEndian.Uint32(p[4:])}
	}
	return tot, cs, nil
}
