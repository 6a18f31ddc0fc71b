package dnsbl_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/filters/dnsbl"
	"github.com/raftmail/raftmail/filters/resolver"
	"github.com/raftmail/raftmail/filters/resolver/dnstest"
)

func TestReverse(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"192.0.2.99", "99.2.0.192"},
		{"::ffff:192.0.2.1", "1.2.0.192"},
		{"2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"},
	} {
		if got := dnsbl.Reverse(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("Reverse(%s) = %s, want %s", tc.ip, got, tc.want)
		}
	}
}

func newCheck(t *testing.T, srv *dnstest.Server) *dnsbl.Check {
	t.Helper()
	res, err := resolver.New(resolver.Config{Server: srv.Addr, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c, err := dnsbl.New(res, []dnsbl.Zone{
		{Zone: "bl.test", Score: 3, Reject: true, Codes: map[string]string{"127.0.0.2": "spam-source", "127.0.0.4": "exploited"}},
		{Zone: "score.test", Score: 2.5},
		{Zone: "wl.test", Score: -5},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func connect(t *testing.T, c *dnsbl.Check, ip string) filters.Verdict {
	t.Helper()
	st, err := c.NewState(context.Background(), &filters.ConnInfo{IP: netip.MustParseAddr(ip)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return st.Connect(ctx)
}

// TestZones runs the check against a real DNS server on 127.0.0.1: per
// zone return-code meanings, scores, reject zones, IPv6, allow lists.
func TestZones(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t,
		"2.0.0.127.bl.test. 300 IN A 127.0.0.2",
		"3.2.0.192.bl.test. 300 IN A 127.0.0.9", // a code without meaning: ignored
		"3.2.0.192.score.test. 300 IN A 127.0.0.2",
		"5.2.0.192.wl.test. 300 IN A 127.0.10.1",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test. 300 IN A 127.0.0.4",
	)
	c := newCheck(t, srv)
	for _, tc := range []struct {
		name, ip string
		action   filters.Action
		score    float64
		header   string
	}{
		{"listed, rejecting zone", "127.0.0.2", filters.Reject, 3, "bl.test=spam-source"},
		{"unknown code ignored, scored elsewhere", "192.0.2.3", filters.Accept, 2.5, "score.test=127.0.0.2"},
		{"allow list", "192.0.2.5", filters.Accept, -5, "wl.test=127.0.10.1"},
		{"not listed", "192.0.2.77", filters.Accept, 0, ""},
		{"ipv6", "2001:db8::1", filters.Reject, 3, "bl.test=exploited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := connect(t, c, tc.ip)
			if v.Action != tc.action || v.Score != tc.score {
				t.Fatalf("verdict %v score %v (err %v), want %v %v", v.Action, v.Score, v.Err, tc.action, tc.score)
			}
			got := ""
			for _, h := range v.Headers {
				got += h.Value
			}
			if !strings.Contains(got, tc.header) {
				t.Fatalf("headers %q lack %q", got, tc.header)
			}
		})
	}
	// Answers are cached with their TTL: asking again sends nothing.
	before := srv.Queries.Load()
	connect(t, c, "127.0.0.2")
	if n := srv.Queries.Load(); n != before {
		t.Fatalf("%d queries for a cached answer", n-before)
	}
}

// TestHangingServer: a server that never answers gives a Failure (the
// pipeline's OnError decides) within the resolver timeout, not a hang.
func TestHangingServer(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Hang.Store(true)
	c := newCheck(t, srv)
	start := time.Now()
	v := connect(t, c, "192.0.2.44")
	if !filters.IsFailure(v) {
		t.Fatalf("verdict %+v, want a failure", v)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
	// Through a pipeline with OnError accept, the connection is let in.
	p := filters.New(filters.Config{Timeout: time.Second}, filters.With(c, filters.Policy{OnError: filters.ErrorAccept}))
	s, pv := p.Connect(context.Background(), &filters.ConnInfo{IP: netip.MustParseAddr("192.0.2.45")})
	defer s.Close()
	if pv.Action != filters.Accept {
		t.Fatalf("pipeline verdict %v", pv.Action)
	}
}
