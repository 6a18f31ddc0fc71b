package raftstore

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

// Bucket names of the FSM's bbolt file. Persistent: see docs/formats.md.
var (
	bMeta      = []byte("meta")       // fixed keys below
	bDomains   = []byte("domains")    // domain → domainRec
	bAccounts  = []byte("accounts")   // address → Account
	bAliases   = []byte("aliases")    // address or "@domain" → target address
	bMailboxes = []byte("mailboxes")  // id(8) → Mailbox
	bMboxNames = []byte("mboxnames")  // account 0x00 name → id(8)
	bMessages  = []byte("messages")   // mailbox id(8) uid(4) → Message
	bBlobs     = []byte("blobs")      // blob number(8) → zstd body (numbers ascend: appends, no random page writes)
	bBlobInfo  = []byte("blobinfo")   // sha256(32) → blobInfo
	bChunks    = []byte("blobchunks") // sha256(32) seq(4) → zstd piece of a large body
	bChunkAge  = []byte("chunk_age")  // time(8) sha256(32) seq(4) → empty (GC of unclaimed pieces)
	bDedupe    = []byte("dedupe")     // key → time(8) index(8) msgpack Result
	bDedupeAge = []byte("dedupe_age") // time(8) key → empty
	bNodes     = []byte("nodes")      // node id → Node
	bLeases    = []byte("leases")     // name → leaseRec
	bBayes     = []byte("bayes")      // token(8) → spam(4) ham(4) counts (apply_bayes.go)
	bBayesSeen = []byte("bayes_seen") // trained message id → class byte

	allBuckets = [][]byte{bMeta, bDomains, bAccounts, bAliases, bMailboxes, bMboxNames,
		bMessages, bBlobs, bBlobInfo, bChunks, bChunkAge, bDedupe, bDedupeAge, bNodes, bLeases, bBayes, bBayesSeen,
		bQueue, bQueueDue, bQueueStats, bDKIM}
)

// Keys in bMeta.
var (
	kAppliedIndex   = []byte("applied_index")
	kAppliedTerm    = []byte("applied_term")
	kFormat         = []byte("format")
	kNextMailboxID  = []byte("next_mailbox_id")
	kNextUIDValid   = []byte("next_uidvalidity")
	kNextBlobNum    = []byte("next_blob_num")
	kFormatVersion1 = u64(1)
)

type domainRec struct {
	Created int64 `msgpack:"created"`
}

type blobInfo struct {
	Refs  uint64 `msgpack:"refs"`
	Size  int64  `msgpack:"size"`  // raw size
	CSize int64  `msgpack:"csize"` // compressed size
	Meta  []byte `msgpack:"meta,omitempty"`
	// Chunks > 0: the compressed body is stored in bChunks pieces.
	Chunks uint32 `msgpack:"chunks,omitempty"`
	// Num is the key of an inline body in bBlobs. Bodies are keyed by an
	// ascending number rather than by their hash so that storing one
	// appends to the bucket instead of rewriting a random leaf full of
	// other bodies (measured: docs/storage.md).
	Num uint64 `msgpack:"num,omitempty"`
}

type leaseRec struct {
	Holder  string `msgpack:"holder"`
	Expires int64  `msgpack:"exp"`
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func msgKey(mbox uint64, uid uint32) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, mbox)
	binary.BigEndian.PutUint32(k[8:], uid)
	return k
}

func chunkKey(id [32]byte, seq uint32) []byte {
	k := make([]byte, 36)
	copy(k, id[:])
	binary.BigEndian.PutUint32(k[32:], seq)
	return k
}

func mboxNameKey(account, name string) []byte {
	return []byte(account + "\x00" + name)
}

func encode(v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		// Only our own plain structs are encoded here; failure is a bug.
		panic(fmt.Sprintf("raftstore: encode %T: %v", v, err))
	}
	return b
}

func decode(b []byte, v any) error {
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %T: %w", v, err)
	}
	return nil
}

// NormalizeAddress lower-cases an address and checks its basic shape
// (local@domain, no spaces or control characters).
func NormalizeAddress(addr string) (string, error) {
	a := strings.ToLower(strings.TrimSpace(addr))
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > 254 {
		return "", errf(ErrInvalid, "malformed address %q", addr)
	}
	for _, r := range a {
		if r <= ' ' || r == 0x7f || r == '<' || r == '>' || r == ',' {
			return "", errf(ErrInvalid, "malformed address %q", addr)
		}
	}
	return a, nil
}

// NormalizeDomain lower-cases a domain and checks its shape.
func NormalizeDomain(d string) (string, error) {
	d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
	if d == "" || len(d) > 253 || strings.ContainsAny(d, "@ \t\r\n/") {
		return "", errf(ErrInvalid, "malformed domain %q", d)
	}
	return d, nil
}

// NormalizeMailboxName canonicalises INBOX (case-insensitive per RFC 3501
// §5.1) and validates a mailbox name.
func NormalizeMailboxName(name string) (string, error) {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX", nil
	}
	if len(name) >= 6 && strings.EqualFold(name[:6], "INBOX/") {
		name = "INBOX/" + name[6:]
	}
	if name == "" || len(name) > 512 || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") || strings.Contains(name, "//") {
		return "", errf(ErrInvalid, "invalid mailbox name %q", name)
	}
	for _, r := range name {
		if r < ' ' || r == 0x7f || r == '*' || r == '%' {
			return "", errf(ErrInvalid, "invalid mailbox name %q", name)
		}
	}
	return name, nil
}

// system flags are stored in canonical case.
var systemFlags = []string{`\Answered`, `\Flagged`, `\Deleted`, `\Seen`, `\Draft`}

func canonicalFlag(f string) string {
	for _, s := range systemFlags {
		if strings.EqualFold(s, f) {
			return s
		}
	}
	return f
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// normFlags canonicalises, deduplicates and sorts flags, so stored flag
// lists are identical on every node.
func normFlags(in []string) []string {
	var out []string
	for _, f := range in {
		f = canonicalFlag(f)
		if f == "" || f == `\Recent` || hasFlag(out, f) {
			continue
		}
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}
