// Package command defines the commands that travel through the Raft log and
// their binary encoding.
//
// Wire format (version 1), documented in docs/formats.md:
//
//	[1 byte Type][8 bytes time, big-endian unix nanoseconds][1 byte key length][key][msgpack payload]
//
// The type byte allows dispatch without decoding the payload, and its high bit
// (IgnoreUnknown) marks commands that an older node may skip. The time sits at
// a fixed offset so the leader can stamp its clock into an already encoded
// command without re-encoding a large body. The key is the idempotency key:
// the FSM remembers the result of every keyed command for 24 hours and answers
// a repeat with the first result instead of applying it again.
package command

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Type identifies a command. Values are persistent: never renumber.
type Type uint8

// Command types. The numbering is part of the on-disk format.
const (
	TypeDeliver       Type = 1
	TypeAppend        Type = 2
	TypeSetFlags      Type = 3
	TypeExpunge       Type = 4
	TypeCopy          Type = 5
	TypeCreateMailbox Type = 6
	TypeDeleteMailbox Type = 7
	TypeRenameMailbox Type = 8
	TypeSubscribe     Type = 9
	TypeAddDomain     Type = 10
	TypeRemoveDomain  Type = 11
	TypeAddAccount    Type = 12
	TypeRemoveAccount Type = 13
	TypeSetPassword   Type = 14
	TypeSetQuota      Type = 15
	TypeAddAlias      Type = 16
	TypeRemoveAlias   Type = 17
	TypeSetNode       Type = 18
	TypeLease         Type = 19
	TypeNoop          Type = 20
	TypeBlobChunk     Type = 21
	TypeBayesTrain    Type = 22
	TypeBayesReset    Type = 23
	TypeQueueAdd      Type = 24
	TypeQueueAttempt  Type = 25
	TypeQueueResult   Type = 26
	TypeQueueAdmin    Type = 27
	TypeQueueDSN      Type = 28
	TypeSetDKIMKey    Type = 29
)

// IgnoreUnknown is set on types that a node which does not know them may skip
// (consul's rule). A node that meets an unknown type without it must stop.
const IgnoreUnknown Type = 0x80

// MaxKeyLen is the longest idempotency key.
const MaxKeyLen = 128

// headerLen is the fixed part of the envelope before the key.
const headerLen = 1 + 8 + 1

var (
	// ErrShort means the input ends before the envelope does.
	ErrShort = errors.New("command: truncated envelope")
	// ErrUnknownType means the type byte names no known command.
	ErrUnknownType = errors.New("command: unknown type")
	// ErrMalformed means the payload is not well-formed msgpack of a sane
	// shape (see checkShape).
	ErrMalformed = errors.New("command: malformed payload")
)

// Payload is the body of a command; each payload type knows its Type.
type Payload interface {
	Type() Type
}

// Command is one entry of the replicated log.
type Command struct {
	// Time is the proposer's (finally the leader's) clock, unix nanoseconds.
	// The FSM uses it instead of reading the clock.
	Time int64
	// Key is the idempotency key; empty means no deduplication.
	Key string
	// Payload holds the command's fields.
	Payload Payload
}

// Type returns the payload's type.
func (c *Command) Type() Type { return c.Payload.Type() }

// Marshal encodes a command.
func Marshal(c *Command) ([]byte, error) {
	if c.Payload == nil {
		return nil, errors.New("command: nil payload")
	}
	if len(c.Key) > MaxKeyLen {
		return nil, fmt.Errorf("command: key of %d bytes exceeds %d", len(c.Key), MaxKeyLen)
	}
	body, err := msgpack.Marshal(c.Payload)
	if err != nil {
		return nil, fmt.Errorf("command: encode %T: %w", c.Payload, err)
	}
	b := make([]byte, 0, headerLen+len(c.Key)+len(body))
	b = append(b, byte(c.Payload.Type()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.Time))
	b = append(b, byte(len(c.Key)))
	b = append(b, c.Key...)
	return append(b, body...), nil
}

// PeekType returns the type byte of an encoded command.
func PeekType(b []byte) (Type, error) {
	if len(b) < headerLen {
		return 0, ErrShort
	}
	return Type(b[0]), nil
}

// PeekKey returns the idempotency key of an encoded command.
func PeekKey(b []byte) (string, error) {
	if len(b) < headerLen || len(b) < headerLen+int(b[9]) {
		return "", ErrShort
	}
	return string(b[headerLen : headerLen+int(b[9])]), nil
}

// StampTime overwrites the time of an encoded command in place.
func StampTime(b []byte, unixNano int64) error {
	if len(b) < headerLen {
		return ErrShort
	}
	binary.BigEndian.PutUint64(b[1:9], uint64(unixNano))
	return nil
}

// Unmarshal decodes a command. It never panics on arbitrary input. A type
// with IgnoreUnknown that this version does not know decodes to a Command
// whose Payload is Unknown.
func Unmarshal(b []byte) (*Command, error) {
	if len(b) < headerLen {
		return nil, ErrShort
	}
	klen := int(b[9])
	if len(b) < headerLen+klen {
		return nil, ErrShort
	}
	c := &Command{
		Time: int64(binary.BigEndian.Uint64(b[1:9])),
		Key:  string(b[headerLen : headerLen+klen]),
	}
	t := Type(b[0])
	p := newPayload(t)
	if p == nil {
		if t&IgnoreUnknown != 0 {
			c.Payload = Unknown{T: t}
			return c, nil
		}
		return nil, fmt.Errorf("%w %d", ErrUnknownType, t)
	}
	body := b[headerLen+klen:]
	if err := checkShape(body); err != nil {
		return nil, fmt.Errorf("command: decode type %d: %w", t, err)
	}
	if err := msgpack.Unmarshal(body, p); err != nil {
		return nil, fmt.Errorf("%w: type %d: %w", ErrMalformed, t, err)
	}
	c.Payload = p
	return c, nil
}

// Unknown stands for a skippable command of a type this version lacks.
type Unknown struct{ T Type }

// Type implements Payload.
func (u Unknown) Type() Type { return u.T }

func newPayload(t Type) Payload {
	switch t {
	case TypeDeliver:
		return &Deliver{}
	case TypeAppend:
		return &Append{}
	case TypeSetFlags:
		return &SetFlags{}
	case TypeExpunge:
		return &Expunge{}
	case TypeCopy:
		return &Copy{}
	case TypeCreateMailbox:
		return &CreateMailbox{}
	case TypeDeleteMailbox:
		return &DeleteMailbox{}
	case TypeRenameMailbox:
		return &RenameMailbox{}
	case TypeSubscribe:
		return &Subscribe{}
	case TypeAddDomain:
		return &AddDomain{}
	case TypeRemoveDomain:
		return &RemoveDomain{}
	case TypeAddAccount:
		return &AddAccount{}
	case TypeRemoveAccount:
		return &RemoveAccount{}
	case TypeSetPassword:
		return &SetPassword{}
	case TypeSetQuota:
		return &SetQuota{}
	case TypeAddAlias:
		return &AddAlias{}
	case TypeRemoveAlias:
		return &RemoveAlias{}
	case TypeSetNode:
		return &SetNode{}
	case TypeLease:
		return &Lease{}
	case TypeNoop:
		return &Noop{}
	case TypeBlobChunk:
		return &BlobChunk{}
	case TypeBayesTrain:
		return &BayesTrain{}
	case TypeBayesReset:
		return &BayesReset{}
	case TypeQueueAdd:
		return &QueueAdd{}
	case TypeQueueAttempt:
		return &QueueAttempt{}
	case TypeQueueResult:
		return &QueueResult{}
	case TypeQueueAdmin:
		return &QueueAdmin{}
	case TypeQueueDSN:
		return &QueueDSN{}
	case TypeSetDKIMKey:
		return &SetDKIMKey{}
	}
	return nil
}

// maxDepth bounds the nesting of a payload; ours nest at most 4 levels.
const maxDepth = 32

// checkShape walks msgpack data without recursion or allocation and refuses
// it when a declared length exceeds the bytes that are left or the nesting is
// deeper than maxDepth. msgpack v5.4.1 preallocates a slice of structs to
// the declared length (its allocation limit test in decodeSliceValue can
// never hold), so 20 bytes could make Unmarshal allocate gigabytes, and its
// Skip of unknown fields recurses once per nesting level.
func checkShape(b []byte) error {
	pending := []uint64{1} // items still expected at each open level
	pos := 0
	need := func(n uint64) error {
		if n > uint64(len(b)-pos) {
			return fmt.Errorf("%w: length %d at offset %d exceeds the input", ErrMalformed, n, pos)
		}
		return nil
	}
	length := func(size int) (uint64, error) {
		if err := need(uint64(size)); err != nil {
			return 0, err
		}
		var n uint64
		for _, c := range b[pos : pos+size] {
			n = n<<8 | uint64(c)
		}
		pos += size
		return n, nil
	}
	for {
		for len(pending) > 0 && pending[len(pending)-1] == 0 {
			pending = pending[:len(pending)-1]
		}
		if len(pending) == 0 {
			return nil
		}
		if pos >= len(b) {
			return fmt.Errorf("%w: truncated", ErrMalformed)
		}
		pending[len(pending)-1]--
		c := b[pos]
		pos++
		var skip, items uint64 // bytes to skip; child items to expect
		var err error
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c >= 0x80 && c <= 0x8f:
			items = 2 * uint64(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			items = uint64(c & 0x0f)
		case c >= 0xa0 && c <= 0xbf:
			skip = uint64(c & 0x1f)
		case c == 0xc4 || c == 0xd9: // bin8, str8
			skip, err = length(1)
		case c == 0xc5 || c == 0xda: // bin16, str16
			skip, err = length(2)
		case c == 0xc6 || c == 0xdb: // bin32, str32
			skip, err = length(4)
		case c == 0xc7, c == 0xc8, c == 0xc9: // ext8/16/32: length, type byte, data
			skip, err = length(1 << (c - 0xc7))
			skip++
		case c == 0xcc || c == 0xd0:
			skip = 1
		case c == 0xcd || c == 0xd1:
			skip = 2
		case c == 0xca || c == 0xce || c == 0xd2:
			skip = 4
		case c == 0xcb || c == 0xcf || c == 0xd3:
			skip = 8
		case c >= 0xd4 && c <= 0xd8: // fixext 1..16 plus its type byte
			skip = 1 + 1<<(c-0xd4)
		case c == 0xdc: // array16
			items, err = length(2)
		case c == 0xdd: // array32
			items, err = length(4)
		case c == 0xde: // map16
			items, err = length(2)
			items *= 2
		case c == 0xdf: // map32
			items, err = length(4)
			items *= 2
		default: // 0xc1 is never used
			return fmt.Errorf("%w: invalid code 0x%02x at offset %d", ErrMalformed, c, pos-1)
		}
		if err != nil {
			return err
		}
		if err := need(skip); err != nil {
			return err
		}
		pos += int(skip)
		if items > 0 {
			// Every item takes at least one byte.
			if err := need(items); err != nil {
				return err
			}
			if len(pending) >= maxDepth {
				return fmt.Errorf("%w: nested deeper than %d", ErrMalformed, maxDepth)
			}
			pending = append(pending, items)
		}
	}
}
