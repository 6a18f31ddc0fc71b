package smtp

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
)

// Authenticator verifies a user's password and returns the account it
// belongs to. It returns ErrAuthFailed for wrong credentials and any other
// error when it cannot tell (then the client gets 454 4.7.0 and may retry).
// NodesCommitter implements it over the nodes' POST /internal/auth.
type Authenticator interface {
	Authenticate(ctx context.Context, user, pass string) (account string, err error)
}

// ErrAuthFailed means wrong credentials.
var ErrAuthFailed = errors.New("authentication failed")

// loginServer is the server side of the obsolete but ubiquitous LOGIN SASL
// mechanism (draft-murchison-sasl-login), which go-sasl implements only as
// a client: "Username:" and "Password:" challenges, an optional initial
// response carrying the user name.
type loginServer struct {
	auth     func(user, pass string) error
	user     string
	haveUser bool
}

var _ sasl.Server = (*loginServer)(nil)

func (l *loginServer) Next(resp []byte) (challenge []byte, done bool, err error) {
	switch {
	case !l.haveUser && resp == nil:
		return []byte("Username:"), false, nil
	case !l.haveUser:
		l.user, l.haveUser = string(resp), true
		return []byte("Password:"), false, nil
	}
	return nil, true, l.auth(l.user, string(resp))
}

// authThrottle delays answers to failed AUTH per client network, doubling
// with each failure (RFC 4954 §4 leaves the policy to the server). It is
// memory only and bounded: a frontend restart forgets it, which is fine
// for a throttle.
type authThrottle struct {
	base, max time.Duration
	forget    time.Duration

	mu sync.Mutex
	m  map[netip.Prefix]*authFails
}

type authFails struct {
	n    int
	last time.Time
}

const maxThrottleEntries = 100_000

func newAuthThrottle(base, max time.Duration) *authThrottle {
	return &authThrottle{base: base, max: max, forget: 15 * time.Minute, m: make(map[netip.Prefix]*authFails)}
}

// fail records a failure from key and returns the delay to apply.
func (t *authThrottle) fail(key netip.Prefix) time.Duration {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[key]
	if f == nil || now.Sub(f.last) > t.forget {
		if len(t.m) >= maxThrottleEntries {
			for k, of := range t.m {
				if now.Sub(of.last) > t.forget {
					delete(t.m, k)
				}
			}
		}
		f = &authFails{}
		t.m[key] = f
	}
	f.n++
	f.last = now
	d := t.base
	for i := 1; i < f.n && d < t.max; i++ {
		d *= 2
	}
	return min(d, t.max)
}

// failures returns the current failure count of key.
func (t *authThrottle) failures(key netip.Prefix) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.m[key]; f != nil && time.Since(f.last) <= t.forget {
		return f.n
	}
	return 0
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
