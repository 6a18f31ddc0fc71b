package smtp

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// lazyLog writes what slog.Logger.With would, and loggers derived from one
// parent never see each other's attributes.
func TestLazyLogAttributes(t *testing.T) {
	var buf bytes.Buffer
	base := lazyLog{l: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), a: make([]any, 0, 16)}
	base.a = append(base.a, "tx", 7)
	a := base.With("verdict", "accept")
	b := base.With("verdict", "reject")
	a.Info("first", "code", 250)
	b.Warn("second", "code", 550)
	base.Error("third")
	base.l = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	base.Info("dropped below the level")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		"level=INFO msg=first tx=7 verdict=accept code=250",
		"level=WARN msg=second tx=7 verdict=reject code=550",
		"level=ERROR msg=third tx=7",
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if !strings.HasSuffix(lines[i], w) {
			t.Errorf("line %d = %q, want it to end with %q", i, lines[i], w)
		}
	}
}
