package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
)

// Command is one parsed POP3 command line.
type Command struct {
	// Name is the keyword, upper-cased (RFC 1939 §3: case-insensitive).
	Name string
	// Args are the space-separated arguments.
	Args []string
	// Rest is everything after the keyword and one space, verbatim: PASS
	// takes it whole because a password may contain spaces (RFC 1939 §7).
	Rest string
}

// Parse errors. Each maps to a plain -ERR; none closes the connection by
// itself.
var (
	errEmptyLine   = errors.New("empty command line")
	errBadKeyword  = errors.New("command keyword must be 3 or 4 letters")
	errBadChar     = errors.New("control characters are not allowed in commands")
	errTooManyArgs = errors.New("too many arguments")
	errLineTooLong = errors.New("line too long")
)

// maxArgs bounds the arguments of any command (TOP has the most: 2; AUTH
// PLAIN with an initial response also 2).
const maxArgs = 2

// ParseCommand parses one command line without its CRLF. It never panics;
// keyword validity (known or not) is the session's business.
func ParseCommand(line []byte) (Command, error) {
	if len(bytes.TrimSpace(line)) == 0 {
		return Command{}, errEmptyLine
	}
	for _, c := range line {
		// NUL and every other control character is refused; arguments
		// are separated by spaces only (RFC 1939 §3).
		if c < 0x20 || c == 0x7f {
			return Command{}, errBadChar
		}
	}
	s := string(line)
	name, rest, _ := strings.Cut(s, " ")
	if len(name) < 3 || len(name) > 4 {
		return Command{}, errBadKeyword
	}
	for i := 0; i < len(name); i++ {
		c := name[i] | 0x20
		if c < 'a' || c > 'z' {
			return Command{}, errBadKeyword
		}
	}
	cmd := Command{Name: strings.ToUpper(name), Rest: rest}
	args := strings.Fields(rest)
	if len(args) > maxArgs && cmd.Name != "PASS" {
		return Command{}, errTooManyArgs
	}
	if cmd.Name != "PASS" && len(args) > 0 {
		cmd.Args = args
	}
	return cmd, nil
}

// parseMsgNum parses a message number argument: decimal digits only, no
// sign, no overflow, 1 or more (RFC 1939 §3 and §5).
func parseMsgNum(s string) (int, bool) {
	return parseUint(s, 1)
}

// parseUint parses a non-negative decimal of at most 9 digits, at least
// min.
func parseUint(s string, min int) (int, bool) {
	if len(s) == 0 || len(s) > 9 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min {
		return 0, false
	}
	return n, true
}

// lineReader reads CRLF- (or bare LF-) terminated lines with a length
// bound. An overlong line is consumed to its end (or until flood octets
// have been discarded) and reported as errLineTooLong, so the session can
// answer -ERR and carry on.
type lineReader struct {
	r *bufio.Reader
	// flood is how many octets of one overlong line are discarded before
	// the reader gives up with errFlood.
	flood int
}

var errFlood = errors.New("line far too long")

// readLine returns the next line without its terminator. max counts the
// terminator, as RFC 2449 §4 does.
func (lr *lineReader) readLine(max int) ([]byte, error) {
	var buf []byte
	for {
		frag, err := lr.r.ReadSlice('\n')
		buf = append(buf, frag...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(buf) > max {
				return nil, lr.discard(len(buf))
			}
			continue
		}
		if err == io.EOF && len(buf) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(buf) > max {
		return nil, errLineTooLong
	}
	buf = bytes.TrimSuffix(buf, []byte("\n"))
	buf = bytes.TrimSuffix(buf, []byte("\r"))
	return buf, nil
}

// discard drops the rest of an overlong line.
func (lr *lineReader) discard(seen int) error {
	for seen <= lr.flood {
		frag, err := lr.r.ReadSlice('\n')
		seen += len(frag)
		switch {
		case err == nil:
			return errLineTooLong
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return err
		}
	}
	return errFlood
}
