package clamav_test

import (
	"context"
	"encoding/base64"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/filters/clamav"
	"github.com/raftmail/raftmail/filters/clamav/clamdtest"
)

func mail(attachment string) []byte {
	return []byte("From: a@example.test\r\nTo: b@example.test\r\nSubject: file\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--XX\r\nContent-Type: application/octet-stream; name=f.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString([]byte(attachment)) + "\r\n--XX--\r\n")
}

func body(t *testing.T, ck *clamav.Check, raw []byte) filters.Verdict {
	t.Helper()
	st, err := ck.NewState(context.Background(), &filters.ConnInfo{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return st.Body(ctx, &filters.Message{Body: filters.BytesBody(raw)})
}

// TestClamd scans through a real clamd (unix socket and TCP) with the
// test's own signatures: EICAR and a made-up one are rejected with 554
// 5.7.1, clean mail passes.
func TestClamd(t *testing.T) {
	cd := clamdtest.Start(t)
	for _, addr := range []string{"unix:" + cd.Socket, cd.TCP} {
		ck, err := clamav.New(clamav.Config{Addr: addr})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name, attach, virus string
		}{
			{"eicar", clamdtest.EICAR, clamdtest.EICARName},
			{"made-up", "header " + clamdtest.MadeUp + " trailer", clamdtest.MadeUpName},
			{"clean", "nothing to see here", ""},
		} {
			t.Run(addr+"/"+tc.name, func(t *testing.T) {
				v := body(t, ck, mail(tc.attach))
				if tc.virus == "" {
					if v.Action != filters.Accept {
						t.Fatalf("clean mail: %+v", v)
					}
					return
				}
				code, enh, text := v.Reply(filters.StageData)
				if v.Action != filters.Reject || code != 554 || enh != [3]int{5, 7, 1} || !strings.Contains(text, tc.virus) {
					t.Fatalf("verdict %+v reply %d %v %q", v, code, enh, text)
				}
			})
		}
	}
}

// TestClamdUnreachable: no clamd answers 451 4.7.0 through the pipeline
// by default, and accepts with OnError accept (fail open).
func TestClamdUnreachable(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	ck, err := clamav.New(clamav.Config{Addr: addr, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		policy filters.Policy
		action filters.Action
		code   int
	}{
		{"fail closed", filters.Policy{}, filters.TempFail, 451},
		{"fail open", filters.Policy{OnError: filters.ErrorAccept}, filters.Accept, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filters.New(filters.Config{}, filters.With(ck, tc.policy))
			s, _ := p.Connect(context.Background(), &filters.ConnInfo{})
			defer s.Close()
			v := s.Data(context.Background(), &filters.Message{Body: filters.BytesBody(mail("x"))})
			code, enh, _ := v.Reply(filters.StageData)
			if v.Action != tc.action || code != tc.code || (code != 0 && enh != [3]int{4, 7, 0}) {
				t.Fatalf("verdict %v %d %v", v.Action, code, enh)
			}
		})
	}
}
