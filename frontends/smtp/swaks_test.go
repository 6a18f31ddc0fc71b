package smtp_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/raftmail/raftmail/frontends/smtp"
)

// TestSwaks runs the swaks SMTP test tool (Debian package "swaks")
// against both profiles: plain with pipelining, STARTTLS with AUTH PLAIN,
// implicit TLS with AUTH LOGIN.
func TestSwaks(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks not installed: apt-get install -y swaks (CI must install it)")
	}
	e := newEnv(t)
	mx, _ := e.serve(e.baseConfig(smtp.ProfileMX), nil)
	sub, subTLS := e.serve(e.baseConfig(smtp.ProfileSubmission), nil)

	run := func(t *testing.T, id string, args ...string) {
		t.Helper()
		args = append(args, "--helo", "swaks.test", "--to", "bob@example.test",
			"--header", "Message-Id: <"+id+">", "--body", "hello from swaks", "--timeout", "30")
		out, err := exec.Command(swaks, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("swaks %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		e.waitStored("bob@example.test", id)
	}
	t.Run("mx pipelining", func(t *testing.T) {
		run(t, "swaks1@test", "--server", mx, "--from", "someone@remote.test", "--pipeline")
	})
	t.Run("submission STARTTLS AUTH PLAIN", func(t *testing.T) {
		run(t, "swaks2@test", "--server", sub, "--from", "alice@example.test", "--tls",
			"--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "alicepw")
	})
	t.Run("submission implicit TLS AUTH LOGIN", func(t *testing.T) {
		run(t, "swaks3@test", "--server", subTLS, "--from", "alice@example.test", "--tls-on-connect",
			"--auth", "LOGIN", "--auth-user", "alice@example.test", "--auth-password", "alicepw")
	})
	t.Run("wrong password refused", func(t *testing.T) {
		out, err := exec.Command(swaks, "--server", sub, "--from", "alice@example.test", "--to", "bob@example.test",
			"--tls", "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "nope").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "535 5.7.8") {
			t.Fatalf("wrong password: %v\n%s", err, out)
		}
	})
}
