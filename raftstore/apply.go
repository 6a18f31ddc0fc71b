package raftstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/raftmail/raftmail/raftstore/command"
)

// txn is the context of one command's apply: the batch's bbolt transaction,
// the entry's index (used as MODSEQ) and the command's time. All bbolt
// writes of the store happen through it. Nothing here reads the clock,
// randomness or a Go map's order (DESIGN.md invariant 3).
type txn struct {
	tx      *bolt.Tx
	index   uint64
	time    int64
	changes []Change
}

func (t *txn) b(name []byte) *bolt.Bucket { return t.tx.Bucket(name) }

// put writes a value; a bbolt write error is a storage failure that must
// stop the node (see fsm.fatalf), so it panics and ApplyBatch recovers it.
func (t *txn) put(bucket, k, v []byte) {
	if err := t.b(bucket).Put(k, v); err != nil {
		panic(storageError{fmt.Errorf("put %s: %w", bucket, err)})
	}
}

func (t *txn) del(bucket, k []byte) {
	if err := t.b(bucket).Delete(k); err != nil {
		panic(storageError{fmt.Errorf("delete %s: %w", bucket, err)})
	}
}

type storageError struct{ err error }

// apply dispatches one decoded command.
func (t *txn) apply(c *command.Command) Result {
	switch p := c.Payload.(type) {
	case *command.Deliver:
		return t.deliver(p)
	case *command.Append:
		return t.appendMsg(p)
	case *command.SetFlags:
		return t.setFlags(p)
	case *command.Expunge:
		return t.expunge(p)
	case *command.Copy:
		return t.copyMsgs(p)
	case *command.CreateMailbox:
		return t.createMailboxCmd(p)
	case *command.DeleteMailbox:
		return t.deleteMailboxCmd(p)
	case *command.RenameMailbox:
		return t.renameMailbox(p)
	case *command.Subscribe:
		return t.subscribe(p)
	case *command.AddDomain:
		return t.addDomain(p)
	case *command.RemoveDomain:
		return t.removeDomain(p)
	case *command.AddAccount:
		return t.addAccount(p)
	case *command.RemoveAccount:
		return t.removeAccount(p)
	case *command.SetPassword:
		return t.setPassword(p)
	case *command.SetQuota:
		return t.setQuota(p)
	case *command.AddAlias:
		return t.addAlias(p)
	case *command.RemoveAlias:
		return t.removeAlias(p)
	case *command.SetNode:
		return t.setNode(p)
	case *command.Lease:
		return t.lease(p)
	case *command.BlobChunk:
		return t.blobChunk(p)
	case *command.BayesTrain:
		return t.bayesTrain(p)
	case *command.BayesReset:
		return t.bayesReset()
	case *command.QueueAdd:
		return t.queueAdd(p)
	case *command.QueueAttempt:
		return t.queueAttempt(p)
	case *command.QueueResult:
		return t.queueResult(p)
	case *command.QueueAdmin:
		return t.queueAdmin(p)
	case *command.QueueDSN:
		return t.queueDSN(p)
	case *command.SetDKIMKey:
		return t.setDKIMKey(p)
	case *command.Noop, command.Unknown:
		return Result{}
	}
	panic(storageError{fmt.Errorf("no handler for %T", c.Payload)})
}

func fail(err error) Result { return Result{Status: statusOf(err)} }

// ---- accounts and directory ----

func (t *txn) account(addr string) (Account, bool) {
	v := t.b(bAccounts).Get([]byte(addr))
	if v == nil {
		return Account{}, false
	}
	var a Account
	if err := decode(v, &a); err != nil {
		panic(storageError{err})
	}
	return a, true
}

func (t *txn) putAccount(a Account) {
	t.put(bAccounts, []byte(a.Address), encode(a))
}

// resolve maps a recipient address to an account: exact account, alias,
// the address without its +tag, then the domain's catch-all.
func resolve(tx *bolt.Tx, rcpt string) (string, error) {
	addr, err := NormalizeAddress(rcpt)
	if err != nil {
		return "", err
	}
	at := strings.LastIndexByte(addr, '@')
	local, domain := addr[:at], addr[at+1:]
	if tx.Bucket(bDomains).Get([]byte(domain)) == nil {
		return "", errf(ErrNoSuchDomain, "%s is not a local domain", domain)
	}
	try := func(a string) (string, bool) {
		if tx.Bucket(bAccounts).Get([]byte(a)) != nil {
			return a, true
		}
		if target := tx.Bucket(bAliases).Get([]byte(a)); target != nil {
			if tx.Bucket(bAccounts).Get(target) != nil {
				return string(target), true
			}
		}
		return "", false
	}
	if a, ok := try(addr); ok {
		return a, nil
	}
	if plus := strings.IndexByte(local, '+'); plus > 0 {
		if a, ok := try(local[:plus] + "@" + domain); ok {
			return a, nil
		}
	}
	if target := tx.Bucket(bAliases).Get([]byte("@" + domain)); target != nil && tx.Bucket(bAccounts).Get(target) != nil {
		return string(target), nil
	}
	return "", errf(ErrNoSuchUser, "no mailbox for %s", addr)
}

func (t *txn) addDomain(p *command.AddDomain) Result {
	d, err := NormalizeDomain(p.Name)
	if err != nil {
		return fail(err)
	}
	if t.b(bDomains).Get([]byte(d)) == nil {
		t.put(bDomains, []byte(d), encode(domainRec{Created: t.time}))
	}
	return Result{}
}

func (t *txn) removeDomain(p *command.RemoveDomain) Result {
	d, err := NormalizeDomain(p.Name)
	if err != nil {
		return fail(err)
	}
	if t.b(bDomains).Get([]byte(d)) == nil {
		return fail(errf(ErrNoSuchDomain, "%s", d))
	}
	suffix := []byte("@" + d)
	for _, bk := range [][]byte{bAccounts, bAliases} {
		c := t.b(bk).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if bytes.HasSuffix(k, suffix) {
				return fail(errf(ErrDomainInUse, "%s still has %s", d, k))
			}
		}
	}
	t.del(bDomains, []byte(d))
	return Result{}
}

func (t *txn) addAccount(p *command.AddAccount) Result {
	addr, err := NormalizeAddress(p.Address)
	if err != nil {
		return fail(err)
	}
	if p.PassHash == "" || p.Quota < 0 {
		return fail(errf(ErrInvalid, "account needs a password hash and a quota ≥ 0"))
	}
	if t.b(bDomains).Get([]byte(addr[strings.LastIndexByte(addr, '@')+1:])) == nil {
		return fail(errf(ErrNoSuchDomain, "domain of %s is not local", addr))
	}
	if _, ok := t.account(addr); ok {
		return fail(errf(ErrAccountExists, "%s", addr))
	}
	if t.b(bAliases).Get([]byte(addr)) != nil {
		return fail(errf(ErrAliasExists, "%s is an alias", addr))
	}
	t.putAccount(Account{Address: addr, PassHash: p.PassHash, Quota: p.Quota, Created: t.time, PassSeq: t.index})
	for _, m := range DefaultMailboxes {
		t.createMailbox(addr, m.Name, m.SpecialUse, true)
	}
	t.changes = append(t.changes, AccountChanged{Address: addr})
	return Result{}
}

func (t *txn) removeAccount(p *command.RemoveAccount) Result {
	addr, err := NormalizeAddress(p.Address)
	if err != nil {
		return fail(err)
	}
	if _, ok := t.account(addr); !ok {
		return fail(errf(ErrNoSuchUser, "%s", addr))
	}
	for _, mb := range t.mailboxesOf(addr) {
		t.dropMailbox(mb)
	}
	c := t.b(bAliases).Cursor()
	var drop [][]byte
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if string(v) == addr {
			drop = append(drop, bytes.Clone(k))
		}
	}
	for _, k := range drop {
		t.del(bAliases, k)
	}
	t.del(bLeases, []byte("pop3:"+addr))
	t.del(bAccounts, []byte(addr))
	t.changes = append(t.changes, AccountChanged{Address: addr, Removed: true})
	return Result{}
}

func (t *txn) setPassword(p *command.SetPassword) Result {
	addr, err := NormalizeAddress(p.Address)
	if err != nil {
		return fail(err)
	}
	a, ok := t.account(addr)
	if !ok {
		return fail(errf(ErrNoSuchUser, "%s", addr))
	}
	if p.PassHash == "" {
		return fail(errf(ErrInvalid, "empty password hash"))
	}
	a.PassHash, a.PassSeq = p.PassHash, t.index
	t.putAccount(a)
	t.changes = append(t.changes, AccountChanged{Address: addr})
	return Result{}
}

func (t *txn) setQuota(p *command.SetQuota) Result {
	addr, err := NormalizeAddress(p.Address)
	if err != nil {
		return fail(err)
	}
	a, ok := t.account(addr)
	if !ok {
		return fail(errf(ErrNoSuchUser, "%s", addr))
	}
	if p.Quota < 0 {
		return fail(errf(ErrInvalid, "negative quota"))
	}
	a.Quota = p.Quota
	t.putAccount(a)
	t.changes = append(t.changes, AccountChanged{Address: addr})
	return Result{}
}

func (t *txn) addAlias(p *command.AddAlias) Result {
	var key string
	if strings.HasPrefix(p.Address, "@") {
		d, err := NormalizeDomain(p.Address[1:])
		if err != nil {
			return fail(err)
		}
		key = "@" + d
	} else {
		a, err := NormalizeAddress(p.Address)
		if err != nil {
			return fail(err)
		}
		key = a
	}
	target, err := NormalizeAddress(p.Target)
	if err != nil {
		return fail(err)
	}
	if t.b(bDomains).Get([]byte(key[strings.LastIndexByte(key, '@')+1:])) == nil {
		return fail(errf(ErrNoSuchDomain, "domain of %s is not local", key))
	}
	if _, ok := t.account(target); !ok {
		return fail(errf(ErrNoSuchUser, "alias target %s", target))
	}
	if _, ok := t.account(key); ok {
		return fail(errf(ErrAliasExists, "%s is an account", key))
	}
	t.put(bAliases, []byte(key), []byte(target))
	return Result{}
}

func (t *txn) removeAlias(p *command.RemoveAlias) Result {
	key := strings.ToLower(strings.TrimSpace(p.Address))
	if t.b(bAliases).Get([]byte(key)) == nil {
		return fail(errf(ErrNoSuchUser, "no alias %s", key))
	}
	t.del(bAliases, []byte(key))
	return Result{}
}

func (t *txn) setNode(p *command.SetNode) Result {
	if p.ID == "" {
		return fail(errf(ErrInvalid, "empty node id"))
	}
	if p.Remove {
		t.del(bNodes, []byte(p.ID))
		return Result{}
	}
	t.put(bNodes, []byte(p.ID), encode(Node{ID: p.ID, RaftAddr: p.RaftAddr, APIAddr: p.APIAddr}))
	return Result{}
}

// lease takes, renews or releases a named lease; expiry is judged against
// the command's time, so every node decides alike.
func (t *txn) lease(p *command.Lease) Result {
	if p.Name == "" || p.Holder == "" {
		return fail(errf(ErrInvalid, "lease needs a name and a holder"))
	}
	var cur leaseRec
	if v := t.b(bLeases).Get([]byte(p.Name)); v != nil {
		if err := decode(v, &cur); err != nil {
			panic(storageError{err})
		}
	}
	held := cur.Holder != "" && cur.Holder != p.Holder && cur.Expires > t.time
	switch p.Op {
	case command.LeaseAcquire:
		if held {
			return fail(errf(ErrLeaseHeld, "%s is in use", p.Name))
		}
		if p.TTL <= 0 {
			return fail(errf(ErrInvalid, "lease TTL must be positive"))
		}
		t.put(bLeases, []byte(p.Name), encode(leaseRec{Holder: p.Holder, Expires: t.time + p.TTL}))
	case command.LeaseRelease:
		if cur.Holder == p.Holder {
			t.del(bLeases, []byte(p.Name))
		}
	default:
		return fail(errf(ErrInvalid, "unknown lease op %d", p.Op))
	}
	return Result{}
}

// ---- dedupe ----

const dedupeTTL = int64(24 * 3600 * 1e9)

// remembered returns the stored result of an earlier command with this key.
func (t *txn) remembered(key string) (Result, bool) {
	v := t.b(bDedupe).Get([]byte(key))
	if len(v) < 16 {
		return Result{}, false
	}
	var r Result
	if err := decode(v[16:], &r); err != nil {
		panic(storageError{err})
	}
	r.Index = binary.BigEndian.Uint64(v[8:16])
	r.Duplicate = true
	return r, true
}

// remember stores a keyed command's result: time(8) index(8) msgpack.
func (t *txn) remember(key string, r Result) {
	ts := u64(uint64(t.time))
	v := append(append(ts, u64(t.index)...), encode(r)...)
	t.put(bDedupe, []byte(key), v)
	t.put(bDedupeAge, append(ts, key...), nil)
}

// pruneDedupe forgets keys older than 24 h (by command time), a bounded
// number per command so no single apply grows unbounded.
func (t *txn) pruneDedupe() {
	cutoff := t.time - dedupeTTL
	if cutoff <= 0 {
		return
	}
	for _, k := range t.expired(bDedupeAge, cutoff) {
		t.del(bDedupeAge, k)
		t.del(bDedupe, k[8:])
	}
}

// pruneBatch bounds the entries one command removes from an age bucket.
const pruneBatch = 64

// expired returns copies of the oldest keys of an age bucket (keys that
// start with a big-endian time(8)) whose time is before cutoff, at most
// pruneBatch of them, so that a command may delete them.
func (t *txn) expired(bucket []byte, cutoff int64) [][]byte {
	c := t.b(bucket).Cursor()
	var out [][]byte
	for k, _ := c.First(); k != nil && len(out) < pruneBatch; k, _ = c.Next() {
		if int64(binary.BigEndian.Uint64(k[:8])) >= cutoff {
			break
		}
		out = append(out, bytes.Clone(k))
	}
	return out
}
