package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
)

// opsProc is one process of the operations test.
type opsProc struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
}

func startProc(t *testing.T, name, logPath string, args ...string) *opsProc {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &opsProc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(string(b), "\n")
			if len(lines) > 30 {
				lines = lines[len(lines)-30:]
			}
			t.Logf("--- %s ---\n%s", name, strings.Join(lines, "\n"))
		}
	})
	return p
}

func (p *opsProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// scrapeURL fetches and parses a /metrics page; value sums the samples of
// name whose labels include want.
func scrapeURL(t *testing.T, url string) func(name string, want map[string]string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return func(name string, want map[string]string) float64 {
		var sum float64
		f, ok := fams[name]
		if !ok {
			t.Errorf("%s: no series %s", url, name)
			return 0
		}
	next:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
		return sum
	}
}

// metricNames returns the sample names of a /metrics page, one per line
// after a newline.
func metricNames(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sb strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		if line != "" && line[0] != '#' {
			sb.WriteString("\n" + strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0])
		}
	}
	return sb.String()
}

func httpStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestOpsTLSClusterWithConfigFiles follows docs/operations.md's quick
// start with real processes: certificates from "admin certs", three nodes
// and an MX frontend from TOML files over mutual TLS, accounts through the
// admin CLI with its certificate, deliveries by SMTP and LMTP that show in
// /metrics, a backup, and readiness that flips when quorum is lost.
func TestOpsTLSClusterWithConfigFiles(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	var out strings.Builder
	if err := runCerts([]string{"--out", tlsDir, "--node", "n1=127.0.0.1", "--node", "n2=127.0.0.1",
		"--node", "n3=127.0.0.1", "--frontend", "mx1=127.0.0.1", "--admin", "admin"}, &out); err != nil {
		t.Fatalf("admin certs: %v", err)
	}
	ca := filepath.Join(tlsDir, "ca.pem")
	type addrs struct{ raft, api, lmtp, metrics string }
	nodes := map[string]addrs{}
	var apis []string
	for _, id := range []string{"n1", "n2", "n3"} {
		a := addrs{clustertest.FreeAddr(t), clustertest.FreeAddr(t), clustertest.FreeAddr(t), clustertest.FreeAddr(t)}
		nodes[id] = a
		apis = append(apis, fmt.Sprintf("%q", "https://"+a.api))
	}
	procs := map[string]*opsProc{}
	for i, id := range []string{"n1", "n2", "n3"} {
		a := nodes[id]
		membership := "bootstrap = true"
		if i > 0 {
			membership = fmt.Sprintf("join = [%q]", "https://"+nodes["n1"].api)
		}
		conf := fmt.Sprintf(`id = %q
data = %q
raft = %q
http = %q
lmtp = %q
metrics = %q
%s
cluster-ca = %q
cluster-cert = %q
cluster-key = %q
commit-timeout = "10s"
`, id, filepath.Join(dir, id), a.raft, a.api, a.lmtp, a.metrics, membership, ca,
			filepath.Join(tlsDir, id+".pem"), filepath.Join(tlsDir, id+"-key.pem"))
		path := filepath.Join(dir, id+".toml")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		procs[id] = startProc(t, id, filepath.Join(dir, id+".log"), "node", "--config", path)
	}
	adminTLS, err := cluster.LoadMutualTLS(ca, filepath.Join(tlsDir, "admin.pem"), filepath.Join(tlsDir, "admin-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	client := cluster.NewClientTLS("", adminTLS)
	defer client.Close()
	clustertest.Eventually(t, 60*time.Second, "three TLS members with a leader", func() bool {
		for _, a := range nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := client.Status(ctx, "https://"+a.api)
			cancel()
			if err != nil || st.LeaderAPI == "" || len(st.Servers) != 3 {
				return false
			}
		}
		return true
	})
	admin := func(args ...string) string {
		t.Helper()
		var out strings.Builder
		full := append([]string{"--api", "https://" + nodes["n2"].api, "--cluster-ca", ca,
			"--cluster-cert", filepath.Join(tlsDir, "admin.pem"), "--cluster-key", filepath.Join(tlsDir, "admin-key.pem")}, args...)
		if err := runAdmin(full, &out); err != nil {
			t.Fatalf("admin %v: %v", args, err)
		}
		return out.String()
	}
	admin("domain", "add", "example.test")
	admin("user", "add", "alice@example.test", "--password", "pw")

	smtpAddr, feHTTP := clustertest.FreeAddr(t), clustertest.FreeAddr(t)
	feConf := fmt.Sprintf(`profile = "mx"
listen = %q
http = %q
hostname = "localhost"
nodes = [%s]
cluster-ca = %q
cluster-cert = %q
cluster-key = %q
commit-timeout = "10s"
`, smtpAddr, feHTTP, strings.Join(apis, ", "), ca, filepath.Join(tlsDir, "mx1.pem"), filepath.Join(tlsDir, "mx1-key.pem"))
	fePath := filepath.Join(dir, "mx1.toml")
	if err := os.WriteFile(fePath, []byte(feConf), 0o600); err != nil {
		t.Fatal(err)
	}
	startProc(t, "mx1", filepath.Join(dir, "mx1.log"), "frontend", "--config", fePath)
	clustertest.Eventually(t, 30*time.Second, "frontend ready", func() bool { return httpStatus("http://"+feHTTP+"/readyz") == 200 })

	send := func(addr string, lmtp bool, subject string) {
		t.Helper()
		var c *smtp.Client
		var err error
		if lmtp {
			conn, derr := net.Dial("tcp", addr)
			if derr != nil {
				t.Fatal(derr)
			}
			c = smtp.NewClientLMTP(conn)
		} else {
			c, err = smtp.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
		}
		defer c.Close()
		msg := "From: bob@remote.test\r\nTo: alice@example.test\r\nSubject: " + subject + "\r\n\r\nhello\r\n"
		if err := c.SendMail("bob@remote.test", []string{"alice@example.test"}, strings.NewReader(msg)); err != nil {
			t.Fatalf("send %s to %s: %v", subject, addr, err)
		}
	}
	send(smtpAddr, false, "via smtp")
	send(nodes["n2"].lmtp, true, "via lmtp")

	fe := scrapeURL(t, "http://"+feHTTP+"/metrics")
	if v := fe("raftmail_deliveries_total", map[string]string{"proto": "smtp", "code": "250"}); v < 1 {
		t.Errorf("frontend deliveries{smtp,250} = %v", v)
	}
	if v := fe("raftmail_sessions_total", map[string]string{"proto": "smtp"}); v < 1 {
		t.Errorf("frontend sessions{smtp} = %v", v)
	}
	if v := fe("raftmail_filter_verdicts_total", map[string]string{"check": "size", "verdict": "accept"}); v < 1 {
		t.Errorf("frontend filter verdicts{size,accept} = %v", v)
	}
	n2 := scrapeURL(t, "http://"+nodes["n2"].metrics+"/metrics")
	if v := n2("raftmail_deliveries_total", map[string]string{"proto": "lmtp", "code": "250"}); v < 1 {
		t.Errorf("node deliveries{lmtp,250} = %v", v)
	}
	if v := n2("raftmail_raft_applied_index", nil); v < 5 {
		t.Errorf("applied index %v", v)
	}
	if v := n2("raftmail_raft_voters", nil); v != 3 {
		t.Errorf("voters %v", v)
	}
	n2("raftmail_file_bytes", map[string]string{"file": "state.db"})
	n2("raftmail_commit_duration_seconds", nil)

	// One log line per SMTP transaction: its ID, verdict, scores and index.
	feLog, _ := os.ReadFile(filepath.Join(dir, "mx1.log"))
	line := ""
	for _, l := range strings.Split(string(feLog), "\n") {
		if strings.Contains(l, `msg="smtp transaction"`) && strings.Contains(l, "code=250") {
			line = l
		}
	}
	for _, want := range []string{"tx=", "delivery_id=", "verdict=accept", "score=", "raft_index="} {
		if !strings.Contains(line, want) {
			t.Errorf("smtp transaction log line lacks %s: %q", want, line)
		}
	}

	// Every series the sample Grafana dashboard plots exists.
	dash, err := os.ReadFile(filepath.Join("..", "..", "docs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	pages := metricNames(t, "http://"+feHTTP+"/metrics") + metricNames(t, "http://"+nodes["n2"].metrics+"/metrics")
	for _, name := range regexp.MustCompile(`raftmail_[a-z_]+`).FindAllString(string(dash), -1) {
		if !strings.Contains(pages, "\n"+name) {
			t.Errorf("docs/grafana-dashboard.json plots %s, which no node or frontend exports", name)
		}
	}

	backup := filepath.Join(dir, "backup.zst")
	if got := admin("backup", "--out", backup); !strings.Contains(got, "applied index") {
		t.Fatalf("backup said %q", got)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Size() == 0 {
		t.Fatalf("backup file: %v", err)
	}
	// A client without a certificate of the cluster CA is refused.
	if _, err := http.Get("https://" + nodes["n1"].api + "/status"); err == nil {
		t.Error("plain https call without a certificate succeeded")
	}

	// Lose quorum: the frontend can reach no node that can commit.
	procs["n1"].kill()
	procs["n3"].kill()
	clustertest.Eventually(t, 30*time.Second, "frontend not ready without quorum", func() bool {
		return httpStatus("http://"+feHTTP+"/readyz") == 503
	})
	if httpStatus("http://"+feHTTP+"/healthz") != 200 || httpStatus("http://"+nodes["n2"].metrics+"/healthz") != 200 {
		t.Error("healthz must stay 200 without quorum")
	}
}
