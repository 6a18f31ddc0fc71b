package cluster_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a node leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
