package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Command
		err  error
	}{
		{"STAT", Command{Name: "STAT"}, nil},
		{"stat", Command{Name: "STAT"}, nil},
		{"List 1", Command{Name: "LIST", Args: []string{"1"}, Rest: "1"}, nil},
		{"TOP 1 10", Command{Name: "TOP", Args: []string{"1", "10"}, Rest: "1 10"}, nil},
		{"TOP  1   10 ", Command{Name: "TOP", Args: []string{"1", "10"}, Rest: " 1   10 "}, nil},
		{"PASS my secret  pass ", Command{Name: "PASS", Rest: "my secret  pass "}, nil},
		{"PASS a b c d e", Command{Name: "PASS", Rest: "a b c d e"}, nil},
		{"USER ünïcode@example.org", Command{Name: "USER", Args: []string{"ünïcode@example.org"}, Rest: "ünïcode@example.org"}, nil},
		{"AUTH PLAIN AGEAYg==", Command{Name: "AUTH", Args: []string{"PLAIN", "AGEAYg=="}, Rest: "PLAIN AGEAYg=="}, nil},
		{"", Command{}, errEmptyLine},
		{"  ", Command{}, errEmptyLine},
		{"ST", Command{}, errBadKeyword},
		{"STATS", Command{}, errBadKeyword},
		{" STAT", Command{}, errBadKeyword},
		{"ST1T", Command{}, errBadKeyword},
		{"STAT\x00", Command{}, errBadChar},
		{"STAT\t1", Command{}, errBadChar},
		{"PASS a\x00b", Command{}, errBadChar},
		{"DEL\x7f", Command{}, errBadChar},
		{"TOP 1 2 3", Command{}, errTooManyArgs},
	} {
		got, err := ParseCommand([]byte(tc.line))
		if !errors.Is(err, tc.err) {
			t.Errorf("ParseCommand(%q) error %v, want %v", tc.line, err, tc.err)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseCommand(%q) = %#v, want %#v", tc.line, got, tc.want)
		}
	}
}

func TestParseMsgNum(t *testing.T) {
	for s, want := range map[string]int{"1": 1, "42": 42, "000000007": 7, "999999999": 999999999} {
		if n, ok := parseMsgNum(s); !ok || n != want {
			t.Errorf("parseMsgNum(%q) = %d, %v", s, n, ok)
		}
	}
	for _, s := range []string{"", "0", "-1", "+1", "1e3", "0x10", " 1", "1 ", "1000000000", "99999999999999999999", "１"} {
		if n, ok := parseMsgNum(s); ok {
			t.Errorf("parseMsgNum(%q) = %d, accepted", s, n)
		}
	}
	if n, ok := parseUint("0", 0); !ok || n != 0 {
		t.Errorf("parseUint(0, 0) = %d, %v", n, ok)
	}
}

func TestReadLine(t *testing.T) {
	in := "STAT\r\nLIST\n" + strings.Repeat("x", 300) + "\r\nNOOP\r\n" + strings.Repeat("y", 100) + "\r\n" +
		strings.Repeat("z", 70<<10) + "\r\nafter\r\nno-eol"
	lr := lineReader{r: bufio.NewReaderSize(strings.NewReader(in), 64), flood: 64 << 10}
	want := []struct {
		line string
		err  error
	}{
		{"STAT", nil}, {"LIST", nil}, {"", errLineTooLong}, {"NOOP", nil},
		{strings.Repeat("y", 100), nil}, {"", errFlood},
	}
	for i, w := range want {
		got, err := lr.readLine(255)
		if !errors.Is(err, w.err) || string(got) != w.line {
			t.Fatalf("line %d: %q, %v; want %q, %v", i, got, err, w.line, w.err)
		}
	}
	// A line of exactly the limit (with CRLF) passes, one octet more fails.
	lr = lineReader{r: bufio.NewReaderSize(strings.NewReader(strings.Repeat("a", 253)+"\r\n"+strings.Repeat("a", 254)+"\r\n"), 64), flood: 1 << 10}
	if l, err := lr.readLine(255); err != nil || len(l) != 253 {
		t.Fatalf("255-octet line: %d, %v", len(l), err)
	}
	if _, err := lr.readLine(255); !errors.Is(err, errLineTooLong) {
		t.Fatalf("256-octet line: %v", err)
	}
	if _, err := lr.readLine(255); !errors.Is(err, io.EOF) {
		t.Fatalf("at end: %v", err)
	}
	lr = lineReader{r: bufio.NewReader(strings.NewReader("partial")), flood: 1 << 10}
	if _, err := lr.readLine(255); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("partial line: %v", err)
	}
}

// FuzzParseCommand checks that the parser never panics and that what it
// accepts is well formed: an upper-case 3–4 letter keyword, no control
// characters, at most two arguments, each without spaces.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"USER alice@example.org", "PASS with spaces in it", "STAT", "LIST", "LIST 1", "RETR 1", "DELE 99",
		"TOP 1 0", "UIDL", "UIDL 3", "NOOP", "RSET", "QUIT", "CAPA", "STLS", "AUTH", "AUTH PLAIN",
		"AUTH PLAIN AHVzZXIAcGFzcw==", "*", "=", "", " ", "RETR 0", "RETR -1", "RETR 99999999999999999999",
		"\x00\x01\x02", "\xff\xfe", "retr\x001", "TOP 1 2 3", "ÄÖÜ", "LIST\t1", strings.Repeat("A", 300),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, err := ParseCommand(line)
		if err != nil {
			if cmd.Name != "" || cmd.Args != nil {
				t.Fatalf("error %v with non-empty command %#v", err, cmd)
			}
			return
		}
		if n := len(cmd.Name); n < 3 || n > 4 || strings.ToUpper(cmd.Name) != cmd.Name {
			t.Fatalf("keyword %q", cmd.Name)
		}
		for _, c := range []byte(cmd.Name) {
			if c < 'A' || c > 'Z' {
				t.Fatalf("keyword %q has %q", cmd.Name, c)
			}
		}
		if bytes.ContainsFunc(line, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("accepted control characters in %q", line)
		}
		if len(cmd.Args) > maxArgs {
			t.Fatalf("%d args", len(cmd.Args))
		}
		for _, a := range cmd.Args {
			if a == "" || strings.ContainsAny(a, " ") {
				t.Fatalf("bad arg %q", a)
			}
		}
		if cmd.Name == "PASS" && cmd.Args != nil {
			t.Fatalf("PASS split into args")
		}
		if !strings.HasSuffix(string(line), cmd.Rest) {
			t.Fatalf("rest %q is not the tail of %q", cmd.Rest, line)
		}
		// Parsing is stable: the canonical form parses to the same.
		canon := cmd.Name
		if cmd.Rest != "" {
			canon += " " + cmd.Rest
		}
		again, err := ParseCommand([]byte(canon))
		if err != nil || !reflect.DeepEqual(again, cmd) {
			t.Fatalf("reparse of %q: %#v, %v; first %#v", canon, again, err, cmd)
		}
	})
}
