package config_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/filters/bayes"
	"github.com/raftmail/raftmail/filters/config"
	"github.com/raftmail/raftmail/filters/mimetext"
	"github.com/raftmail/raftmail/filters/resolver/dnstest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestExampleConfig loads docs/filters.example.toml (so the documented
// example cannot rot) and builds both profiles from it.
func TestExampleConfig(t *testing.T) {
	c, err := config.Load("../../docs/filters.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	for profile, want := range map[string]string{"mx": "dnsbl,auth,rules,bayes,clamav", "submission": "clamav"} {
		_, names, err := c.Build(profile, config.Deps{Logger: quiet, Bayes: bayes.NewMemory()})
		if err != nil {
			t.Fatalf("%s: %v", profile, err)
		}
		if got := strings.Join(names, ","); got != want {
			t.Errorf("%s runs %s, want %s", profile, got, want)
		}
	}
}

func TestDefaultConfig(t *testing.T) {
	c := config.Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		deps  config.Deps
		setup func(*config.Config)
		want  string
	}{
		{"no resolver, no clamd", config.Deps{Bayes: bayes.NewMemory(), ClamdProbe: func(string) bool { return false }}, nil, "rules,bayes"},
		{"clamd on the Debian socket", config.Deps{Bayes: bayes.NewMemory(), ClamdProbe: func(string) bool { return true }}, nil, "rules,bayes,clamav"},
		{"resolver set", config.Deps{ClamdProbe: func(string) bool { return false }}, func(c *config.Config) { c.Resolver = "127.0.0.1:53" }, "auth,rules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			if tc.setup != nil {
				tc.setup(c)
			}
			tc.deps.Logger = quiet
			_, names, err := c.Build("mx", tc.deps)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(names, ","); got != tc.want {
				t.Fatalf("runs %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"unknown key", "[profiles.mx]\nchecks = []\nbogus = 1\n", "unknown keys: profiles.mx.bogus"},
		{"unknown check", "[profiles.mx]\nchecks = [\"spamd\"]\n", "unknown check"},
		{"bad policy", "[profiles.mx]\nchecks = []\n[checks.rules]\non_hit = \"explode\"\n", "on_hit"},
		{"bad duration", "timeout = \"soon\"\n[profiles.mx]\nchecks = []\n", "soon"},
		{"thresholds", "[profiles.mx]\ntag_score = 5.0\nreject_score = 2.0\n", "below tag_score"},
		{"no profiles", "resolver = \"\"\n", "no [profiles]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.in), "t.toml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// nested builds a multipart nested depth levels deep.
func nested(depth int) string {
	var b strings.Builder
	b.WriteString("From: a@x.test\r\nSubject: deep\r\nMIME-Version: 1.0\r\n")
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ninnermost viagra text\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.String()
}

// zipBomb is a mail with a base64 zip attachment that would expand to
// gigabytes: a zip of one highly compressible entry declared huge. The
// filters never decompress attachments, so it is just bytes to them.
func zipBomb() string {
	// A stored-deflate stream of zeros: 1 MiB of 0x00 deflates to ~1 KB;
	// 4,096 copies of that block declared as one 4 GiB entry.
	block := bytes.Repeat([]byte{0x63, 0x60, 0x18, 0x05, 0xa3, 0x60, 0x14}, 4096)
	var b strings.Builder
	b.WriteString("From: a@x.test\r\nSubject: invoice\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=Z\r\n\r\n--Z\r\nContent-Type: text/plain\r\n\r\nsee zip\r\n--Z\r\nContent-Type: application/zip; name=bomb.zip\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	b.WriteString("UEsDBBQAAAAIAAAAIQAAAAAA/////////////wgAAABib21iLmJpbg==\r\n")
	enc := make([]byte, 0, len(block)*2)
	enc = fmt.Appendf(enc, "%x", block)
	b.Write(enc)
	b.WriteString("\r\n--Z--\r\n")
	return b.String()
}

// TestBadInput runs the mx profile (rules, bayes, SPF/DKIM/DMARC against
// a DNS server that never answers) over hostile messages: each gets a
// verdict within the time limit, none crashes or hangs.
func TestBadInput(t *testing.T) {
	dns := dnstest.Start(t)
	dns.Hang.Store(true)
	c := config.Default()
	c.Resolver, c.DNSTimeout, c.BodyTimeout = dns.Addr, config.Duration{Duration: 200 * time.Millisecond}, config.Duration{Duration: 2 * time.Second}
	c.Checks.Auth.OnError = "accept"
	p, names, err := c.Build("mx", config.Deps{Logger: quiet, Bayes: bayes.NewMemory(), ClamdProbe: func(string) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "auth,rules,bayes" {
		t.Fatalf("checks %v", names)
	}
	for _, tc := range []struct{ name, raw string }{
		{"malformed mime", "From: a@x.test\r\nContent-Type: multipart/mixed; boundary=\"unterminated\r\nContent-Transfer-Encoding: base64\r\n\r\n--unterminated\r\n\x00\xff\xfe garbage ===\r\n"},
		{"broken header", "this is not a header\r\n\r\nbody"},
		{"no header end", "From: a@x.test\r\nSubject: nothing after"},
		{"50-level nested multipart", nested(50)},
		{"zip bomb attachment", zipBomb()},
		{"invalid dkim headers", "DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=s; h=from; bh=AAAA; b=!!!!\r\nDKIM-Signature: garbage\r\nDKIM-Signature: v=9; d=\r\nFrom: a@x.test\r\n\r\nhi\r\n"},
		{"huge header line", "From: a@x.test\r\nSubject: " + strings.Repeat("A", 200_000) + "\r\n\r\nx\r\n"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			s, _ := p.Connect(context.Background(), &filters.ConnInfo{IP: netip.MustParseAddr("192.0.2.9")})
			defer s.Close()
			s.Helo(context.Background(), "client.test")
			s.Mail(context.Background(), filters.Mail{From: "a@x.test"})
			v := s.Data(context.Background(), &filters.Message{From: "a@x.test", Body: filters.BytesBody(tc.raw)})
			if d := time.Since(start); d > 20*time.Second {
				t.Fatalf("verdict after %v", d)
			}
			t.Logf("%s: %v score %.2f in %v", tc.name, v.Action, v.Score, time.Since(start).Round(time.Millisecond))
		})
	}
	// The nesting is bounded: the 50-level message's text is not reached
	// past the depth limit, and the parse says so.
	if txt := mimetext.Parse([]byte(nested(50)), mimetext.Limits{}); !txt.Malformed || txt.Depth > 10 {
		t.Fatalf("50-level parse: malformed %v depth %d", txt.Malformed, txt.Depth)
	}
}
