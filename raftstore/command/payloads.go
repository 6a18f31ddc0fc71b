package command

// The payloads. Field tags are the persistent msgpack keys: renaming a Go
// field is fine, changing a tag is a format change. New fields must be
// optional (absent decodes to the zero value).

// Blob is a message body compressed once, on the node or frontend that
// received it.
type Blob struct {
	// ID is the SHA-256 of the raw (uncompressed) body.
	ID [32]byte `msgpack:"id"`
	// Size is the raw body size in bytes.
	Size int64 `msgpack:"size"`
	// Data is the zstd-compressed body. It is empty when the body was sent
	// ahead in Chunks BlobChunk commands (bodies larger than one entry
	// should be: raft replicates entries whole and large ones starve its
	// heartbeats).
	Data   []byte `msgpack:"data"`
	Chunks uint32 `msgpack:"chunks,omitempty"`
	// Meta is the parsed structure (envelope, body structure) of the body,
	// produced by the proposer and opaque to the store.
	Meta []byte `msgpack:"meta,omitempty"`
}

// Deliver stores one message for one or more recipients. The FSM resolves
// each recipient (aliases, +tag, catch-all) to an account and answers per
// recipient.
type Deliver struct {
	From  string   `msgpack:"from"`
	Rcpts []string `msgpack:"rcpts"`
	Blob  Blob     `msgpack:"blob"`
	// Junk delivers into the account's Junk mailbox with the $Junk keyword.
	Junk bool `msgpack:"junk,omitempty"`
	// Flags are initial flags and keywords.
	Flags []string `msgpack:"flags,omitempty"`
	// InternalDate in unix nanoseconds; 0 means the command's time.
	InternalDate int64 `msgpack:"idate,omitempty"`
}

// Append stores one message into a named mailbox (IMAP APPEND).
type Append struct {
	Account      string   `msgpack:"acct"`
	MailboxID    uint64   `msgpack:"mbox"`
	Blob         Blob     `msgpack:"blob"`
	Flags        []string `msgpack:"flags,omitempty"`
	InternalDate int64    `msgpack:"idate,omitempty"`
}

// UIDRange is an inclusive range of UIDs; Stop 0 means "to the end".
type UIDRange struct {
	Start uint32 `msgpack:"a"`
	Stop  uint32 `msgpack:"b"`
}

// FlagOp says how SetFlags combines flags.
type FlagOp uint8

// Flag operations (IMAP STORE FLAGS, +FLAGS, -FLAGS).
const (
	FlagsReplace FlagOp = 0
	FlagsAdd     FlagOp = 1
	FlagsRemove  FlagOp = 2
)

// SetFlags changes flags of messages in one mailbox.
type SetFlags struct {
	Account   string     `msgpack:"acct"`
	MailboxID uint64     `msgpack:"mbox"`
	UIDs      []UIDRange `msgpack:"uids"`
	Op        FlagOp     `msgpack:"op"`
	Flags     []string   `msgpack:"flags,omitempty"`
	// UnchangedSince, when non-zero, skips messages whose MODSEQ is higher
	// (RFC 7162 §3.1.3); their UIDs come back in Result.Failed.
	UnchangedSince uint64 `msgpack:"ucs,omitempty"`
	// Origin names the session that made the change, so its own tracker
	// is not notified twice. Informational only.
	Origin string `msgpack:"origin,omitempty"`
}

// Expunge removes messages from a mailbox.
type Expunge struct {
	Account   string     `msgpack:"acct"`
	MailboxID uint64     `msgpack:"mbox"`
	UIDs      []UIDRange `msgpack:"uids,omitempty"`
	// OnlyDeleted restricts the expunge to messages flagged \Deleted at
	// apply time (IMAP EXPUNGE). POP3 sends explicit UIDs without it.
	OnlyDeleted bool `msgpack:"del,omitempty"`
}

// Copy copies (or moves) messages between two mailboxes of one account.
type Copy struct {
	Account  string     `msgpack:"acct"`
	SrcID    uint64     `msgpack:"src"`
	UIDs     []UIDRange `msgpack:"uids"`
	DstID    uint64     `msgpack:"dst"`
	Move     bool       `msgpack:"move,omitempty"`
	AddFlags []string   `msgpack:"addf,omitempty"`
	DelFlags []string   `msgpack:"delf,omitempty"`
}

// CreateMailbox creates a mailbox.
type CreateMailbox struct {
	Account    string `msgpack:"acct"`
	Name       string `msgpack:"name"`
	SpecialUse string `msgpack:"use,omitempty"`
}

// DeleteMailbox deletes a mailbox and its messages.
type DeleteMailbox struct {
	Account string `msgpack:"acct"`
	Name    string `msgpack:"name"`
}

// RenameMailbox renames a mailbox (and its children).
type RenameMailbox struct {
	Account string `msgpack:"acct"`
	Name    string `msgpack:"name"`
	NewName string `msgpack:"new"`
}

// Subscribe sets or clears a mailbox's subscription.
type Subscribe struct {
	Account    string `msgpack:"acct"`
	Name       string `msgpack:"name"`
	Subscribed bool   `msgpack:"sub"`
}

// AddDomain makes a domain local.
type AddDomain struct {
	Name string `msgpack:"name"`
}

// RemoveDomain removes a domain; it must have no accounts or aliases.
type RemoveDomain struct {
	Name string `msgpack:"name"`
}

// AddAccount creates an account with its default mailboxes.
type AddAccount struct {
	Address string `msgpack:"addr"`
	// PassHash is the encoded password hash, made by the proposer.
	PassHash string `msgpack:"hash"`
	// Quota in bytes; 0 means unlimited.
	Quota int64 `msgpack:"quota,omitempty"`
}

// RemoveAccount deletes an account, its mailboxes and messages.
type RemoveAccount struct {
	Address string `msgpack:"addr"`
}

// SetPassword replaces an account's password hash.
type SetPassword struct {
	Address  string `msgpack:"addr"`
	PassHash string `msgpack:"hash"`
}

// SetQuota sets an account's quota in bytes (0 = unlimited).
type SetQuota struct {
	Address string `msgpack:"addr"`
	Quota   int64  `msgpack:"quota"`
}

// AddAlias points an address (or "@domain" for a catch-all) at an account.
type AddAlias struct {
	Address string `msgpack:"addr"`
	Target  string `msgpack:"target"`
}

// RemoveAlias removes an alias.
type RemoveAlias struct {
	Address string `msgpack:"addr"`
}

// SetNode records a cluster member's addresses so that any node can find the
// leader's API. Remove deletes the record.
type SetNode struct {
	ID       string `msgpack:"id"`
	RaftAddr string `msgpack:"raft,omitempty"`
	APIAddr  string `msgpack:"api,omitempty"`
	Remove   bool   `msgpack:"rm,omitempty"`
}

// LeaseOp says what a Lease command does.
type LeaseOp uint8

// Lease operations.
const (
	LeaseAcquire LeaseOp = 0 // take, or renew if already held by Holder
	LeaseRelease LeaseOp = 1
)

// Lease takes, renews or releases a named lease (e.g. a POP3 maildrop lock).
// Expiry is judged against command time, so it is deterministic.
type Lease struct {
	Name   string  `msgpack:"name"`
	Holder string  `msgpack:"holder"`
	Op     LeaseOp `msgpack:"op"`
	// TTL in nanoseconds from the command's time.
	TTL int64 `msgpack:"ttl,omitempty"`
}

// BlobChunk carries one piece of a large compressed body ahead of the
// Deliver or Append that references it by ID. Pieces not claimed within an
// hour (by command time) are garbage-collected.
type BlobChunk struct {
	ID   [32]byte `msgpack:"id"`
	Seq  uint32   `msgpack:"seq"`
	Data []byte   `msgpack:"data"`
}

// Noop does nothing; used to probe commit and to advance time-based pruning.
type Noop struct{}

// Type implementations.
func (*Deliver) Type() Type       { return TypeDeliver }
func (*Append) Type() Type        { return TypeAppend }
func (*SetFlags) Type() Type      { return TypeSetFlags }
func (*Expunge) Type() Type       { return TypeExpunge }
func (*Copy) Type() Type          { return TypeCopy }
func (*CreateMailbox) Type() Type { return TypeCreateMailbox }
func (*DeleteMailbox) Type() Type { return TypeDeleteMailbox }
func (*RenameMailbox) Type() Type { return TypeRenameMailbox }
func (*Subscribe) Type() Type     { return TypeSubscribe }
func (*AddDomain) Type() Type     { return TypeAddDomain }
func (*RemoveDomain) Type() Type  { return TypeRemoveDomain }
func (*AddAccount) Type() Type    { return TypeAddAccount }
func (*RemoveAccount) Type() Type { return TypeRemoveAccount }
func (*SetPassword) Type() Type   { return TypeSetPassword }
func (*SetQuota) Type() Type      { return TypeSetQuota }
func (*AddAlias) Type() Type      { return TypeAddAlias }
func (*RemoveAlias) Type() Type   { return TypeRemoveAlias }
func (*SetNode) Type() Type       { return TypeSetNode }
func (*Lease) Type() Type         { return TypeLease }
func (*Noop) Type() Type          { return TypeNoop }
func (*BlobChunk) Type() Type     { return TypeBlobChunk }
