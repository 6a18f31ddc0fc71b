package outbound_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/frontends/outbound"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// TestDeliverSigned: two recipients of one domain go in one transaction
// over STARTTLS, with our EHLO name, DKIM-signed (verifying against the
// published key), without the local Return-Path.
func TestDeliverSigned(t *testing.T) {
	e := newEnv(t, 1, nil)
	e.in.mx("remote.test", 10, "mx.remote.test", "127.0.0.2")
	s := e.in.sink("127.0.0.2")
	txt := e.dkimKey("example.test", "s2024")

	e.queue("alice@example.test", rcpts("x@remote.test", "Y@remote.test"), message("m1@test", "signed"))
	clustertest.Eventually(t, 20*time.Second, "delivery", func() bool { return len(s.messages()) == 1 })
	e.waitEmpty(10 * time.Second)
	m := s.messages()[0]
	if len(m.Rcpts) != 2 || !m.TLS || m.Helo != ourHost || m.From != "alice@example.test" {
		t.Fatalf("transaction: rcpts %v tls %v helo %q from %q", m.Rcpts, m.TLS, m.Helo, m.From)
	}
	if hasHeader(m.Data, "Return-Path") {
		t.Fatalf("Return-Path sent on:\n%s", m.Data)
	}
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(m.Data), &dkim.VerifyOptions{LookupTXT: func(d string) ([]string, error) {
		if d != "s2024._domainkey.example.test" {
			return nil, fmt.Errorf("unexpected lookup %s", d)
		}
		return []string{txt}, nil
	}})
	if err != nil || len(verifs) != 1 || verifs[0].Err != nil || verifs[0].Domain != "example.test" {
		t.Fatalf("dkim: %v %+v\n%s", err, verifs, m.Data)
	}
	st := e.stats()
	if st.Counters["delivered"] != 2 || st.Messages != 0 {
		t.Fatalf("stats %+v", st)
	}
	if met := e.leaderSvc().Metrics().Snapshot(); met["signed"] != 1 || met["tls"] != 1 || met["delivered"] != 2 {
		t.Fatalf("metrics %v", met)
	}
	// The body is no longer referenced: nothing stored for it.
	_ = e.c.Node(0).View(func(r *raftstore.ReadTx) error {
		if n, _, _, _ := r.BlobStats(); n != 0 {
			t.Errorf("%d bodies left after delivery", n)
		}
		return nil
	})
}

// TestRetryThenDeliver: 451 twice, then 250: delivered on the third
// attempt; each deferral is recorded with a growing interval.
func TestRetryThenDeliver(t *testing.T) {
	e := newEnv(t, 1, nil)
	e.in.mx("remote.test", 10, "mx.remote.test", "127.0.0.2")
	s := e.in.sink("127.0.0.2")
	var tries int
	s.rcptHook = func(string) error {
		tries++
		if tries <= 2 {
			return errTemp
		}
		return nil
	}
	res := e.queue("alice@example.test", rcpts("x@remote.test"), message("m2@test", "retry"))
	_ = res
	id := e.entries()[0].ID
	for n := uint32(1); n <= 2; n++ {
		var q raftstore.QueueEntry
		clustertest.Eventually(t, 20*time.Second, fmt.Sprintf("deferral %d recorded", n), func() bool {
			q, _ = e.entry(id)
			return q.Rcpts[0].Attempts == n && q.Rcpts[0].Holder == ""
		})
		r := q.Rcpts[0]
		want := time.Duration(n) * time.Hour // RetryBase 1h, doubled
		if r.LastCode != 451 || r.LastStatus != "4.3.0" || time.Duration(r.NextAttempt-r.LastAttempt) != want {
			t.Fatalf("after deferral %d: %+v (interval %v, want %v)", n, r, time.Duration(r.NextAttempt-r.LastAttempt), want)
		}
		e.clock.Advance(want)
	}
	clustertest.Eventually(t, 20*time.Second, "delivery", func() bool { return len(s.messages()) == 1 })
	e.waitEmpty(10 * time.Second)
	if s.attempts() != 3 {
		t.Fatalf("%d attempts reached the sink, want 3", s.attempts())
	}
	if st := e.stats(); st.Counters["deferred"] != 2 || st.Counters["delivered"] != 1 || st.Counters["attempts"] != 3 {
		t.Fatalf("counters %v", st.Counters)
	}
}

// TestBounce550: a 550 for one recipient returns a DSN naming it and the
// remote reply to the sender's INBOX; the other recipient is delivered.
func TestBounce550(t *testing.T) {
	e := newEnv(t, 1, nil)
	e.in.mx("remote.test", 10, "mx.remote.test", "127.0.0.2")
	s := e.in.sink("127.0.0.2")
	s.rcptHook = func(to string) error {
		if strings.HasPrefix(to, "nobody@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "mailbox nobody unknown here"}
		}
		return nil
	}
	e.queue("alice@example.test", rcpts("nobody@remote.test", "ok@remote.test"), message("m3@test", "bounce me"),
		func(q *command.QueueAdd) { q.EnvID = "env-42"; q.Rcpts[0].ORcpt = "rfc822;NoBody@remote.test" })
	dsn := e.waitInbox("alice@example.test", 1)[0]
	e.waitEmpty(10 * time.Second)
	for _, want := range []string{"multipart/report; report-type=delivery-status", "Final-Recipient: rfc822; nobody@remote.test",
		"Action: failed", "Status: 5.1.1", "mailbox nobody unknown here", "Remote-MTA: dns; mx.remote.test",
		"Original-Envelope-Id: env-42", "Original-Recipient: rfc822;NoBody@remote.test", "text/rfc822-headers",
		"Subject: bounce me", "From: Mail Delivery System <MAILER-DAEMON@" + ourHost + ">"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q", want)
		}
	}
	if strings.Contains(dsn, "ok@remote.test") || strings.Contains(dsn, "Hello m3@test") {
		t.Errorf("DSN names the delivered recipient or returns the body without RET=FULL:\n%s", dsn)
	}
	if len(s.messages()) != 1 || len(s.messages()[0].Rcpts) != 1 {
		t.Fatalf("sink got %+v", s.messages())
	}
}

// TestDSNParameters: NOTIFY/ORCPT pass on to a DSN-capable MX; a
// receiver without DSN gets a "relayed" report on NOTIFY=SUCCESS; RET=FULL
// returns the whole message; NOTIFY=NEVER and a null sender get none.
func TestDSNParameters(t *testing.T) {
	e := newEnv(t, 1, nil)
	e.in.mx("dsn.test", 10, "mx.dsn.test", "127.0.0.2")
	e.in.mx("nodsn.test", 10, "mx.nodsn.test", "127.0.0.3")
	withDSN := e.in.sink("127.0.0.2")
	noDSN := e.in.sink("127.0.0.3")
	noDSN.srv.EnableDSN = false
	refuse := func(to string) error {
		if strings.HasPrefix(to, "gone") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "gone"}
		}
		return nil
	}
	withDSN.rcptHook, noDSN.rcptHook = refuse, refuse
	success := []string{"SUCCESS", "FAILURE"}
	e.queue("alice@example.test", []command.QueueRcpt{{Addr: "a@dsn.test", Notify: success, ORcpt: "rfc822;orig@dsn.test"}},
		message("p1@test", "passed on"), func(q *command.QueueAdd) { q.Ret, q.EnvID = "HDRS", "e1" })
	e.queue("alice@example.test", []command.QueueRcpt{{Addr: "b@nodsn.test", Notify: success}}, message("p2@test", "relayed"))
	e.queue("alice@example.test", []command.QueueRcpt{{Addr: "gone@dsn.test"}}, message("p3@test", "full return"),
		func(q *command.QueueAdd) { q.Ret = "FULL" })
	e.queue("alice@example.test", []command.QueueRcpt{{Addr: "gone@dsn.test", Notify: []string{"NEVER"}}}, message("p4@test", "never"))
	e.queue("", rcpts("gone@dsn.test"), message("p5@test", "bounce of a bounce"))
	e.waitEmpty(20 * time.Second)
	got := e.waitInbox("alice@example.test", 2)
	if len(got) != 2 {
		t.Fatalf("%d reports, want 2 (relayed, failed)", len(got))
	}
	var relayed, full string
	for _, g := range got {
		if strings.Contains(g, "Action: relayed") {
			relayed = g
		} else {
			full = g
		}
	}
	if !strings.Contains(relayed, "Final-Recipient: rfc822; b@nodsn.test") {
		t.Errorf("no relayed report for the receiver without DSN:\n%s", relayed)
	}
	if !strings.Contains(full, "message/rfc822") || !strings.Contains(full, "Hello p3@test") {
		t.Errorf("RET=FULL did not return the message:\n%s", full)
	}
	m := withDSN.messages()
	if len(m) != 1 || len(m[0].RcOpt) != 1 || len(m[0].RcOpt[0].Notify) != 2 || m[0].RcOpt[0].OriginalRecipient != "orig@dsn.test" ||
		m[0].Opts.EnvelopeID != "e1" || m[0].Opts.Return != smtp.DSNReturnHeaders {
		t.Fatalf("DSN parameters not passed on: %+v", m)
	}
}

// TestExpiry: a destination down past the maximum age bounces with 4.4.7.
func TestExpiry(t *testing.T) {
	e := newEnv(t, 1, func(c *outbound.Config) { c.MaxAge = 3 * time.Hour })
	e.in.mx("down.test", 10, "mx.down.test", "127.0.0.3") // nothing listens there
	e.queue("alice@example.test", rcpts("x@down.test"), message("m4@test", "expire me"))
	id := e.entries()[0].ID
	clustertest.Eventually(t, 20*time.Second, "first deferral", func() bool {
		q, _ := e.entry(id)
		return q.Rcpts[0].Attempts >= 1 && q.Rcpts[0].Holder == ""
	})
	e.clock.Advance(4 * time.Hour)
	dsn := e.waitInbox("alice@example.test", 1)[0]
	e.waitEmpty(10 * time.Second)
	for _, want := range []string{"Status: 4.4.7", "Action: failed", "x@down.test", "expired"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
}

// TestBadInput: unresolvable, null MX, malformed, looping, enormous and
// silent destinations bounce or retry as they should, and the queue ends
// empty without a crash.
func TestBadInput(t *testing.T) {
	e := newEnv(t, 1, func(c *outbound.Config) { c.MaxAge = 3 * time.Hour; c.CommandTimeout = 300 * time.Millisecond })
	e.in.add("nullmx.test. 60 IN MX 0 .")
	e.in.mx("self.test", 10, ourHost, "127.0.0.2")
	e.in.mx("silent.test", 10, "mx.silent.test", "127.0.0.3")
	e.in.blackhole("127.0.0.3")
	for i := 0; i < 300; i++ {
		e.in.mx("huge.test", i, fmt.Sprintf("mx%03d.huge.test", i), "127.0.0.4") // nothing listens
	}
	e.in.mx("servfail.test", 10, "mx.servfail.test", "127.0.0.2")
	e.in.setRcode("servfail.test", dns.RcodeServerFailure)
	sink := e.in.sink("127.0.0.2")

	immediate := map[string]string{"x@nowhere.test": "5.1.2", "x@nullmx.test": "5.1.10", "x@bad_domain..test": "5.1.2",
		"x@self.test": "5.4.6"}
	for rc := range immediate {
		e.queue("alice@example.test", rcpts(rc), message(rc, "bad "+rc))
	}
	got := e.waitInbox("alice@example.test", len(immediate))
	for rc, status := range immediate {
		found := false
		for _, g := range got {
			found = found || (strings.Contains(g, "Final-Recipient: rfc822; "+rc) && strings.Contains(g, "Status: "+status))
		}
		if !found {
			t.Errorf("no DSN with status %s for %s", status, rc)
		}
	}

	for _, rc := range []string{"x@huge.test", "x@silent.test", "x@servfail.test"} {
		e.queue("alice@example.test", rcpts(rc), message(rc, "retry "+rc))
	}
	clustertest.Eventually(t, 30*time.Second, "deferrals", func() bool {
		for _, q := range e.entries() {
			if q.Rcpts[0].Attempts == 0 || q.Rcpts[0].Holder != "" {
				return false
			}
		}
		return len(e.entries()) == 3
	})
	for _, q := range e.entries() {
		if q.Rcpts[0].LastCode/100 != 4 {
			t.Errorf("%s: %d %s, want a temporary failure", q.Rcpts[0].Addr, q.Rcpts[0].LastCode, q.Rcpts[0].LastReply)
		}
	}
	// The resolver recovers: the next attempt delivers.
	e.in.setRcode("servfail.test", -1)
	e.clock.Advance(time.Hour)
	clustertest.Eventually(t, 20*time.Second, "delivery after SERVFAIL", func() bool { return len(sink.messages()) == 1 })
	// The rest expire and bounce; nothing is stuck.
	e.clock.Advance(3 * time.Hour)
	e.waitEmpty(30 * time.Second)
	got = e.waitInbox("alice@example.test", len(immediate)+2)
	if len(got) != len(immediate)+2 {
		t.Fatalf("%d reports, want %d", len(got), len(immediate)+2)
	}
}

// TestStopEndsLeading: once its context ends, a leading service stops for
// good; it never opens another leadership term (which would claim and
// dispatch the queue again on its way out). Repeated, because the service
// once picked between "stopped" and "tick" at random.
func TestStopEndsLeading(t *testing.T) {
	// A ticker this fast is always ready when the session has stopped.
	e := newEnv(t, 1, func(c *outbound.Config) { c.LeaderPoll = 50 * time.Microsecond })
	e.c.WaitLeader()
	for i := 0; i < 10; i++ {
		if i > 0 {
			e.startService(0)
		}
		e.mu.Lock()
		svc := e.svcs[0]
		e.mu.Unlock()
		clustertest.Eventually(t, 10*time.Second, "leading", func() bool { return svc.Metrics().Leaderships.Load() == 1 })
		e.stopService(0)
		time.Sleep(50 * time.Millisecond)
		if n := svc.Metrics().Leaderships.Load(); n != 1 {
			t.Fatalf("round %d: %d leadership terms after stop, want 1", i, n)
		}
	}
}
