package cluster

import "time"

// SetMaxBatchWait shortens the bound on a batch whose callers set no
// deadline, for a test; it returns the function that restores it.
func SetMaxBatchWait(d time.Duration) (restore func()) {
	old := maxBatchWait
	maxBatchWait = d
	return func() { maxBatchWait = old }
}
