package auth_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/filters/auth"
	"github.com/raftmail/raftmail/filters/resolver"
	"github.com/raftmail/raftmail/filters/resolver/dnstest"
)

// Domains of the test DNS: reject.test and quar.test publish DMARC
// reject/quarantine and SPF for 127.0.0.1; nopolicy.test has no DMARC.
func zone(t *testing.T, srv *dnstest.Server, pub ed25519.PublicKey) {
	key := base64.StdEncoding.EncodeToString(pub)
	for _, d := range []string{"reject.test", "quar.test", "nopolicy.test"} {
		srv.Add(t, d+`. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
			`sel._domainkey.`+d+`. 300 IN TXT "v=DKIM1; k=ed25519; p=`+key+`"`)
	}
	srv.Add(t, `_dmarc.reject.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.quar.test. 300 IN TXT "v=DMARC1; p=quarantine"`,
		`elsewhere.test. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"`)
}

func sign(t *testing.T, key ed25519.PrivateKey, domain, msg string) []byte {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: "sel", Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func msg(from string) string {
	return "From: Sender <" + from + ">\r\nTo: alice@example.test\r\nSubject: hello\r\nMessage-ID: <1@x>\r\n\r\nHello there.\r\n"
}

// run passes one transaction through a pipeline of the check.
func run(t *testing.T, ck *auth.Check, mailFrom string, raw []byte) filters.Verdict {
	t.Helper()
	p := filters.New(filters.Config{Timeout: 3 * time.Second, BodyTimeout: 3 * time.Second}, filters.With(ck, filters.Policy{}))
	s, v := p.Connect(context.Background(), &filters.ConnInfo{IP: netip.MustParseAddr("127.0.0.1")})
	defer s.Close()
	if v.Action != filters.Accept {
		t.Fatalf("connect: %+v", v)
	}
	s.Helo(context.Background(), "mx.sender.test")
	if v := s.Mail(context.Background(), filters.Mail{From: mailFrom}); v.Action != filters.Accept {
		return v
	}
	return s.Data(context.Background(), &filters.Message{From: mailFrom, Body: filters.BytesBody(raw)})
}

func ar(v filters.Verdict) string {
	for _, h := range v.Headers {
		if h.Key == "Authentication-Results" {
			return h.Value
		}
	}
	return ""
}

// TestAuth runs SPF, DKIM and DMARC against a real DNS server on
// 127.0.0.1.
func TestAuth(t *testing.T) {
	srv := dnstest.Start(t)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	zone(t, srv, pub)
	res, err := resolver.New(resolver.Config{Server: srv.Addr, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ck, err := auth.New(auth.Config{Resolver: res, Hostname: "mx.raftmail.test", SPF: true, DKIM: true, DMARC: true})
	if err != nil {
		t.Fatal(err)
	}
	good := sign(t, key, "reject.test", msg("a@reject.test"))
	broken := bytes.Replace(sign(t, key, "reject.test", msg("a@reject.test")), []byte("Hello there."), []byte("Hello tampered."), 1)
	quar := bytes.Replace(sign(t, key, "quar.test", msg("a@quar.test")), []byte("Hello there."), []byte("Hello tampered."), 1)
	invalidSig := []byte("DKIM-Signature: v=1; a=rsa-sha256; d=; s=\x01; bh=!!!; b=???\r\n" + msg("a@nopolicy.test"))
	for _, tc := range []struct {
		name     string
		mailFrom string
		raw      []byte
		action   filters.Action
		want     []string
	}{
		{"all pass", "a@reject.test", good, filters.Accept, []string{"mx.raftmail.test", "spf=pass", "dkim=pass", "header.d=reject.test", "dmarc=pass"}},
		{"dkim pass aligned, spf fail", "b@elsewhere.test", good, filters.Accept, []string{"spf=fail", "dkim=pass", "dmarc=pass"}},
		{"broken signature, p=reject", "b@elsewhere.test", broken, filters.Reject, []string{"dkim=fail", "dmarc=fail"}},
		{"broken signature, p=quarantine", "b@elsewhere.test", quar, filters.Tag, []string{"dmarc=fail"}},
		{"no dmarc record", "b@nopolicy.test", []byte(msg("a@nopolicy.test")), filters.Accept, []string{"spf=pass", "dkim=none", "dmarc=none"}},
		{"invalid dkim header", "b@nopolicy.test", invalidSig, filters.Accept, []string{"dkim=permerror"}},
		{"no from header", "b@nopolicy.test", []byte("Subject: x\r\n\r\nbody\r\n"), filters.Accept, []string{"dmarc=permerror"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := run(t, ck, tc.mailFrom, tc.raw)
			if v.Action != tc.action {
				t.Fatalf("action %v, want %v (err %v, AR %q)", v.Action, tc.action, v.Err, ar(v))
			}
			for _, w := range tc.want {
				if !strings.Contains(ar(v), w) {
					t.Errorf("Authentication-Results %q lacks %q", ar(v), w)
				}
			}
		})
	}
}

// TestAuthHangingDNS: with a DNS server that never answers, the
// transaction still gets a verdict within the timeouts.
func TestAuthHangingDNS(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Hang.Store(true)
	res, _ := resolver.New(resolver.Config{Server: srv.Addr, Timeout: 200 * time.Millisecond})
	ck, _ := auth.New(auth.Config{Resolver: res, SPF: true, DKIM: true, DMARC: true})
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	start := time.Now()
	v := run(t, ck, "a@reject.test", sign(t, key, "reject.test", msg("a@reject.test")))
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("verdict after %v", d)
	}
	t.Logf("verdict %v, AR %q", v.Action, ar(v))
	if !strings.Contains(ar(v), "temperror") {
		t.Errorf("AR %q lacks temperror", ar(v))
	}
}
