package cluster

import (
	"encoding/binary"
	"net/http"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/raftmail/raftmail/filters/bayes"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// maxBayesTokens bounds one counts request (filters/bayes.MaxBatch).
const maxBayesTokens = 8192

// BayesStats is the answer of GET /admin/bayes.
type BayesStats struct {
	Totals raftstore.BayesTotals `json:"totals"`
	Tokens int                   `json:"tokens"`
	Seen   int                   `json:"remembered_messages"`
}

// bayesRoutes registers the Bayes endpoints (docs/filters.md):
//
//	POST /internal/bayes/counts  tokens (8-byte BE each) → totals + counts, from this node's replica
//	GET  /internal/bayes/filter  a Bloom filter of every token the model holds (bayes.Filter)
//	GET  /admin/bayes            model statistics
//	POST /admin/bayes/train      a msgpack command.BayesTrain, proposed through the leader
//	POST /admin/bayes/reset      clear the model
func (n *Node) bayesRoutes(guarded func(string, http.HandlerFunc)) {
	guarded("POST /internal/bayes/counts", n.handleBayesCounts)
	guarded("GET "+bayes.FilterPath, n.handleBayesFilter)
	guarded("GET /admin/bayes", func(w http.ResponseWriter, r *http.Request) {
		var st BayesStats
		_ = n.store.View(func(tx *raftstore.ReadTx) error {
			st.Totals, st.Tokens, st.Seen = tx.BayesStats()
			return nil
		})
		writeJSON(w, 200, st)
	})
	guarded("POST /admin/bayes/train", func(w http.ResponseWriter, r *http.Request) {
		b, ok := readBody(w, r, 4<<20)
		if !ok {
			return
		}
		var p command.BayesTrain
		if err := msgpack.Unmarshal(b, &p); err != nil {
			writeErr(w, http.StatusBadRequest, "bad_request", "malformed BayesTrain: "+err.Error())
			return
		}
		n.proposeJSON(w, r, &p)
	})
	guarded("POST /admin/bayes/reset", func(w http.ResponseWriter, r *http.Request) {
		n.proposeJSON(w, r, &command.BayesReset{})
	})
}

func (n *Node) handleBayesCounts(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r, 8*maxBayesTokens)
	if !ok {
		return
	}
	if len(b)%8 != 0 {
		writeErr(w, http.StatusBadRequest, "bad_request", "body is not a list of 8-byte tokens")
		return
	}
	toks := make([]uint64, len(b)/8)
	for i := range toks {
		toks[i] = binary.BigEndian.Uint64(b[8*i:])
	}
	var tot raftstore.BayesTotals
	var cs []raftstore.BayesCount
	_ = n.store.View(func(tx *raftstore.ReadTx) error { tot, cs = tx.BayesCounts(toks); return nil })
	out := make([]byte, 0, 16+8*len(cs))
	out = binary.BigEndian.AppendUint64(out, tot.Spam)
	out = binary.BigEndian.AppendUint64(out, tot.Ham)
	for _, c := range cs {
		out = binary.BigEndian.AppendUint32(out, c.Spam)
		out = binary.BigEndian.AppendUint32(out, c.Ham)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(out)
}

// bayesFilterMaxAge is how long a built filter is served while the state
// moves on: building walks every token, and frontends ask about once a
// minute each.
const bayesFilterMaxAge = 5 * time.Second

// bayesFilterCache holds the last encoded filter and when it was built.
type bayesFilterCache struct {
	mu    sync.Mutex
	data  []byte
	index uint64
	built time.Time
}

func (n *Node) handleBayesFilter(w http.ResponseWriter, r *http.Request) {
	c := &n.bayesFilter
	c.mu.Lock()
	if c.data == nil || (c.index != n.store.AppliedIndex() && time.Since(c.built) > bayesFilterMaxAge) {
		var toks []uint64
		idx := n.store.AppliedIndex()
		_ = n.store.View(func(tx *raftstore.ReadTx) error { toks = tx.BayesTokens(); return nil })
		f := bayes.NewFilter(len(toks))
		for _, t := range toks {
			f.Add(bayes.Token(t))
		}
		c.data, _ = f.MarshalBinary()
		c.index, c.built = idx, time.Now()
	}
	data := c.data
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(data)
}
