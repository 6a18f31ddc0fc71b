package pop3

import (
	"bufio"
	"bytes"
)

// Message bodies on the wire (RFC 1939 §3): every line ends in CRLF, a line
// that begins with "." is sent with one more "." (dot-stuffing), and the
// response ends with ".CRLF". Stored bodies normally carry CRLF already
// (SMTP and LMTP deliver them so); a bare LF is sent as CRLF and a final
// line without a terminator gets one. The size a client is told (STAT,
// LIST, RETR) counts exactly the octets it will receive before
// dot-stuffing, which is what RFC 1939 §5 means by "exact size" and how
// other servers count.

// eachLine calls fn with every line of body, without its terminator, as it
// goes on the wire. With bodyLines >= 0 (TOP) it stops after the header,
// the blank line that ends it and bodyLines further lines.
func eachLine(body []byte, bodyLines int, fn func(line []byte) error) error {
	inHeader := true
	left := bodyLines
	for len(body) > 0 {
		if bodyLines >= 0 && !inHeader {
			if left == 0 {
				return nil
			}
			left--
		}
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if inHeader && len(line) == 0 {
			inHeader = false
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return nil
}

// wireSize is the size of body as RETR sends it, without dot-stuffing.
func wireSize(body []byte) int64 {
	var n int64
	_ = eachLine(body, -1, func(line []byte) error {
		n += int64(len(line)) + 2
		return nil
	})
	return n
}

// writeBody writes body (all of it, or the TOP part with bodyLines >= 0)
// dot-stuffed and CRLF-terminated, followed by the terminating ".CRLF". It
// returns the octets written before dot-stuffing and the terminator.
func writeBody(w *bufio.Writer, body []byte, bodyLines int) (int64, error) {
	var n int64
	err := eachLine(body, bodyLines, func(line []byte) error {
		n += int64(len(line)) + 2
		if len(line) > 0 && line[0] == '.' {
			if err := w.WriteByte('.'); err != nil {
				return err
			}
		}
		if _, err := w.Write(line); err != nil {
			return err
		}
		_, err := w.WriteString("\r\n")
		return err
	})
	if err != nil {
		return n, err
	}
	_, err = w.WriteString(".\r\n")
	return n, err
}
