package raftstore

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
)

// ErrAuthFailed means the user does not exist or the password is wrong.
var ErrAuthFailed = errors.New("authentication failed")

// Argon2id parameters (OWASP's second recommendation: 19 MiB, t=2, p=1).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// HashPassword returns an argon2id hash in PHC string format. It runs on the
// proposer; the command carries only the hash.
func HashPassword(pw string) (string, error) {
	if pw == "" {
		return "", errf(ErrInvalid, "empty password")
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword checks a password against a PHC argon2id hash.
func VerifyPassword(hash, pw string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 1<<21 || t > 64 {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// authCache remembers successful verifications for a short time, keyed by
// an HMAC (per-process random key) of user, password and the account's
// password sequence, as Dovecot's auth cache does: a password hash costs tens
// of milliseconds by design, and IMAP/POP3 clients log in constantly.
// A password change or account removal drops the account's entries.
type authCache struct {
	key []byte
	ttl time.Duration
	mu  sync.Mutex
	ok  map[[32]byte]cacheEntry
}

type cacheEntry struct {
	user    string
	expires time.Time
}

func newAuthCache() *authCache {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return &authCache{key: k, ttl: 5 * time.Minute, ok: make(map[[32]byte]cacheEntry)}
}

func (c *authCache) sum(user, pw string, seq uint64) [32]byte {
	h := hmac.New(sha256.New, c.key)
	fmt.Fprintf(h, "%d\x00%s\x00%s", seq, user, pw)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func (c *authCache) hit(k [32]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.ok[k]
	return ok && time.Now().Before(e.expires)
}

func (c *authCache) add(k [32]byte, user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ok) > 100000 {
		c.ok = make(map[[32]byte]cacheEntry)
	}
	c.ok[k] = cacheEntry{user: user, expires: time.Now().Add(c.ttl)}
}

func (c *authCache) drop(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.ok {
		if e.user == user {
			delete(c.ok, k)
		}
	}
}

// Authenticate checks a user's password against this node's state, using
// the verification cache. It returns the canonical account address; an
// alias logs into its target account.
func (s *Store) Authenticate(user, pw string) (string, error) {
	var acct Account
	err := s.View(func(r *ReadTx) error {
		addr, err := NormalizeAddress(user)
		if err != nil {
			return err
		}
		if a, err := r.Account(addr); err == nil {
			acct = a
			return nil
		}
		target, err := r.Resolve(addr)
		if err != nil {
			return err
		}
		acct, err = r.Account(target)
		return err
	})
	if err != nil || pw == "" {
		return "", ErrAuthFailed
	}
	k := s.auth.sum(acct.Address, pw, acct.PassSeq)
	if s.auth.hit(k) {
		return acct.Address, nil
	}
	if !VerifyPassword(acct.PassHash, pw) {
		return "", ErrAuthFailed
	}
	s.auth.add(k, acct.Address)
	return acct.Address, nil
}

// invalidateAuth drops cached verifications when an account changes.
func (s *Store) invalidateAuth() {
	defer s.wg.Done()
	ch, cancel := s.Subscribe(64)
	defer cancel()
	for {
		select {
		case <-s.stop:
			return
		case c, ok := <-ch:
			if !ok {
				return
			}
			switch c := c.(type) {
			case AccountChanged:
				s.auth.drop(c.Address)
			case StateReset:
				s.auth.mu.Lock()
				s.auth.ok = make(map[[32]byte]cacheEntry)
				s.auth.mu.Unlock()
			}
		}
	}
}
