package smtp

import (
	"net/netip"
	"testing"
	"time"
)

func TestAuthThrottleGrows(t *testing.T) {
	th := newAuthThrottle(100*time.Millisecond, time.Second)
	a, b := netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.2/32")
	var got []time.Duration
	for i := 0; i < 6; i++ {
		got = append(got, th.fail(a))
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
	if d := th.fail(b); d != 100*time.Millisecond {
		t.Fatalf("other network delayed %v", d)
	}
	if th.failures(a) != 6 {
		t.Fatalf("failures %d", th.failures(a))
	}
}

func TestLoginServer(t *testing.T) {
	var gotUser, gotPass string
	l := &loginServer{auth: func(u, p string) error { gotUser, gotPass = u, p; return nil }}
	if c, done, err := l.Next(nil); string(c) != "Username:" || done || err != nil {
		t.Fatalf("%q %v %v", c, done, err)
	}
	if c, done, err := l.Next([]byte("alice")); string(c) != "Password:" || done || err != nil {
		t.Fatalf("%q %v %v", c, done, err)
	}
	if _, done, err := l.Next([]byte("pw")); !done || err != nil || gotUser != "alice" || gotPass != "pw" {
		t.Fatalf("%v %v %q %q", done, err, gotUser, gotPass)
	}
}
