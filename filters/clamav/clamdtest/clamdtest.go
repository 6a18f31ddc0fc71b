// Package clamdtest starts a real clamd (Debian's clamav-daemon) for
// tests, with a tiny signature database it writes itself: the EICAR test
// signature and one made-up signature. Nothing is downloaded.
package clamdtest

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftmail/raftmail/filters/clamav"
)

// EICAR is the standard antivirus test string (eicar.org).
const EICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// MadeUp is a string only the made-up signature matches.
const MadeUp = "RAFTMAIL-TEST-MALWARE-3f9c1e7a-do-not-deliver"

// Signature names in the test database.
const (
	EICARName  = "Raftmail.Test.EICAR"
	MadeUpName = "Raftmail.Test.MadeUp"
)

// Clamd is a running clamd.
type Clamd struct {
	// Socket is the unix socket path, TCP the 127.0.0.1 TCP address.
	Socket, TCP string
}

// Start starts clamd, or skips the test (with the reason) when the
// binary is absent or does not start here.
func Start(t testing.TB) *Clamd {
	t.Helper()
	bin, err := exec.LookPath("clamd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/clamd"); serr != nil {
			t.Skip("clamd not installed (Debian package clamav-daemon; .ci/run installs it)")
		}
		bin = "/usr/sbin/clamd"
	}
	dir, err := os.MkdirTemp("", "clamd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		t.Fatal(err)
	}
	// .ndb: Name:TargetType:Offset:HexSignature (TargetType 0 = any file,
	// including attachments clamd extracts from a mail).
	ndb := fmt.Sprintf("%s:0:*:%s\n%s:0:*:%s\n", EICARName, hex.EncodeToString([]byte(EICAR)),
		MadeUpName, hex.EncodeToString([]byte(MadeUp)))
	if err := os.WriteFile(filepath.Join(db, "raftmail-test.ndb"), []byte(ndb), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	c := &Clamd{Socket: filepath.Join(dir, "clamd.sock"), TCP: fmt.Sprintf("127.0.0.1:%d", port)}
	conf := fmt.Sprintf(`Foreground yes
LocalSocket %s
TCPSocket %d
TCPAddr 127.0.0.1
DatabaseDirectory %s
LogFile %s
PidFile %s
TemporaryDirectory %s
StreamMaxLength 40M
MaxThreads 4
SelfCheck 0
`, c.Socket, port, db, filepath.Join(dir, "clamd.log"), filepath.Join(dir, "clamd.pid"), dir)
	if os.Geteuid() == 0 {
		conf += "User root\n"
	}
	cf := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", cf)
	out, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Skipf("clamd does not start here: %v", err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); out.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	cl, err := clamav.NewClient(clamav.Config{Addr: c.Socket, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if cl.Ping(context.Background()) == nil {
			return c
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "clamd.log"))
			so, _ := os.ReadFile(filepath.Join(dir, "stdout"))
			t.Skipf("clamd exited at start here (%v): %s %s", waitErr, log, so)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("clamd did not answer PING within 60s")
		}
	}
}
