package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/raftmail/raftmail/raftstore"
)

func TestThrottleGrowsAndResets(t *testing.T) {
	now := time.Unix(1000, 0)
	th := newThrottle(100*time.Millisecond, time.Second, time.Minute)
	th.now = func() time.Time { return now }
	if d := th.delay("1.2.3.4", "a@x"); d != 0 {
		t.Fatalf("fresh delay %v", d)
	}
	var got []time.Duration
	for i := 0; i < 6; i++ {
		th.failed("1.2.3.4", "a@x")
		got = append(got, th.delay("1.2.3.4", "a@x"))
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if !slices.Equal(got, want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	// Per account: another IP guessing the same account is slowed too.
	if d := th.delay("5.6.7.8", "A@X "); d != time.Second {
		t.Fatalf("account delay from another IP %v", d)
	}
	// Per IP: another account from the same IP is slowed too.
	if d := th.delay("1.2.3.4", "b@x"); d != time.Second {
		t.Fatalf("IP delay for another account %v", d)
	}
	th.succeeded("1.2.3.4", "a@x")
	if d := th.delay("1.2.3.4", "a@x"); d != 0 {
		t.Fatalf("after success %v", d)
	}
	th.failed("9.9.9.9", "c@x")
	now = now.Add(2 * time.Minute)
	if d := th.delay("9.9.9.9", "c@x"); d != 0 {
		t.Fatalf("after the window %v", d)
	}
}

func TestImapErrorMapping(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	wrap := func(err error) error { return fmt.Errorf("context: %w", err) }
	cases := []struct {
		err  error
		kind errKind
		typ  imap.StatusResponseType
		code imap.ResponseCode
	}{
		{wrap(raftstore.ErrNoSuchMailbox), opPlain, imap.StatusResponseTypeNo, imap.ResponseCodeNonExistent},
		{wrap(raftstore.ErrNoSuchMailbox), opTarget, imap.StatusResponseTypeNo, imap.ResponseCodeTryCreate},
		{raftstore.Status{Code: "quota", Msg: "full"}.Err(), opTarget, imap.StatusResponseTypeNo, codeOverQuota},
		{wrap(raftstore.ErrMailboxExists), opPlain, imap.StatusResponseTypeNo, imap.ResponseCodeAlreadyExists},
		{&unavailableError{errors.New("no leader")}, opPlain, imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable},
		{wrap(context.DeadlineExceeded), opPlain, imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable},
		{wrap(raftstore.ErrNotLeader), opPlain, imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable},
		{errors.New("disk on fire"), opPlain, imap.StatusResponseTypeNo, codeServerBug},
		{badRequest("x"), opPlain, imap.StatusResponseTypeBad, imap.ResponseCodeClientBug},
	}
	for _, c := range cases {
		got := imapError(logger, c.kind, c.err)
		var ie *imap.Error
		if !errors.As(got, &ie) || ie.Type != c.typ || ie.Code != c.code {
			t.Errorf("imapError(%v) = %v, want %s [%s]", c.err, got, c.typ, c.code)
		}
	}
	if imapError(logger, opPlain, nil) != nil {
		t.Error("nil error mapped to non-nil")
	}
}

func TestListData(t *testing.T) {
	mbs := []raftstore.Mailbox{
		{Name: "Archive", SpecialUse: `\Archive`, Subscribed: true},
		{Name: "INBOX", Subscribed: true},
		{Name: "a/b/c"},
		{Name: "x"},
		{Name: "x/y", Subscribed: true},
	}
	names := func(es []listEntry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Mailbox+fmt.Sprint(e.Attrs))
		}
		return out
	}
	o := &imap.ListOptions{}
	got := names(listData(mbs, "", []string{"%"}, o))
	want := []string{`Archive[\Archive \HasNoChildren]`, `INBOX[\HasNoChildren]`, `a[\Noselect \HasChildren]`, `x[\HasChildren]`}
	if !slices.Equal(got, want) {
		t.Errorf("LIST %%: %v", got)
	}
	got = names(listData(mbs, "", []string{"*"}, &imap.ListOptions{SelectSubscribed: true}))
	want = []string{`Archive[\Subscribed \Archive \HasNoChildren]`, `INBOX[\Subscribed \HasNoChildren]`, `x/y[\Subscribed \HasNoChildren]`}
	if !slices.Equal(got, want) {
		t.Errorf("LIST (SUBSCRIBED): %v", got)
	}
	got = names(listData(mbs, "x/", []string{"%"}, o))
	if !slices.Equal(got, []string{`x/y[\HasNoChildren]`}) {
		t.Errorf("LIST x/ %%: %v", got)
	}
	if got := names(listData(mbs, "", []string{"inbox"}, o)); len(got) != 1 {
		t.Errorf("LIST inbox (any case): %v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{}
	c.setDefaults()
	if err := c.Validate(); err == nil {
		t.Error("no TLS and no InsecureAuth accepted")
	}
	c = Config{InsecureAuth: true, TLSAddr: ":993"}
	c.setDefaults()
	if err := c.Validate(); err == nil {
		t.Error("TLSAddr without TLS accepted")
	}
	c = Config{InsecureAuth: true}
	c.setDefaults()
	if err := c.Validate(); err != nil || c.CommandTimeout != 30*time.Second {
		t.Errorf("defaults: %v %v", err, c.CommandTimeout)
	}
}

// TestResetAndDeletedMailboxEndSessions: a snapshot restore (StateReset)
// ends every session, and deleting a selected mailbox ends the sessions
// that have it selected, so no tracker outlives the state it describes.
func TestResetAndDeletedMailboxEndSessions(t *testing.T) {
	e := newEnv(t, 2)
	e.deliver(0, testMail(1))
	a := e.login(1, nil)
	if err := a.Create("Temp", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	mustSelect(t, a, "Temp")
	b := e.login(0, nil)
	mustSelect(t, b, "INBOX")
	if err := b.Delete("Temp").Wait(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("session with the deleted mailbox selected was not ended")
	}
	if err := b.Noop().Wait(); err != nil {
		t.Fatalf("unrelated session affected: %v", err)
	}
	e.srvs[0].reg.apply(raftstore.StateReset{})
	select {
	case <-b.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("StateReset did not end the session")
	}
	// New sessions work after the reset.
	c := e.login(0, nil)
	if d := mustSelect(t, c, "INBOX"); d.NumMessages != 1 {
		t.Fatalf("after reset INBOX has %d", d.NumMessages)
	}
}
