package config_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/filters/bayes"
	"github.com/raftmail/raftmail/filters/clamav/clamdtest"
	"github.com/raftmail/raftmail/filters/config"
	"github.com/raftmail/raftmail/filters/resolver/dnstest"
	"github.com/raftmail/raftmail/frontends/smtp"
	"github.com/raftmail/raftmail/raftstore"
)

const alice = "alice@example.test"

// e2e is a 3-node cluster, a DNS server on 127.0.0.1 and an in-process
// MX frontend running the configured pipeline.
type e2e struct {
	t    *testing.T
	c    *clustertest.Cluster
	dns  *dnstest.Server
	key  ed25519.PrivateKey
	srv  *smtp.Server
	addr string
	cfg  *config.Config
	deps config.Deps
}

func newE2E(t *testing.T, clamdAddr string) *e2e {
	t.Helper()
	e := &e2e{t: t, c: clustertest.New(t, 3), dns: dnstest.Start(t)}
	e.c.AddAccount(alice, "pw")
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	e.key = key
	e.dns.Add(t,
		"2.0.0.127.bl.test. 300 IN A 127.0.0.2",
		`reject.test. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`sel._domainkey.reject.test. 300 IN TXT "v=DKIM1; k=ed25519; p=`+base64.StdEncoding.EncodeToString(pub)+`"`,
		`_dmarc.reject.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`elsewhere.test. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"`)
	var nodes []string
	for i := 0; i < 3; i++ {
		nodes = append(nodes, e.c.Node(i).APIURL())
	}
	model, err := bayes.NewRemote(bayes.RemoteConfig{Nodes: nodes})
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = config.Default()
	e.cfg.Resolver = e.dns.Addr
	e.cfg.Checks.DNSBL.Zones = []config.Zone{{Zone: "bl.test", Score: 5, Reject: true, Codes: map[string]string{"127.0.0.2": "listed"}}}
	e.cfg.Checks.ClamAV.Addr = clamdAddr
	e.deps = config.Deps{Logger: quiet, Hostname: "mx.test", Bayes: model, ClamdProbe: func(string) bool { return false }}
	p, names, err := e.cfg.Build("mx", e.deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mx runs %v", names)
	committer, err := smtp.NewNodesCommitter(smtp.NodesConfig{Nodes: nodes, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(committer.Close)
	e.srv, err = smtp.New(smtp.Config{Profile: smtp.ProfileMX, Hostname: "mx.test", MaxMessageBytes: 4 << 20,
		CommitTimeout: 10 * time.Second, Logger: quiet}, committer, p)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = e.srv.Serve(ln) }()
	t.Cleanup(func() { e.srv.Close(); wg.Wait() })
	e.addr = ln.Addr().String()
	return e
}

// dial connects from a chosen loopback source address.
func (e *e2e) dial(from string) (*gosmtp.Client, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", e.addr)
	if err != nil {
		return nil, err
	}
	cl := gosmtp.NewClient(conn)
	if err := cl.Hello("client.test"); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

func (e *e2e) send(mailFrom string, raw []byte) error {
	e.t.Helper()
	cl, err := e.dial("127.0.0.1")
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	return cl.SendMail(mailFrom, []string{alice}, bytes.NewReader(raw))
}

func (e *e2e) sign(domain, msg string) []byte {
	var out bytes.Buffer
	if err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: "sel", Signer: e.key}); err != nil {
		e.t.Fatal(err)
	}
	return out.Bytes()
}

// stored returns node i's copies of alice's messages whose body contains
// marker, with their mailbox names.
func (e *e2e) stored(i int, marker string) (boxes []string, bodies [][]byte) {
	e.t.Helper()
	err := e.c.Node(i).View(func(r *raftstore.ReadTx) error {
		mbs, err := r.Mailboxes(alice)
		if err != nil {
			return err
		}
		for _, mb := range mbs {
			var ids [][32]byte
			_ = r.Messages(mb.ID, nil, func(m *raftstore.Message) error { ids = append(ids, m.BlobID); return nil })
			for _, id := range ids {
				b, err := r.Body(id)
				if err != nil {
					return err
				}
				if bytes.Contains(b, []byte(marker)) {
					boxes, bodies = append(boxes, mb.Name), append(bodies, b)
				}
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return boxes, bodies
}

func wantSMTP(t *testing.T, err error, code int, enh string) {
	t.Helper()
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) || se.Code != code || (enh != "" && se.EnhancedCode != parseEnh(enh)) {
		t.Fatalf("got %v, want %d %s", err, code, enh)
	}
}

func parseEnh(s string) gosmtp.EnhancedCode {
	var e gosmtp.EnhancedCode
	parts := strings.Split(s, ".")
	for i := range e {
		e[i] = int(parts[i][0] - '0')
	}
	return e
}

func mailMsg(from, id, body string) string {
	return "From: <" + from + ">\r\nTo: <" + alice + ">\r\nSubject: " + id + "\r\nMessage-ID: <" + id + "@test>\r\n\r\n" + body + "\r\n"
}

// TestE2E drives the MX frontend with the full default pipeline (DNSBL,
// SPF/DKIM/DMARC, rules, Bayes over the node API) against a 3-node
// cluster.
func TestE2E(t *testing.T) {
	e := newE2E(t, "")

	t.Run("listed IP refused at connect", func(t *testing.T) {
		_, err := e.dial("127.0.0.2")
		wantSMTP(t, err, 554, "5.7.1")
	})

	t.Run("broken DKIM signature from a p=reject domain", func(t *testing.T) {
		raw := e.sign("reject.test", mailMsg("a@reject.test", "dmarc-fail", "original text"))
		raw = bytes.Replace(raw, []byte("original text"), []byte("tampered text"), 1)
		wantSMTP(t, e.send("b@elsewhere.test", raw), 550, "5.7.1")
		if boxes, _ := e.stored(0, "tampered text"); len(boxes) != 0 {
			t.Fatalf("stored in %v", boxes)
		}
	})

	t.Run("spam-scored message to Junk with headers", func(t *testing.T) {
		gtube := "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
		if err := e.send("x@reject.test", []byte(mailMsg("x@reject.test", "gtube", gtube))); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			var boxes []string
			var bodies [][]byte
			clustertest.Eventually(t, 10*time.Second, "stored on every node", func() bool {
				boxes, bodies = e.stored(i, "gtube@test")
				return len(boxes) == 1
			})
			h := string(bodies[0][:bytes.Index(bodies[0], []byte("\r\n\r\n"))])
			if boxes[0] != "Junk" || !strings.Contains(h, "X-Spam-Status: Yes, score=") ||
				!strings.Contains(h, "X-Spam-Score: ") || !strings.Contains(h, "rules=") {
				t.Fatalf("node %d: mailbox %s, header:\n%s", i+1, boxes[0], h)
			}
		}
	})

	t.Run("clean message to INBOX with Authentication-Results", func(t *testing.T) {
		raw := e.sign("reject.test", mailMsg("a@reject.test", "clean", "Minutes of the meeting attached."))
		if err := e.send("a@reject.test", raw); err != nil {
			t.Fatal(err)
		}
		boxes, bodies := e.stored(0, "clean@test")
		if len(boxes) != 1 || boxes[0] != "INBOX" {
			t.Fatalf("stored in %v", boxes)
		}
		h := string(bodies[0])
		for _, want := range []string{"Authentication-Results: mx.test; spf=pass", "dkim=pass", "dmarc=pass", "X-Spam-Status: No"} {
			if !strings.Contains(h, want) {
				t.Fatalf("lacks %q:\n%s", want, h)
			}
		}
	})

	t.Run("swaks", func(t *testing.T) {
		swaks, err := exec.LookPath("swaks")
		if err != nil {
			t.Skip("swaks not installed (CI installs it)")
		}
		out, err := exec.Command(swaks, "--server", e.addr, "--helo", "swaks.test", "--from", "s@elsewhere.test", "--to", alice,
			"--header", "Message-Id: <swaks-gtube@test>", "--body", "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X",
			"--timeout", "30").CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("250 2.0.0")) {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		if boxes, _ := e.stored(0, "swaks-gtube@test"); len(boxes) != 1 || boxes[0] != "Junk" {
			t.Fatalf("swaks message in %v", boxes)
		}
	})

	t.Run("reload swaps the pipeline without dropping connections", func(t *testing.T) {
		open, err := e.dial("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		defer open.Close()
		deny, _ := filters.ParsePrefixes([]string{"127.0.0.1/32"})
		deps := e.deps
		deps.Cheap = []filters.Configured{filters.With(&filters.DenyList{Networks: deny}, filters.Policy{})}
		p, _, err := e.cfg.Build("mx", deps)
		if err != nil {
			t.Fatal(err)
		}
		e.srv.SetPipeline(p)
		_, err = e.dial("127.0.0.1")
		wantSMTP(t, err, 554, "5.7.1")
		if err := open.SendMail("a@reject.test", []string{alice}, strings.NewReader(mailMsg("a@reject.test", "during-reload", "still served"))); err != nil {
			t.Fatalf("connection opened before the reload: %v", err)
		}
	})
}

// TestE2EVirus: the EICAR string is refused at DATA with 554 5.7.1 by a
// real clamd, and nothing is stored.
func TestE2EVirus(t *testing.T) {
	cd := clamdtest.Start(t)
	e := newE2E(t, "unix:"+cd.Socket)
	raw := []byte("From: <v@reject.test>\r\nTo: <" + alice + ">\r\nSubject: eicar\r\nMessage-ID: <eicar@test>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee file\r\n--B\r\n" +
		"Content-Type: application/octet-stream; name=eicar.com\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString([]byte(clamdtest.EICAR)) + "\r\n--B--\r\n")
	wantSMTP(t, e.send("v@reject.test", raw), 554, "5.7.1")
	e.c.WaitConverged(10 * time.Second)
	for i := 0; i < 3; i++ {
		if boxes, _ := e.stored(i, "eicar@test"); len(boxes) != 0 {
			t.Fatalf("node %d stored the virus in %v", i+1, boxes)
		}
	}
}
