package bench

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"testing"
	"time"
)

// scriptedPOP3 answers each command line with the next canned reply.
func scriptedPOP3(t *testing.T, replies ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("+OK ready\r\n"))
		r := bufio.NewReader(conn)
		for _, reply := range replies {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			_, _ = conn.Write([]byte(reply))
		}
	}()
	return ln.Addr().String()
}

func TestPOP3Client(t *testing.T) {
	addr := scriptedPOP3(t,
		"+OK\r\n", "+OK logged in\r\n", "+OK 2 345\r\n",
		"+OK 20 octets\r\nSubject: x\r\n\r\n..dot\r\nend\r\n.\r\n",
		"-ERR [IN-USE] maildrop locked\r\n", "-ERR no such message\r\n", "+OK bye\r\n")
	c, err := DialPOP3(addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("u", "p"); err != nil {
		t.Fatal(err)
	}
	if n, size, err := c.Stat(); err != nil || n != 2 || size != 345 {
		t.Fatalf("STAT = %d %d %v", n, size, err)
	}
	var buf bytes.Buffer
	if n, err := c.Retr(1, &buf); err != nil || buf.String() != "Subject: x\r\n\r\n.dot\r\nend\r\n" || n != int64(buf.Len()) {
		t.Fatalf("RETR = %q (%d) %v: dot-stuffing not undone", buf.String(), n, err)
	}
	for _, want := range []string{"-ERR [IN-USE]", "-ERR"} {
		_, err := c.Retr(9, &buf)
		var pe *POP3Error
		if !errors.As(err, &pe) || POP3ErrorCode(err) != want {
			t.Errorf("error %v: code %q, want %q", err, POP3ErrorCode(err), want)
		}
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

func TestRecorderSummary(t *testing.T) {
	r := NewRecorder()
	for i := 1; i <= 100; i++ {
		r.Ok(time.Duration(i)*time.Millisecond, 10)
	}
	r.OkN(time.Millisecond, 5, 50)
	r.Fail("550")
	r.Fail("550")
	r.Fail("io")
	r.Stop()
	s := r.Summary()
	if s.Ops != 105 || s.Requests != 101 || s.Bytes != 1050 || s.ErrorString() != "550×2 io×1" {
		t.Fatalf("summary %+v", s)
	}
	near := func(d, want time.Duration) bool { return d >= want-want/50 && d <= want+want/50 }
	if !near(s.P50, 50*time.Millisecond) || !near(s.P99, 99*time.Millisecond) || !near(s.Max, 100*time.Millisecond) {
		t.Errorf("percentiles p50 %v p99 %v max %v", s.P50, s.P99, s.Max)
	}
}

// TestRecorderAdd: a load measured in two slices reads as one run: counts
// and errors add up, latencies merge, and the elapsed time is the sum of
// the slices, not the wall time around them.
func TestRecorderAdd(t *testing.T) {
	slice := func(from, to int, fail string) *Recorder {
		r := NewRecorder()
		for i := from; i <= to; i++ {
			r.Ok(time.Duration(i)*time.Millisecond, 10)
		}
		r.Fail(fail)
		r.Stop()
		r.start = r.finish.Add(-2 * time.Second) // a 2 s slice
		return r
	}
	all := NewRecorder()
	all.Add(slice(1, 50, "550"))
	time.Sleep(20 * time.Millisecond) // another load's slice runs here
	all.Add(slice(51, 100, "io"))
	s := all.Summary()
	if s.Ops != 100 || s.Bytes != 1000 || s.ErrorString() != "550×1 io×1" || s.Elapsed != 4*time.Second {
		t.Fatalf("summary %+v", s)
	}
	if s.PerSec != 25 {
		t.Errorf("%.1f ops/s, want 25 (100 ops in two 2 s slices)", s.PerSec)
	}
	near := func(d, want time.Duration) bool { return d >= want-want/50 && d <= want+want/50 }
	if !near(s.P50, 50*time.Millisecond) || !near(s.P99, 99*time.Millisecond) || !near(s.Max, 100*time.Millisecond) {
		t.Errorf("percentiles p50 %v p99 %v max %v", s.P50, s.P99, s.Max)
	}
}

func TestUniqueMessageID(t *testing.T) {
	msg := []byte("Subject: a\r\nmessage-id: <orig@x>\r\n\r\nbody\r\nMessage-ID: in body\r\n")
	a, b := Unique(msg, 1), Unique(msg, 2)
	if bytes.Equal(a, b) || !bytes.Contains(a, []byte("X-Original-message-id: <orig@x>")) ||
		!bytes.Contains(a, []byte("\r\nMessage-ID: in body")) || bytes.Count(a, []byte("Message-ID: <")) != 1 {
		t.Fatalf("Unique:\n%s", a)
	}
	// Every run numbers its deliveries from 1: the same seq in a later run
	// must still be a new message, or the store dedupes it.
	if bytes.Equal(Unique(msg, 1), Unique(msg, 1)) {
		t.Error("Unique repeats a message for the same seq")
	}
	if bytes.Equal(Synthetic(2000, 1), Synthetic(2000, 1)) {
		t.Error("Synthetic repeats a message for the same seq")
	}
}
