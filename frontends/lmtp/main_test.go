package lmtp_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine (a session, a raft or
// cluster goroutine) outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
