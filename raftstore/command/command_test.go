package command

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current encoding")

// fixedTime is the command time of every fixture: 2024-01-02T03:04:05Z.
var fixedTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()

func blobID(b byte) [32]byte {
	var id [32]byte
	for i := range id {
		id[i] = b + byte(i)
	}
	return id
}

// fixtures holds one command per type with every field set to a
// non-zero value, so that a renumbered type or a renamed msgpack tag
// changes the golden encoding. name is the golden file's base name.
var fixtures = []struct {
	name string
	typ  Type
	cmd  *Command
}{
	{"deliver", TypeDeliver, &Command{Time: fixedTime, Key: "k-deliver", Payload: &Deliver{
		From: "a@example.org", Rcpts: []string{"b@example.org", "c+tag@example.org"},
		Blob: Blob{ID: blobID(1), Size: 1234, Data: []byte{0x28, 0xb5, 0x2f, 0xfd, 1, 2}, Chunks: 0, Meta: []byte("meta")},
		Junk: true, Flags: []string{`\Seen`, "$Label1"}, InternalDate: fixedTime - 1}}},
	{"deliver_chunked", TypeDeliver, &Command{Time: fixedTime, Key: "k-deliver-chunked", Payload: &Deliver{
		From: "a@example.org", Rcpts: []string{"b@example.org"},
		Blob: Blob{ID: blobID(2), Size: 99999, Chunks: 3}}}},
	{"append", TypeAppend, &Command{Time: fixedTime, Key: "k-append", Payload: &Append{
		Account: "b@example.org", MailboxID: 7, Blob: Blob{ID: blobID(3), Size: 10, Data: []byte("zz")},
		Flags: []string{`\Draft`}, InternalDate: 42}}},
	{"set_flags", TypeSetFlags, &Command{Time: fixedTime, Key: "k-flags", Payload: &SetFlags{
		Account: "b@example.org", MailboxID: 7, UIDs: []UIDRange{{1, 3}, {5, 0}}, Op: FlagsAdd,
		Flags: []string{`\Deleted`}, UnchangedSince: 99, Origin: "imap-1"}}},
	{"expunge", TypeExpunge, &Command{Time: fixedTime, Key: "k-expunge", Payload: &Expunge{
		Account: "b@example.org", MailboxID: 7, UIDs: []UIDRange{{2, 2}}, OnlyDeleted: true}}},
	{"copy", TypeCopy, &Command{Time: fixedTime, Key: "k-copy", Payload: &Copy{
		Account: "b@example.org", SrcID: 7, UIDs: []UIDRange{{1, 0}}, DstID: 8, Move: true,
		AddFlags: []string{`\Seen`}, DelFlags: []string{`\Deleted`}}}},
	{"create_mailbox", TypeCreateMailbox, &Command{Time: fixedTime, Key: "k-create", Payload: &CreateMailbox{
		Account: "b@example.org", Name: "Lists/go", SpecialUse: `\Archive`}}},
	{"delete_mailbox", TypeDeleteMailbox, &Command{Time: fixedTime, Key: "k-delete", Payload: &DeleteMailbox{
		Account: "b@example.org", Name: "Lists/go"}}},
	{"rename_mailbox", TypeRenameMailbox, &Command{Time: fixedTime, Key: "k-rename", Payload: &RenameMailbox{
		Account: "b@example.org", Name: "Lists", NewName: "Groups"}}},
	{"subscribe", TypeSubscribe, &Command{Time: fixedTime, Key: "k-sub", Payload: &Subscribe{
		Account: "b@example.org", Name: "Groups", Subscribed: true}}},
	{"add_domain", TypeAddDomain, &Command{Time: fixedTime, Key: "k-adddom", Payload: &AddDomain{Name: "example.org"}}},
	{"remove_domain", TypeRemoveDomain, &Command{Time: fixedTime, Key: "k-rmdom", Payload: &RemoveDomain{Name: "example.org"}}},
	{"add_account", TypeAddAccount, &Command{Time: fixedTime, Key: "k-addacct", Payload: &AddAccount{
		Address: "b@example.org", PassHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", Quota: 1 << 30}}},
	{"remove_account", TypeRemoveAccount, &Command{Time: fixedTime, Key: "k-rmacct", Payload: &RemoveAccount{Address: "b@example.org"}}},
	{"set_password", TypeSetPassword, &Command{Time: fixedTime, Key: "k-pw", Payload: &SetPassword{
		Address: "b@example.org", PassHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$bmV3"}}},
	{"set_quota", TypeSetQuota, &Command{Time: fixedTime, Key: "k-quota", Payload: &SetQuota{Address: "b@example.org", Quota: 5 << 20}}},
	{"add_alias", TypeAddAlias, &Command{Time: fixedTime, Key: "k-alias", Payload: &AddAlias{Address: "@example.org", Target: "b@example.org"}}},
	{"remove_alias", TypeRemoveAlias, &Command{Time: fixedTime, Key: "k-rmalias", Payload: &RemoveAlias{Address: "@example.org"}}},
	{"set_node", TypeSetNode, &Command{Time: fixedTime, Key: "k-node", Payload: &SetNode{
		ID: "n1", RaftAddr: "10.0.0.1:7000", APIAddr: "http://10.0.0.1:8080", Remove: true}}},
	{"lease", TypeLease, &Command{Time: fixedTime, Key: "k-lease", Payload: &Lease{
		Name: "pop3:b@example.org", Holder: "n1/42", Op: LeaseRelease, TTL: int64(time.Minute)}}},
	{"noop", TypeNoop, &Command{Time: fixedTime, Key: "", Payload: &Noop{}}},
	{"blob_chunk", TypeBlobChunk, &Command{Time: fixedTime, Key: "k-chunk", Payload: &BlobChunk{
		ID: blobID(2), Seq: 2, Data: []byte{9, 8, 7}}}},
	{"bayes_train", TypeBayesTrain, &Command{Time: fixedTime, Key: "k-bayes", Payload: &BayesTrain{
		Spam: true, Untrain: true, Msgs: []BayesMsg{{ID: []byte{1, 2, 3}, Tokens: []uint64{1, 0xfedcba9876543210}}}}}},
	{"bayes_reset", TypeBayesReset, &Command{Time: fixedTime, Key: "k-bayes-reset", Payload: &BayesReset{}}},
	{"queue_add", TypeQueueAdd, &Command{Time: fixedTime, Key: "k-qadd", Payload: &QueueAdd{
		From: "a@example.org", Rcpts: []QueueRcpt{{Addr: "x@remote.test", Notify: []string{"SUCCESS", "FAILURE"}, ORcpt: "rfc822;x@remote.test"}},
		Local: []string{"b@example.org"}, Blob: Blob{ID: blobID(4), Size: 20, Data: []byte("q")},
		Ret: "HDRS", EnvID: "env-1", Account: "a@example.org"}}},
	{"queue_attempt", TypeQueueAttempt, &Command{Time: fixedTime, Key: "k-qattempt", Payload: &QueueAttempt{
		Items: []QueueItem{{ID: 7, Domain: "remote.test"}}, Holder: "n1/ab", Attempt: "n1/ab/3",
		Now: fixedTime, Until: fixedTime + int64(time.Minute), Takeover: true}}},
	{"queue_result", TypeQueueResult, &Command{Time: fixedTime, Key: "k-qresult", Payload: &QueueResult{
		ID: 7, Attempt: "n1/ab/3", Now: fixedTime, NextAttempt: fixedTime + int64(time.Hour),
		Rcpts: []QueueRcptResult{{Addr: "x@remote.test", Outcome: OutcomeTempFail, Code: 451, Status: "4.3.0",
			Reply: "try later", MTA: "mx.remote.test", Relayed: true}}}}},
	{"queue_admin", TypeQueueAdmin, &Command{Time: fixedTime, Key: "k-qadmin", Payload: &QueueAdmin{
		ID: 7, Op: QueueBounce, Now: fixedTime, Reason: "operator"}}},
	{"queue_dsn", TypeQueueDSN, &Command{Time: fixedTime, Key: "k-qdsn", Payload: &QueueDSN{
		ID: 7, Rcpts: []string{"x@remote.test"}, Blob: Blob{ID: blobID(5), Size: 30, Data: []byte("d")}}}},
	{"set_dkim_key", TypeSetDKIMKey, &Command{Time: fixedTime, Key: "k-dkim", Payload: &SetDKIMKey{
		Domain: "example.org", Selector: "s1", Algo: "ed25519", Key: []byte{1, 2, 3}, Remove: true}}},
}

// TestTypeNumbers pins the type numbers: they are part of the log format.
func TestTypeNumbers(t *testing.T) {
	want := map[Type]uint8{TypeDeliver: 1, TypeAppend: 2, TypeSetFlags: 3, TypeExpunge: 4, TypeCopy: 5,
		TypeCreateMailbox: 6, TypeDeleteMailbox: 7, TypeRenameMailbox: 8, TypeSubscribe: 9, TypeAddDomain: 10,
		TypeRemoveDomain: 11, TypeAddAccount: 12, TypeRemoveAccount: 13, TypeSetPassword: 14, TypeSetQuota: 15,
		TypeAddAlias: 16, TypeRemoveAlias: 17, TypeSetNode: 18, TypeLease: 19, TypeNoop: 20, TypeBlobChunk: 21,
		TypeBayesTrain: 22, TypeBayesReset: 23,
		TypeQueueAdd: 24, TypeQueueAttempt: 25, TypeQueueResult: 26, TypeQueueAdmin: 27, TypeQueueDSN: 28, TypeSetDKIMKey: 29}
	for typ, n := range want {
		if uint8(typ) != n {
			t.Errorf("type %d renumbered to %d", n, typ)
		}
	}
	// Every known type has a fixture, so the golden files cover them all.
	seen := map[Type]bool{}
	for _, f := range fixtures {
		seen[f.typ] = true
	}
	for typ := range want {
		if !seen[typ] {
			t.Errorf("type %d has no fixture", typ)
		}
		if newPayload(typ) == nil {
			t.Errorf("type %d does not decode", typ)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			if got := f.cmd.Type(); got != f.typ {
				t.Fatalf("Type() = %d, want %d", got, f.typ)
			}
			b, err := Marshal(f.cmd)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Unmarshal(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, f.cmd) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, f.cmd)
			}
			// Zero-valued payloads survive too (omitempty fields absent).
			zero := &Command{Payload: newPayload(f.typ)}
			zb, err := Marshal(zero)
			if err != nil {
				t.Fatal(err)
			}
			zgot, err := Unmarshal(zb)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(zgot, zero) {
				t.Fatalf("zero round trip:\n got %#v\nwant %#v", zgot, zero)
			}
		})
	}
}

// TestGolden compares each fixture's encoding with testdata/<name>.golden
// (hex). A renumbered type, a changed msgpack tag or a reordered field fails
// here; regenerate with `go test ./raftstore/command -run TestGolden -update`
// only for a deliberate, documented format change (docs/formats.md).
func TestGolden(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			b, err := Marshal(f.cmd)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", f.name+".golden")
			got := hex.EncodeToString(b) + "\n"
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if got != string(want) {
				t.Fatalf("encoding of %s changed:\n got %s\nwant %s", f.name, got, want)
			}
			// The golden bytes still decode to the fixture: old entries
			// in a raft log stay readable.
			raw, err := hex.DecodeString(strings.TrimSpace(string(want)))
			if err != nil {
				t.Fatal(err)
			}
			dec, err := Unmarshal(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(dec, f.cmd) {
				t.Fatalf("golden decodes to %#v", dec)
			}
		})
	}
}

func TestEnvelopeHeader(t *testing.T) {
	c := &Command{Time: 0x0102030405060708, Key: "abc", Payload: &Noop{}}
	b, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{byte(TypeNoop), 1, 2, 3, 4, 5, 6, 7, 8, 3, 'a', 'b', 'c', 0x80}
	if !bytes.Equal(b, want) {
		t.Fatalf("envelope = %x, want %x", b, want)
	}
}

func TestPeekAndStamp(t *testing.T) {
	b, err := Marshal(fixtures[0].cmd)
	if err != nil {
		t.Fatal(err)
	}
	typ, err := PeekType(b)
	if err != nil || typ != TypeDeliver {
		t.Fatalf("PeekType = %d, %v", typ, err)
	}
	key, err := PeekKey(b)
	if err != nil || key != "k-deliver" {
		t.Fatalf("PeekKey = %q, %v", key, err)
	}
	before := append([]byte(nil), b...)
	const stamp = int64(1_700_000_000_123_456_789)
	if err := StampTime(b, stamp); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[9:], before[9:]) || b[0] != before[0] {
		t.Fatal("StampTime touched bytes outside the time field")
	}
	c, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if c.Time != stamp {
		t.Fatalf("stamped time = %d, want %d", c.Time, stamp)
	}
	c.Time = fixtures[0].cmd.Time
	if !reflect.DeepEqual(c, fixtures[0].cmd) {
		t.Fatal("StampTime changed the payload")
	}
	// Negative times (before 1970) survive the uint64 conversion.
	if err := StampTime(b, -5); err != nil {
		t.Fatal(err)
	}
	if c, _ := Unmarshal(b); c.Time != -5 {
		t.Fatalf("negative time = %d", c.Time)
	}

	short := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"type only", []byte{1}},
		{"nine bytes", make([]byte, 9)},
	}
	for _, s := range short {
		t.Run(s.name, func(t *testing.T) {
			if _, err := PeekType(s.b); !errors.Is(err, ErrShort) {
				t.Errorf("PeekType: %v", err)
			}
			if _, err := PeekKey(s.b); !errors.Is(err, ErrShort) {
				t.Errorf("PeekKey: %v", err)
			}
			if err := StampTime(s.b, 1); !errors.Is(err, ErrShort) {
				t.Errorf("StampTime: %v", err)
			}
			if _, err := Unmarshal(s.b); !errors.Is(err, ErrShort) {
				t.Errorf("Unmarshal: %v", err)
			}
		})
	}
	// The key length byte claims more than there is.
	trunc := []byte{byte(TypeNoop), 0, 0, 0, 0, 0, 0, 0, 0, 5, 'a', 'b'}
	if _, err := PeekKey(trunc); !errors.Is(err, ErrShort) {
		t.Errorf("PeekKey of truncated key: %v", err)
	}
	if _, err := Unmarshal(trunc); !errors.Is(err, ErrShort) {
		t.Errorf("Unmarshal of truncated key: %v", err)
	}
}

func TestMarshalErrors(t *testing.T) {
	if _, err := Marshal(&Command{}); err == nil {
		t.Error("nil payload encoded")
	}
	if _, err := Marshal(&Command{Key: strings.Repeat("k", MaxKeyLen+1), Payload: &Noop{}}); err == nil {
		t.Error("over-long key encoded")
	}
	if _, err := Marshal(&Command{Key: strings.Repeat("k", MaxKeyLen), Payload: &Noop{}}); err != nil {
		t.Errorf("key of MaxKeyLen refused: %v", err)
	}
}

func TestUnknownType(t *testing.T) {
	hdr := func(typ byte) []byte {
		return []byte{typ, 0, 0, 0, 0, 0, 0, 0, 7, 1, 'k', 0x81, 0xa1, 'x', 0x01}
	}
	tests := []struct {
		name    string
		typ     byte
		wantErr bool
	}{
		{"zero", 0, true},
		{"unassigned number", 100, true},
		{"max without bit", 0x7f, true},
		{"skippable", 0x80 | 60, false},
		{"skippable max", 0xff, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Unmarshal(hdr(tt.typ))
			if tt.wantErr {
				if !errors.Is(err, ErrUnknownType) {
					t.Fatalf("err = %v, want ErrUnknownType", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			u, ok := c.Payload.(Unknown)
			if !ok || u.T != Type(tt.typ) || c.Type() != Type(tt.typ) {
				t.Fatalf("payload = %#v", c.Payload)
			}
			if c.Key != "k" || c.Time != 7 {
				t.Fatalf("envelope = %q %d", c.Key, c.Time)
			}
		})
	}
}

// TestUnmarshalMalformed covers inputs that once made Unmarshal allocate
// without bound (msgpack v5.4.1 preallocates slices of structs to the
// declared length) or recurse deeply.
func TestUnmarshalMalformed(t *testing.T) {
	hdr := []byte{byte(TypeSetFlags), 0, 0, 0, 0, 0, 0, 0, 0, 0}
	tests := []struct {
		name string
		body []byte
	}{
		// {"uids": array32 of 0x0fffffff elements}: 4 GiB of UIDRange before the fix.
		{"huge uid array", []byte{0x81, 0xa4, 'u', 'i', 'd', 's', 0xdd, 0x0f, 0xff, 0xff, 0xff}},
		{"max uid array", []byte{0x81, 0xa4, 'u', 'i', 'd', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}},
		{"huge map", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
		{"huge string", []byte{0x81, 0xa4, 'a', 'c', 'c', 't', 0xdb, 0xff, 0xff, 0xff, 0xff}},
		{"deep nesting in unknown field", append([]byte{0x81, 0xa1, 'z'}, bytes.Repeat([]byte{0x91}, 100000)...)},
		{"invalid code", []byte{0xc1}},
		{"empty body", nil},
		{"truncated map", []byte{0x82, 0xa1, 'z'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Unmarshal(append(append([]byte(nil), hdr...), tt.body...))
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("malformed payload decoded")
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
				t.Fatalf("decoding %d bytes allocated %d bytes", len(tt.body), grew)
			}
		})
	}
}

func TestCheckShapeAcceptsAllCodes(t *testing.T) {
	// One value of each msgpack format family, as an array.
	vals := [][]byte{
		{0x05}, {0xe0}, {0xc0}, {0xc2}, {0xc3},
		{0x81, 0xa1, 'a', 0x01}, {0x91, 0x01}, {0xa2, 'h', 'i'},
		{0xc4, 1, 'x'}, {0xc5, 0, 1, 'x'}, {0xc6, 0, 0, 0, 1, 'x'},
		{0xc7, 1, 5, 'x'}, {0xc8, 0, 1, 5, 'x'}, {0xc9, 0, 0, 0, 1, 5, 'x'},
		{0xca, 0, 0, 0, 0}, {0xcb, 0, 0, 0, 0, 0, 0, 0, 0},
		{0xcc, 1}, {0xcd, 0, 1}, {0xce, 0, 0, 0, 1}, {0xcf, 0, 0, 0, 0, 0, 0, 0, 1},
		{0xd0, 1}, {0xd1, 0, 1}, {0xd2, 0, 0, 0, 1}, {0xd3, 0, 0, 0, 0, 0, 0, 0, 1},
		{0xd4, 5, 1}, {0xd5, 5, 1, 2}, {0xd6, 5, 1, 2, 3, 4}, {0xd7, 5, 1, 2, 3, 4, 5, 6, 7, 8},
		append([]byte{0xd8, 5}, make([]byte, 16)...),
		{0xd9, 1, 'x'}, {0xda, 0, 1, 'x'}, {0xdb, 0, 0, 0, 1, 'x'},
		{0xdc, 0, 1, 0x01}, {0xdd, 0, 0, 0, 1, 0x01},
		{0xde, 0, 1, 0x01, 0x02}, {0xdf, 0, 0, 0, 1, 0x01, 0x02},
	}
	for _, v := range vals {
		if err := checkShape(v); err != nil {
			t.Errorf("%x: %v", v, err)
		}
		if err := checkShape(v[:len(v)-1]); err == nil && len(v) > 1 {
			t.Errorf("%x truncated: accepted", v)
		}
	}
	// Every fixture's payload passes.
	for _, f := range fixtures {
		b, _ := Marshal(f.cmd)
		if err := checkShape(b[headerLen+len(f.cmd.Key):]); err != nil {
			t.Errorf("%s: %v", f.name, err)
		}
	}
}

// FuzzUnmarshal asserts that Unmarshal returns an error rather than
// panicking (or allocating without bound) on arbitrary bytes, and that what
// it accepts re-encodes stably. The seeds (the
// golden encodings) run in every `go test`; `make fuzz` explores further.
func FuzzUnmarshal(f *testing.F) {
	for _, fx := range fixtures {
		b, err := Marshal(fx.cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Unmarshal(b)
		if err != nil {
			return
		}
		if _, ok := c.Payload.(Unknown); ok || len(c.Key) > MaxKeyLen {
			return
		}
		re, err := Marshal(c)
		if err != nil {
			t.Fatalf("decoded command does not re-encode: %v", err)
		}
		c2, err := Unmarshal(re)
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		// Empty and absent lists may differ after decoding (omitempty), so
		// compare encodings: a second round trip must be stable.
		re2, err := Marshal(c2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(re, re2) {
			t.Fatalf("encoding is not stable:\n%x\n%x", re, re2)
		}
	})
}
