package main

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/frontends/smtp"
	"github.com/raftmail/raftmail/raftstore"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAdminBayesTrain trains from an mbox (spam) and a Maildir plus a
// .eml file (ham) through "raftmail admin bayes train" against a node
// API: the counts show on every node, a repeat changes nothing, and
// "bayes status" reports them.
func TestAdminBayesTrain(t *testing.T) {
	c := clustertest.New(t, 3)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "spam", "box.mbox"),
		"From a@x Mon Jan  1 00:00:00 2024\nSubject: cheap pills\n\nbuy pills now\n>From the pharmacy\n"+
			"From b@x Mon Jan  1 00:00:00 2024\nSubject: lottery\n\nyou won\n"+
			"From c@x Mon Jan  1 00:00:00 2024\nSubject: casino\n\nplay casino\n")
	writeFile(t, filepath.Join(dir, "ham", "Maildir", "cur", "1.host:2,S"), "Subject: minutes\n\nmeeting minutes\n")
	writeFile(t, filepath.Join(dir, "ham", "Maildir", "new", "2.host"), "Subject: lunch\n\nlunch at noon\n")
	writeFile(t, filepath.Join(dir, "ham", "x.eml"), "Subject: release\r\n\r\nrelease notes\r\n")
	api := c.Node(1).APIURL()
	train := func() string {
		var out bytes.Buffer
		err := runAdmin([]string{"--api", api, "bayes", "train", "--spam", filepath.Join(dir, "spam"), "--ham", filepath.Join(dir, "ham")}, &out)
		if err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	if out := train(); !strings.Contains(out, "trained 6 messages (6 changed the model)") {
		t.Fatalf("first training: %q", out)
	}
	for i := 0; i < 3; i++ {
		clustertest.Eventually(t, 10*time.Second, "counts on every node", func() bool {
			var tot raftstore.BayesTotals
			_ = c.Node(i).View(func(tx *raftstore.ReadTx) error { tot, _, _ = tx.BayesStats(); return nil })
			return tot.Spam == 3 && tot.Ham == 3
		})
	}
	if out := train(); !strings.Contains(out, "(0 changed the model)") {
		t.Fatalf("repeat training: %q", out)
	}
	var out bytes.Buffer
	if err := runAdmin([]string{"--api", api, "bayes", "status"}, &out); err != nil || !strings.Contains(out.String(), "3 spam, 3 ham") {
		t.Fatalf("status: %v %q", err, out.String())
	}
}

// TestFiltersReloadOnSIGHUP: SIGHUP rebuilds the pipeline and swaps it
// into the server; a failing build keeps the running one.
func TestFiltersReloadOnSIGHUP(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := smtp.New(smtp.Config{Profile: smtp.ProfileMX, Hostname: "mx.test", Logger: quiet}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var builds atomic.Int32
	stop := watchReload(srv, func() (*filters.Pipeline, error) {
		builds.Add(1)
		return filters.New(filters.Config{Logger: quiet}), nil
	}, quiet)
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 10*time.Second, "a rebuild after SIGHUP", func() bool { return builds.Load() == 1 })
}
