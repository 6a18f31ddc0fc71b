package main

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rfc5424 matches a message header: PRI, version 1, timestamp, host, app,
// PID, no MSGID, no structured data.
var rfc5424 = regexp.MustCompile(`^<(\d+)>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ raftmail-test \d+ - - (.*)$`)

func TestSyslogForwardingUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	l := logFlags{level: "info", format: "json"}
	o := opsFlags{syslog: "udp://" + pc.LocalAddr().String(), syslogTag: "raftmail-test"}
	logger, err := o.logger(&l, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	logger.With("tx", "T1").Warn("smtp transaction", "verdict", "accept", "raft_index", 42)
	logger.Debug("not sent at info level")
	logger.Error("broken")

	buf := make([]byte, 4096)
	var got []string
	for len(got) < 2 {
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("read syslog datagram: %v (got %q)", err, got)
		}
		got = append(got, string(buf[:n]))
	}
	m := rfc5424.FindStringSubmatch(got[0])
	if m == nil {
		t.Fatalf("not RFC 5424: %q", got[0])
	}
	if m[1] != strconv.Itoa(2*8+4) { // mail.warning
		t.Errorf("PRI %s, want 20 (mail.warning)", m[1])
	}
	for _, want := range []string{`"msg":"smtp transaction"`, `"tx":"T1"`, `"raft_index":42`} {
		if !strings.Contains(m[2], want) {
			t.Errorf("message %q lacks %s", m[2], want)
		}
	}
	if m := rfc5424.FindStringSubmatch(got[1]); m == nil || m[1] != "19" || !strings.Contains(m[2], "broken") {
		t.Errorf("second message %q: want mail.err (19) \"broken\"", got[1])
	}
}

func TestSyslogForwardingTCPOctetCounting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lines := make(chan string, 4)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			// RFC 6587 §3.4.1: MSG-LEN SP SYSLOG-MSG
			lenStr, err := r.ReadString(' ')
			if err != nil {
				close(lines)
				return
			}
			n, err := strconv.Atoi(strings.TrimSpace(lenStr))
			if err != nil {
				close(lines)
				return
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil {
				close(lines)
				return
			}
			lines <- string(b)
		}
	}()
	l := logFlags{level: "info", format: "text"}
	o := opsFlags{syslog: "tcp://" + ln.Addr().String(), syslogTag: "raftmail-test"}
	logger, err := o.logger(&l, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	logger.Info("first\nline", "k", "v")
	logger.Info("second")
	for i, want := range []string{"first", "second"} {
		select {
		case got := <-lines:
			m := rfc5424.FindStringSubmatch(got)
			if m == nil || m[1] != "22" || !strings.Contains(m[2], want) {
				t.Fatalf("message %d = %q: want mail.info (22) with %q", i, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d not received", i)
		}
	}
}

func TestSyslogTargetValidation(t *testing.T) {
	for _, target := range []string{"10.0.0.1:514", "http://x:1", "udp://"} {
		if _, err := newSyslogHandler(target, "t", "text", &slog.HandlerOptions{}); err == nil {
			t.Errorf("%q accepted", target)
		}
	}
}
