package frontends

import "github.com/raftmail/raftmail/frontends/mailmeta"

// ParseMeta parses a raw message into the structure stored with its body,
// so IMAP answers ENVELOPE and BODYSTRUCTURE without decompressing it.
func ParseMeta(raw []byte) ([]byte, error) { return mailmeta.Parse(raw) }
