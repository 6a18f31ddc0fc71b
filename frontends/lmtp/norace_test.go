//go:build !race

package lmtp_test

const raceEnabled = false
