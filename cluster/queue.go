package cluster

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// queueRoutes serves the outbound queue and DKIM keys (docs/api.md):
// reads from local state, actions proposed through the leader, where the
// delivery service picks them up.
func (n *Node) queueRoutes(guarded func(string, http.HandlerFunc)) {
	guarded("GET /queue", n.handleQueueList)
	guarded("GET /queue/stats", n.handleQueueStats)
	guarded("GET /queue/{id}", n.handleQueueShow)
	guarded("POST /queue/{id}/retry", n.queueAction(command.QueueRetry))
	guarded("POST /queue/{id}/bounce", n.queueAction(command.QueueBounce))
	guarded("DELETE /queue/{id}", n.queueAction(command.QueueDelete))
	guarded("GET /admin/dkim", n.handleDKIMList)
	guarded("POST /admin/dkim", n.handleDKIMGenerate)
	guarded("DELETE /admin/dkim/{domain}", func(w http.ResponseWriter, r *http.Request) {
		n.proposeJSON(w, r, &command.SetDKIMKey{Domain: r.PathValue("domain"), Remove: true})
	})
}

// QueueSummary is one line of the queue listing.
type QueueSummary struct {
	ID          uint64 `json:"id"`
	From        string `json:"from"`
	Size        int64  `json:"size"`
	Created     int64  `json:"created"`
	Pending     int    `json:"pending"`
	Recipients  int    `json:"recipients"`
	Attempts    uint32 `json:"attempts"`
	NextAttempt int64  `json:"next_attempt,omitempty"`
	LastReply   string `json:"last_reply,omitempty"`
}

func (n *Node) handleQueueList(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if limit <= 0 {
		limit = 1000
	}
	out := []QueueSummary{}
	err := n.store.View(func(tx *raftstore.ReadTx) error {
		return tx.QueueEntries(func(e *raftstore.QueueEntry) bool {
			s := QueueSummary{ID: e.ID, From: e.From, Size: e.Size, Created: e.Created, Recipients: len(e.Rcpts), Attempts: e.Attempts}
			for _, rc := range e.Rcpts {
				if rc.Final() {
					continue
				}
				s.Pending++
				if s.NextAttempt == 0 || rc.NextAttempt < s.NextAttempt {
					s.NextAttempt = rc.NextAttempt
				}
				if rc.LastReply != "" {
					s.LastReply = rc.LastReply
				}
			}
			out = append(out, s)
			return len(out) < limit
		})
	})
	if err != nil {
		n.writeFailure(w, err)
		return
	}
	writeJSON(w, 200, out)
}

func (n *Node) handleQueueStats(w http.ResponseWriter, r *http.Request) {
	var st raftstore.QueueStats
	err := n.store.View(func(tx *raftstore.ReadTx) (err error) { st, err = tx.QueueStats(); return })
	if err != nil {
		n.writeFailure(w, err)
		return
	}
	var oldest float64
	if st.Oldest != 0 {
		oldest = time.Since(time.Unix(0, st.Oldest)).Seconds()
	}
	writeJSON(w, 200, map[string]any{"messages": st.Messages, "recipients_pending": st.Recipients,
		"oldest_age_seconds": oldest, "counters": st.Counters})
}

func queueID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		if r.PathValue("id") == "all" {
			return 0, true
		}
		writeErr(w, 400, "bad_request", "queue id must be a number")
		return 0, false
	}
	return id, true
}

func (n *Node) handleQueueShow(w http.ResponseWriter, r *http.Request) {
	id, ok := queueID(w, r)
	if !ok {
		return
	}
	var e raftstore.QueueEntry
	err := n.store.View(func(tx *raftstore.ReadTx) (err error) { e, err = tx.QueueEntry(id); return })
	if err != nil {
		n.writeFailure(w, err)
		return
	}
	writeJSON(w, 200, e)
}

// queueAction proposes an operator action; "all" retries every message.
func (n *Node) queueAction(op command.QueueAdminOp) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := queueID(w, r)
		if !ok {
			return
		}
		if id == 0 && op != command.QueueRetry {
			writeErr(w, 400, "bad_request", "only retry applies to all messages")
			return
		}
		n.proposeJSON(w, r, &command.QueueAdmin{ID: id, Op: op, Now: time.Now().UnixNano(), Reason: r.URL.Query().Get("reason")})
	}
}

// DKIMView is a domain's key as the API shows it: never the private key.
type DKIMView struct {
	Domain   string `json:"domain"`
	Selector string `json:"selector"`
	Algo     string `json:"algo"`
	Created  int64  `json:"created"`
	// Record is the TXT record to publish at Name (RFC 6376 §3.6.1).
	Name   string `json:"name"`
	Record string `json:"record"`
}

func (n *Node) handleDKIMList(w http.ResponseWriter, r *http.Request) {
	var keys []raftstore.DKIMKey
	err := n.store.View(func(tx *raftstore.ReadTx) (err error) { keys, err = tx.DKIMKeys(); return })
	if err != nil {
		n.writeFailure(w, err)
		return
	}
	out := []DKIMView{}
	for _, k := range keys {
		v, err := dkimView(k)
		if err != nil {
			n.writeFailure(w, err)
			return
		}
		out = append(out, v)
	}
	writeJSON(w, 200, out)
}

// handleDKIMGenerate makes a key on this node (the proposer decides what
// is random), stores it in the replicated state and answers the record.
func (n *Node) handleDKIMGenerate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Domain   string `json:"domain"`
		Selector string `json:"selector"`
		Algo     string `json:"algo"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Selector == "" {
		req.Selector = "raftmail" + time.Now().UTC().Format("200601")
	}
	if req.Algo == "" {
		req.Algo = "ed25519"
	}
	der, err := GenerateDKIMKey(req.Algo)
	if err != nil {
		writeErr(w, 400, "bad_request", err.Error())
		return
	}
	ctx, cancel := n.reqContext(r)
	defer cancel()
	cmd := &command.SetDKIMKey{Domain: req.Domain, Selector: req.Selector, Algo: req.Algo, Key: der}
	res, err := n.Propose(ctx, &command.Command{Payload: cmd})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		n.writeFailure(w, err)
		return
	}
	var k raftstore.DKIMKey
	if err := n.store.View(func(tx *raftstore.ReadTx) (err error) { k, err = tx.DKIMKey(req.Domain); return }); err != nil {
		n.writeFailure(w, err)
		return
	}
	v, err := dkimView(k)
	if err != nil {
		n.writeFailure(w, err)
		return
	}
	writeJSON(w, 200, v)
}

// GenerateDKIMKey makes an Ed25519 (RFC 8463) or RSA-2048 key and returns
// it as PKCS #8 DER.
func GenerateDKIMKey(algo string) ([]byte, error) {
	switch algo {
	case "ed25519":
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		return x509.MarshalPKCS8PrivateKey(priv)
	case "rsa":
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		return x509.MarshalPKCS8PrivateKey(priv)
	}
	return nil, fmt.Errorf("unknown DKIM algorithm %q (want ed25519 or rsa)", algo)
}

// dkimView derives the public record: k=ed25519 carries the raw 32-byte
// key (RFC 8463 §4.2), k=rsa the DER SubjectPublicKeyInfo (RFC 6376
// §3.6.1).
func dkimView(k raftstore.DKIMKey) (DKIMView, error) {
	key, err := x509.ParsePKCS8PrivateKey(k.Key)
	if err != nil {
		return DKIMView{}, fmt.Errorf("dkim key of %s: %w", k.Domain, err)
	}
	var pub []byte
	switch priv := key.(type) {
	case ed25519.PrivateKey:
		pub = priv.Public().(ed25519.PublicKey)
	case *rsa.PrivateKey:
		if pub, err = x509.MarshalPKIXPublicKey(&priv.PublicKey); err != nil {
			return DKIMView{}, err
		}
	default:
		return DKIMView{}, fmt.Errorf("dkim key of %s: unsupported %T", k.Domain, key)
	}
	return DKIMView{Domain: k.Domain, Selector: k.Selector, Algo: k.Algo, Created: k.Created,
		Name:   k.Selector + "._domainkey." + k.Domain,
		Record: fmt.Sprintf("v=DKIM1; k=%s; p=%s", k.Algo, base64.StdEncoding.EncodeToString(pub))}, nil
}
