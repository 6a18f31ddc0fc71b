//go:build compose

package compose

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const project = "raftmailct"

var (
	root     = filepath.Join("..", "..")
	tlsDir   = filepath.Join(root, "deploy", "compose", "tls")
	nodes    = []string{"n1", "n2", "n3"}
	metrics  = map[string]string{"n1": "127.0.0.1:29101", "n2": "127.0.0.1:29102", "n3": "127.0.0.1:29103"}
	imapAddr = map[string]string{"n1": "127.0.0.1:21431", "n2": "127.0.0.1:21432", "n3": "127.0.0.1:21433"}
	feHTTP   = []string{"127.0.0.1:29111", "127.0.0.1:29112", "127.0.0.1:29113"}
)

// compose runs docker compose (v2 plugin) or docker-compose (v1).
func compose(t *testing.T, args ...string) (string, error) {
	t.Helper()
	base := []string{"-p", project, "-f", filepath.Join(root, "docker-compose.yml")}
	var cmd *exec.Cmd
	if exec.Command("docker", "compose", "version").Run() == nil {
		cmd = exec.Command("docker", append(append([]string{"compose"}, base...), args...)...)
	} else {
		cmd = exec.Command("docker-compose", append(base, args...)...)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustCompose(t *testing.T, args ...string) string {
	t.Helper()
	out, err := compose(t, args...)
	if err != nil {
		t.Fatalf("compose %v: %v\n%s", args, err, out)
	}
	return out
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func get(url string) (int, string) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func caPool(t *testing.T) *x509.CertPool {
	b, err := os.ReadFile(filepath.Join(tlsDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(b)
	return p
}

func TestComposeStack(t *testing.T) {
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skip("no Docker engine answers (docker info failed)")
	}
	bin := filepath.Join(root, "bin", "raftmail-static")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s missing: run make image", bin)
	}
	_, _ = compose(t, "down", "-v", "--remove-orphans")
	_ = os.RemoveAll(tlsDir)
	out, err := exec.Command(bin, "admin", "certs", "--out", tlsDir, "--node", "n1", "--node", "n2", "--node", "n3",
		"--frontend", "mx1", "--frontend", "mx2", "--frontend", "sub1", "--admin", "admin").CombinedOutput()
	if err != nil {
		t.Fatalf("certs: %v\n%s", err, out)
	}
	// The containers run as nobody; these test keys must be readable.
	keys, _ := filepath.Glob(filepath.Join(tlsDir, "*.pem"))
	for _, k := range keys {
		_ = os.Chmod(k, 0o644)
	}
	_ = os.Chmod(tlsDir, 0o755)
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := compose(t, "logs", "--tail", "40")
			t.Logf("--- compose logs ---\n%s", logs)
		}
		if out, err := compose(t, "down", "-v", "--remove-orphans"); err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	start := time.Now()
	mustCompose(t, "up", "-d")
	for _, a := range feHTTP {
		eventually(t, 90*time.Second, a+" ready", func() bool { code, _ := get("http://" + a + "/readyz"); return code == 200 })
	}
	t.Logf("stack up and ready in %v", time.Since(start).Round(time.Millisecond))
	admin := func(args ...string) {
		t.Helper()
		full := append([]string{"exec", "-T", "n1", "/raftmail", "admin", "--api", "https://n1:8080",
			"--cluster-ca", "/tls/ca.pem", "--cluster-cert", "/tls/admin.pem", "--cluster-key", "/tls/admin-key.pem"}, args...)
		mustCompose(t, full...)
	}
	admin("domain", "add", "example.test")
	admin("user", "add", "alice@example.test", "--password", "secret")

	deliverAll := func(round string) {
		t.Helper()
		send(t, "127.0.0.1:22525", "", round+" via mx1")
		send(t, "127.0.0.1:22526", "", round+" via mx2")
		send(t, "127.0.0.1:22587", "sub1", round+" via sub1")
	}
	deliverAll("before")

	leader := ""
	eventually(t, 30*time.Second, "the leader in /metrics", func() bool {
		for _, n := range nodes {
			if _, body := get("http://" + metrics[n] + "/metrics"); strings.Contains(body, `raftmail_raft_state{state="Leader"} 1`) {
				leader = n
				return true
			}
		}
		return false
	})
	t.Logf("killing the leader %s", leader)
	mustCompose(t, "kill", leader)
	killed := time.Now()
	for _, a := range feHTTP {
		eventually(t, 60*time.Second, a+" ready after the leader died", func() bool {
			code, _ := get("http://" + a + "/readyz")
			return code == 200
		})
	}
	deliverAll("after")
	t.Logf("delivered through all frontends %v after the kill", time.Since(killed).Round(time.Millisecond))

	reader := nodes[0]
	if reader == leader {
		reader = nodes[1]
	}
	var subjects []string
	eventually(t, 30*time.Second, "6 messages over IMAP on "+reader, func() bool {
		subjects = readInbox(t, reader)
		return len(subjects) == 6
	})
	for _, want := range []string{"before via mx1", "before via mx2", "before via sub1", "after via mx1", "after via mx2", "after via sub1"} {
		found := false
		for _, s := range subjects {
			found = found || s == want
		}
		if !found {
			t.Errorf("subject %q missing from %v", want, subjects)
		}
	}
	t.Logf("whole compose test: %v", time.Since(start).Round(time.Second))
}

// send delivers one message; with a TLS server name it is the submission
// frontend: STARTTLS and AUTH PLAIN as alice.
func send(t *testing.T, addr, tlsName, subject string) {
	t.Helper()
	var c *smtp.Client
	var err error
	if tlsName == "" {
		c, err = smtp.Dial(addr)
	} else {
		c, err = smtp.DialStartTLS(addr, &tls.Config{RootCAs: caPool(t), ServerName: tlsName})
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	if tlsName != "" {
		if err := c.Auth(sasl.NewPlainClient("", "alice@example.test", "secret")); err != nil {
			t.Fatalf("auth at %s: %v", addr, err)
		}
	}
	from := "bob@remote.test"
	if tlsName != "" {
		from = "alice@example.test"
	}
	msg := fmt.Sprintf("From: %s\r\nTo: alice@example.test\r\nSubject: %s\r\nMessage-ID: <%d@test>\r\n\r\nhello\r\n",
		from, subject, time.Now().UnixNano())
	if err := c.SendMail(from, []string{"alice@example.test"}, strings.NewReader(msg)); err != nil {
		t.Fatalf("send %q to %s: %v", subject, addr, err)
	}
}

// readInbox lists the subjects in alice's INBOX on a node over IMAP
// (STARTTLS, the node's certificate from the cluster CA).
func readInbox(t *testing.T, node string) []string {
	c, err := imapclient.DialStartTLS(imapAddr[node], &imapclient.Options{TLSConfig: &tls.Config{RootCAs: caPool(t), ServerName: node}})
	if err != nil {
		t.Logf("imap %s: %v", node, err)
		return nil
	}
	defer c.Close()
	if err := c.Login("alice@example.test", "secret").Wait(); err != nil {
		t.Logf("imap login: %v", err)
		return nil
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		return nil
	}
	var all imap.SeqSet
	all.AddRange(1, 0) // 1:*
	msgs, err := c.Fetch(all, &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range msgs {
		if m.Envelope != nil {
			out = append(out, m.Envelope.Subject)
		}
	}
	return out
}
