package frontends

import (
	"crypto/rand"
	"encoding/hex"
)

// NewKey returns a fresh random idempotency key (128 bits, hex).
func NewKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
