package cluster

import (
	"encoding/hex"
	"net/http"
	"strconv"

	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// AccountView is an account with its mailboxes, as the admin API shows it.
type AccountView struct {
	raftstore.Account
	Mailboxes []MailboxView `json:"mailboxes"`
}

// MailboxView is one mailbox in an AccountView.
type MailboxView struct {
	Name        string `json:"name"`
	SpecialUse  string `json:"special_use,omitempty"`
	Messages    uint32 `json:"messages"`
	Bytes       int64  `json:"bytes"`
	UIDValidity uint32 `json:"uid_validity"`
	UIDNext     uint32 `json:"uid_next"`
}

type accountRequest struct {
	Address  string `json:"address"`
	Password string `json:"password"`
	Quota    int64  `json:"quota"`
}

type aliasRequest struct {
	Address string `json:"address"`
	Target  string `json:"target"`
}

func (n *Node) adminRoutes(guarded func(string, http.HandlerFunc)) {
	guarded("GET /admin/domains", func(w http.ResponseWriter, r *http.Request) {
		var ds []string
		_ = n.store.View(func(tx *raftstore.ReadTx) error { ds = tx.Domains(); return nil })
		writeJSON(w, 200, ds)
	})
	guarded("POST /admin/domains", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Name string `json:"name"`
		}
		if decodeJSON(w, r, &req) {
			n.proposeJSON(w, r, &command.AddDomain{Name: req.Name})
		}
	})
	guarded("DELETE /admin/domains/{name}", func(w http.ResponseWriter, r *http.Request) {
		n.proposeJSON(w, r, &command.RemoveDomain{Name: r.PathValue("name")})
	})
	guarded("GET /admin/accounts", func(w http.ResponseWriter, r *http.Request) {
		var as []raftstore.Account
		err := n.store.View(func(tx *raftstore.ReadTx) (err error) { as, err = tx.Accounts(); return })
		if err != nil {
			n.writeFailure(w, err)
			return
		}
		writeJSON(w, 200, as)
	})
	guarded("GET /admin/accounts/{address}", func(w http.ResponseWriter, r *http.Request) {
		v, err := n.AccountView(r.PathValue("address"))
		if err != nil {
			n.writeFailure(w, err)
			return
		}
		writeJSON(w, 200, v)
	})
	guarded("POST /admin/accounts", func(w http.ResponseWriter, r *http.Request) {
		var req accountRequest
		if !decodeJSON(w, r, &req) {
			return
		}
		hash, err := raftstore.HashPassword(req.Password)
		if err != nil {
			n.writeFailure(w, err)
			return
		}
		n.proposeJSON(w, r, &command.AddAccount{Address: req.Address, PassHash: hash, Quota: req.Quota})
	})
	guarded("DELETE /admin/accounts/{address}", func(w http.ResponseWriter, r *http.Request) {
		n.proposeJSON(w, r, &command.RemoveAccount{Address: r.PathValue("address")})
	})
	guarded("PUT /admin/accounts/{address}/password", func(w http.ResponseWriter, r *http.Request) {
		var req accountRequest
		if !decodeJSON(w, r, &req) {
			return
		}
		hash, err := raftstore.HashPassword(req.Password)
		if err != nil {
			n.writeFailure(w, err)
			return
		}
		n.proposeJSON(w, r, &command.SetPassword{Address: r.PathValue("address"), PassHash: hash})
	})
	guarded("PUT /admin/accounts/{address}/quota", func(w http.ResponseWriter, r *http.Request) {
		var req accountRequest
		if decodeJSON(w, r, &req) {
			n.proposeJSON(w, r, &command.SetQuota{Address: r.PathValue("address"), Quota: req.Quota})
		}
	})
	guarded("GET /admin/aliases", func(w http.ResponseWriter, r *http.Request) {
		var out []aliasRequest
		_ = n.store.View(func(tx *raftstore.ReadTx) error {
			for _, a := range tx.Aliases() {
				out = append(out, aliasRequest{Address: a[0], Target: a[1]})
			}
			return nil
		})
		writeJSON(w, 200, out)
	})
	guarded("POST /admin/aliases", func(w http.ResponseWriter, r *http.Request) {
		var req aliasRequest
		if decodeJSON(w, r, &req) {
			n.proposeJSON(w, r, &command.AddAlias{Address: req.Address, Target: req.Target})
		}
	})
	guarded("DELETE /admin/aliases/{address}", func(w http.ResponseWriter, r *http.Request) {
		n.proposeJSON(w, r, &command.RemoveAlias{Address: r.PathValue("address")})
	})
	guarded("GET /admin/accounts/{address}/mailboxes/{mailbox}/messages", n.handleListMessages)
	guarded("GET /admin/accounts/{address}/mailboxes/{mailbox}/messages/{uid}", n.handleRawMessage)
	guarded("POST /admin/snapshot", func(w http.ResponseWriter, r *http.Request) {
		if err := n.store.Snapshot(); err != nil {
			n.writeFailure(w, err)
			return
		}
		writeJSON(w, 200, map[string]uint64{"applied_index": n.store.AppliedIndex()})
	})
}

// AccountView reads an account and its mailboxes from local state.
func (n *Node) AccountView(addr string) (AccountView, error) {
	var v AccountView
	err := n.store.View(func(tx *raftstore.ReadTx) error {
		a, err := tx.Account(addr)
		if err != nil {
			return err
		}
		v.Account = a
		mbs, err := tx.Mailboxes(a.Address)
		for _, m := range mbs {
			v.Mailboxes = append(v.Mailboxes, MailboxView{Name: m.Name, SpecialUse: m.SpecialUse, Messages: m.Messages,
				Bytes: m.Bytes, UIDValidity: m.UIDValidity, UIDNext: m.UIDNext})
		}
		return err
	})
	return v, err
}

// MessageView is one message in a mailbox listing.
type MessageView struct {
	UID          uint32   `json:"uid"`
	ModSeq       uint64   `json:"modseq"`
	Size         int64    `json:"size"`
	Flags        []string `json:"flags,omitempty"`
	InternalDate int64    `json:"internal_date"`
	// SHA256 is the content hash of the body (its blob ID).
	SHA256 string `json:"sha256"`
}

func (n *Node) handleListMessages(w http.ResponseWriter, r *http.Request) {
	var out []MessageView
	err := n.store.View(func(tx *raftstore.ReadTx) error {
		acct, err := tx.Account(r.PathValue("address"))
		if err != nil {
			return err
		}
		mb, err := tx.MailboxByName(acct.Address, r.PathValue("mailbox"))
		if err != nil {
			return err
		}
		out = make([]MessageView, 0, mb.Messages)
		return tx.Messages(mb.ID, nil, func(m *raftstore.Message) error {
			out = append(out, MessageView{UID: m.UID, ModSeq: m.ModSeq, Size: m.Size, Flags: m.Flags,
				InternalDate: m.InternalDate, SHA256: hex.EncodeToString(m.BlobID[:])})
			return nil
		})
	})
	if err != nil {
		n.writeFailure(w, err)
		return
	}
	writeJSON(w, 200, out)
}

// handleRawMessage returns one message's body as stored (message/rfc822).
func (n *Node) handleRawMessage(w http.ResponseWriter, r *http.Request) {
	uid, err := strconv.ParseUint(r.PathValue("uid"), 10, 32)
	if err != nil {
		writeErr(w, 400, "bad_request", "uid must be a number")
		return
	}
	var body []byte
	err = n.store.View(func(tx *raftstore.ReadTx) error {
		acct, err := tx.Account(r.PathValue("address"))
		if err != nil {
			return err
		}
		mb, err := tx.MailboxByName(acct.Address, r.PathValue("mailbox"))
		if err != nil {
			return err
		}
		m, err := tx.Message(mb.ID, uint32(uid))
		if err != nil {
			return err
		}
		body, err = tx.Body(m.BlobID)
		return err
	})
	if err != nil {
		n.writeFailure(w, err)
		return
	}
	w.Header().Set("Content-Type", "message/rfc822")
	_, _ = w.Write(body)
}
