package filters_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftmail/raftmail/filters"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fixed is a check answering the same verdict at every stage it is given.
type fixed struct {
	name   string
	stage  filters.Stage
	v      filters.Verdict
	delay  time.Duration
	panics bool
	closed *atomic.Int32
	// inline makes the state report every stage Inline; calls counts
	// its calls at stage and goroutines records where they ran.
	inline     bool
	calls      atomic.Int32
	goroutines []string
}

func (f *fixed) Name() string { return f.name }
func (f *fixed) NewState(context.Context, *filters.ConnInfo) (filters.State, error) {
	return &fixedState{f: f}, nil
}

type fixedState struct{ f *fixed }

func (s *fixedState) Inline(filters.Stage) bool { return s.f.inline }

func (s *fixedState) at(ctx context.Context, st filters.Stage) filters.Verdict {
	s.f.goroutines = append(s.f.goroutines, goroutineID())
	if st != s.f.stage {
		return filters.Verdict{}
	}
	s.f.calls.Add(1)
	if s.f.panics {
		panic("boom")
	}
	if s.f.delay > 0 {
		select {
		case <-time.After(s.f.delay):
		case <-ctx.Done():
		}
	}
	return s.f.v
}
func (s *fixedState) Connect(ctx context.Context) filters.Verdict {
	return s.at(ctx, filters.StageConnect)
}
func (s *fixedState) Helo(ctx context.Context, _ string) filters.Verdict {
	return s.at(ctx, filters.StageHelo)
}
func (s *fixedState) Mail(ctx context.Context, _ filters.Mail) filters.Verdict {
	return s.at(ctx, filters.StageMail)
}
func (s *fixedState) Rcpt(ctx context.Context, _ filters.Rcpt) filters.Verdict {
	return s.at(ctx, filters.StageRcpt)
}
func (s *fixedState) Body(ctx context.Context, _ *filters.Message) filters.Verdict {
	return s.at(ctx, filters.StageData)
}
func (s *fixedState) Reset() {}
func (s *fixedState) Close() error {
	if s.f.closed != nil {
		s.f.closed.Add(1)
	}
	return nil
}

// goroutineID is the calling goroutine's number, from its stack header.
func goroutineID() string {
	b := make([]byte, 64)
	return strings.Fields(string(b[:runtime.Stack(b, false)]))[1]
}

func hdr(k string) []filters.Header { return []filters.Header{{Key: k, Value: "1"}} }

func TestMerge(t *testing.T) {
	a, tg, tf, rj := filters.Verdict{Headers: hdr("A")}, filters.Verdict{Action: filters.Tag, Headers: hdr("T")},
		filters.Verdict{Action: filters.TempFail}, filters.Verdict{Action: filters.Reject, Headers: hdr("R")}
	for _, tc := range []struct {
		name string
		in   []filters.Verdict
		want filters.Action
		hdrs int
	}{
		{"accept", []filters.Verdict{a, a}, filters.Accept, 2},
		{"tag beats accept", []filters.Verdict{a, tg}, filters.Tag, 2},
		{"tempfail beats tag", []filters.Verdict{tg, tf}, filters.TempFail, 1},
		{"reject beats all", []filters.Verdict{rj, tf, tg, a}, filters.Reject, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m filters.Verdict
			for _, v := range tc.in {
				m = filters.Merge(m, v)
			}
			if m.Action != tc.want || len(m.Headers) != tc.hdrs {
				t.Fatalf("got %v with %d headers, want %v with %d", m.Action, len(m.Headers), tc.want, tc.hdrs)
			}
		})
	}
}

func TestReplyDefaults(t *testing.T) {
	for _, tc := range []struct {
		v     filters.Verdict
		stage filters.Stage
		code  int
		enh   [3]int
	}{
		{filters.Verdict{Action: filters.Reject}, filters.StageConnect, 554, [3]int{5, 7, 1}},
		{filters.Verdict{Action: filters.TempFail}, filters.StageConnect, 421, [3]int{4, 7, 0}},
		{filters.Verdict{Action: filters.Reject}, filters.StageData, 550, [3]int{5, 7, 1}},
		{filters.Verdict{Action: filters.TempFail}, filters.StageRcpt, 451, [3]int{4, 7, 1}},
		{filters.Verdict{Action: filters.Reject, Code: 552, Enhanced: [3]int{5, 3, 4}}, filters.StageMail, 552, [3]int{5, 3, 4}},
		{filters.Verdict{Action: filters.Tag}, filters.StageData, 0, [3]int{}},
	} {
		code, enh, _ := tc.v.Reply(tc.stage)
		if code != tc.code || enh != tc.enh {
			t.Errorf("%v at %v: got %d %v, want %d %v", tc.v.Action, tc.stage, code, enh, tc.code, tc.enh)
		}
	}
}

func run(t *testing.T, p *filters.Pipeline) filters.Verdict {
	t.Helper()
	info := &filters.ConnInfo{ID: "1", IP: netip.MustParseAddr("192.0.2.1")}
	s, v := p.Connect(context.Background(), info)
	defer s.Close()
	if v.Action >= filters.TempFail {
		return v
	}
	s.Helo(context.Background(), "client.test")
	if v := s.Mail(context.Background(), filters.Mail{From: "a@b.test"}); v.Action >= filters.TempFail {
		return v
	}
	if v := s.Rcpt(context.Background(), filters.Rcpt{To: "c@d.test"}); v.Action >= filters.TempFail {
		return v
	}
	return s.Data(context.Background(), &filters.Message{Body: filters.BytesBody("Subject: x\r\n\r\nx\r\n")})
}

func TestPipeline(t *testing.T) {
	cfg := filters.Config{Logger: quiet, Timeout: 100 * time.Millisecond, BodyTimeout: 100 * time.Millisecond}
	t.Run("body checks concurrently, worst wins, headers accumulate", func(t *testing.T) {
		start := time.Now()
		v := run(t, filters.New(cfg,
			filters.With(&fixed{name: "slow-tag", stage: filters.StageData, delay: 60 * time.Millisecond,
				v: filters.Verdict{Action: filters.Tag, Headers: hdr("X-A")}}, filters.Policy{}),
			filters.With(&fixed{name: "slow-hdr", stage: filters.StageData, delay: 60 * time.Millisecond,
				v: filters.Verdict{Headers: hdr("X-B")}}, filters.Policy{}),
			filters.With(&fixed{name: "rcpt-tag", stage: filters.StageRcpt, v: filters.Verdict{Action: filters.Tag, Headers: hdr("X-C")}}, filters.Policy{}),
		))
		if took := time.Since(start); took > 110*time.Millisecond {
			t.Errorf("body checks took %v: not concurrent", took)
		}
		if v.Action != filters.Tag || len(v.Headers) != 4 { // X-C, X-A, X-B, X-Raftmail-Reason
			t.Fatalf("got %v %v", v.Action, v.Headers)
		}
	})
	t.Run("timeout fails closed", func(t *testing.T) {
		v := run(t, filters.New(cfg, filters.With(&fixed{name: "hang", stage: filters.StageData, delay: time.Second}, filters.Policy{})))
		if v.Action != filters.TempFail || v.Check != "hang" {
			t.Fatalf("got %+v", v)
		}
	})
	t.Run("timeout fails open when configured", func(t *testing.T) {
		v := run(t, filters.New(cfg, filters.With(&fixed{name: "hang", stage: filters.StageData, delay: time.Second},
			filters.Policy{OnError: filters.ErrorAccept})))
		if v.Action != filters.Accept {
			t.Fatalf("got %+v", v)
		}
	})
	t.Run("panic becomes TempFail", func(t *testing.T) {
		v := run(t, filters.New(cfg, filters.With(&fixed{name: "panic", stage: filters.StageRcpt, panics: true}, filters.Policy{})))
		if v.Action != filters.TempFail || v.Check != "panic" {
			t.Fatalf("got %+v", v)
		}
	})
	t.Run("failure verdict uses OnError", func(t *testing.T) {
		v := run(t, filters.New(cfg, filters.With(&fixed{name: "dnsbl", stage: filters.StageConnect,
			v: filters.Failure(errors.New("dns down"))}, filters.Policy{OnError: filters.ErrorAccept})))
		if v.Action != filters.Accept {
			t.Fatalf("got %+v", v)
		}
	})
	t.Run("policies", func(t *testing.T) {
		for _, tc := range []struct {
			hit  filters.OnHit
			in   filters.Action
			want filters.Action
		}{
			{filters.HitDefault, filters.Reject, filters.Reject},
			{filters.HitTag, filters.Reject, filters.Tag},
			{filters.HitReject, filters.Tag, filters.Reject},
			{filters.HitIgnore, filters.Reject, filters.Accept},
		} {
			v := run(t, filters.New(cfg, filters.With(&fixed{name: "c", stage: filters.StageData,
				v: filters.Verdict{Action: tc.in}}, filters.Policy{OnHit: tc.hit})))
			if v.Action != tc.want {
				t.Errorf("OnHit %v on %v: got %v, want %v", tc.hit, tc.in, v.Action, tc.want)
			}
		}
	})
	t.Run("reject at MAIL stops later checks and Close releases all", func(t *testing.T) {
		var closed atomic.Int32
		p := filters.New(cfg,
			filters.With(&fixed{name: "a", stage: filters.StageMail, v: filters.Verdict{Action: filters.Reject}, closed: &closed}, filters.Policy{}),
			filters.With(&fixed{name: "b", stage: filters.StageMail, panics: true, closed: &closed}, filters.Policy{}))
		if v := run(t, p); v.Action != filters.Reject || v.Check != "a" {
			t.Fatalf("got %+v", v)
		}
		if closed.Load() != 2 {
			t.Fatalf("%d states closed, want 2", closed.Load())
		}
	})
	t.Run("inline calls run on the session goroutine", func(t *testing.T) {
		in := &fixed{name: "inline", stage: filters.StageData, inline: true}
		out := &fixed{name: "goroutine", stage: filters.StageData}
		s, _ := filters.New(cfg, filters.With(in, filters.Policy{}), filters.With(out, filters.Policy{})).
			Connect(context.Background(), &filters.ConnInfo{IP: netip.MustParseAddr("192.0.2.1")})
		defer s.Close()
		s.Helo(context.Background(), "client.test")
		s.Mail(context.Background(), filters.Mail{From: "a@b.test"})
		s.Rcpt(context.Background(), filters.Rcpt{To: "c@d.test"})
		s.Data(context.Background(), &filters.Message{Body: filters.BytesBody("Subject: x\r\n\r\nx\r\n")})
		me := goroutineID()
		// Connect is never inline (NewState may wait); HELO, MAIL, RCPT
		// and DATA are.
		if len(in.goroutines) != 5 || in.goroutines[0] == me || slices.ContainsFunc(in.goroutines[1:], func(g string) bool { return g != me }) {
			t.Fatalf("inline check ran on goroutines %v, the session is %s", in.goroutines, me)
		}
		if len(out.goroutines) != 5 || slices.Contains(out.goroutines, me) {
			t.Fatalf("the other check ran on goroutines %v, the session is %s", out.goroutines, me)
		}
	})
	t.Run("inline panic fails closed and disables the check", func(t *testing.T) {
		f := &fixed{name: "panic", stage: filters.StageRcpt, panics: true, inline: true}
		s, _ := filters.New(cfg, filters.With(f, filters.Policy{})).
			Connect(context.Background(), &filters.ConnInfo{IP: netip.MustParseAddr("192.0.2.1")})
		defer s.Close()
		for i := range 2 {
			v := s.Rcpt(context.Background(), filters.Rcpt{To: "c@d.test"})
			if v.Action != filters.TempFail || v.Check != "panic" {
				t.Fatalf("RCPT %d: got %+v", i+1, v)
			}
		}
		if n := f.calls.Load(); n != 1 {
			t.Fatalf("the panicking check was called %d times, want 1", n)
		}
	})
	t.Run("nil pipeline accepts", func(t *testing.T) {
		var p *filters.Pipeline
		if v := run(t, p); v.Action != filters.Accept {
			t.Fatalf("got %+v", v)
		}
	})
}

func TestCheaps(t *testing.T) {
	ctx := context.Background()
	deny, err := filters.ParsePrefixes([]string{"192.0.2.0/24", "2001:db8::1"})
	if err != nil {
		t.Fatal(err)
	}
	var now time.Time = time.Unix(1e9, 0)
	rl := &filters.RateLimit{Connections: filters.Rate{Count: 2, Per: time.Minute}, Messages: filters.Rate{Count: 1, Per: time.Minute},
		Now: func() time.Time { return now }}
	p := filters.New(filters.Config{Logger: quiet, Trusted: []netip.Prefix{netip.MustParsePrefix("192.0.2.7/32")}},
		filters.With(&filters.DenyList{Networks: deny}, filters.Policy{}),
		filters.With(rl, filters.Policy{}),
		filters.With(&filters.Size{Max: 100}, filters.Policy{}))
	connect := func(ip string) (*filters.Session, filters.Verdict) {
		return p.Connect(ctx, &filters.ConnInfo{IP: netip.MustParseAddr(ip)})
	}
	t.Run("deny list and allow list", func(t *testing.T) {
		for ip, want := range map[string]filters.Action{"192.0.2.9": filters.Reject, "2001:db8::1": filters.Reject,
			"192.0.2.7": filters.Accept, "198.51.100.1": filters.Accept} {
			s, v := connect(ip)
			s.Close()
			if v.Action != want {
				t.Errorf("%s: got %v, want %v", ip, v.Action, want)
			}
		}
	})
	t.Run("connection rate per network", func(t *testing.T) {
		for i, want := range []filters.Action{filters.Accept, filters.Accept, filters.TempFail} {
			s, v := connect("2001:db8:1:2::" + string(rune('a'+i)))
			s.Close()
			if v.Action != want {
				t.Fatalf("connection %d from one /64: got %v, want %v", i+1, v.Action, want)
			}
		}
		if code, _, _ := (filters.Verdict{Action: filters.TempFail, Code: 421}).Reply(filters.StageConnect); code != 421 {
			t.Fatal(code)
		}
		now = now.Add(30 * time.Second) // one token back
		s, v := connect("2001:db8:1:2::1")
		s.Close()
		if v.Action != filters.Accept {
			t.Fatalf("after refill: %v", v.Action)
		}
	})
	t.Run("message rate and size", func(t *testing.T) {
		s, _ := connect("203.0.113.5")
		defer s.Close()
		if v := s.Mail(ctx, filters.Mail{From: "a@b", Size: 500}); v.Action != filters.Reject || v.Code != 552 {
			t.Fatalf("SIZE over max: %+v", v)
		}
		if v := s.Mail(ctx, filters.Mail{From: "a@b"}); v.Action != filters.TempFail || v.Code != 451 {
			t.Fatalf("second message within a minute: %+v", v)
		}
		now = now.Add(time.Minute)
		if v := s.Mail(ctx, filters.Mail{From: "a@b"}); v.Action != filters.Accept {
			t.Fatalf("after refill: %+v", v)
		}
		if v := s.Data(ctx, &filters.Message{Body: filters.BytesBody(make([]byte, 101))}); v.Action != filters.Reject {
			t.Fatalf("body over max: %+v", v)
		}
	})
}
