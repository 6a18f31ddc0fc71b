package bayes

import (
	"errors"
	"fmt"
	"math/bits"
)

// FilterPath is the node API endpoint that answers a Bloom filter of
// every token the model knows (cluster/bayes_api.go). With it a frontend
// asks counts only for tokens the model may hold: every message carries
// tokens no model has seen (its Message-ID, the IDs in its Received
// fields), and without the filter each of them cost a request.
const FilterPath = "/internal/bayes/filter"

// Filter is a Bloom filter over tokens: MayContain never answers false
// for an added token; for other tokens it answers true with a small
// probability (about 1% at the default sizing), which only costs a
// needless count lookup. Not safe for concurrent Add; MayContain may run
// concurrently with other MayContains.
type Filter struct {
	k    uint8  // probes per token
	bits []byte // 2^logM bits
	logM uint8
}

const (
	filterMagic    = "RMBF"
	filterVersion  = 1
	filterHeader   = 8  // magic, version, k, log2(bits), reserved
	bitsPerToken   = 10 // ~1% false positives with 7 probes
	filterProbes   = 7
	minFilterLogM  = 10 // 128 bytes
	maxFilterLogM  = 28 // 32 MiB: beyond, false positives grow instead
	maxFilterBytes = 1<<(maxFilterLogM-3) + filterHeader
)

// NewFilter returns an empty filter sized for n tokens.
func NewFilter(n int) *Filter {
	logM := uint8(minFilterLogM)
	for logM < maxFilterLogM && 1<<logM < n*bitsPerToken {
		logM++
	}
	return &Filter{k: filterProbes, logM: logM, bits: make([]byte, 1<<(logM-3))}
}

// probes returns the two hashes of double hashing (Kirsch–Mitzenmacher).
// Tokens are FNV hashes already; a splitmix64 finalizer spreads their
// bits before they index the filter.
func probes(t Token) (uint64, uint64) {
	x := uint64(t)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x, bits.RotateLeft64(x, 32) | 1
}

// Add records a token.
func (f *Filter) Add(t Token) {
	h1, h2 := probes(t)
	mask := uint64(1)<<f.logM - 1
	for i := uint64(0); i < uint64(f.k); i++ {
		b := (h1 + i*h2) & mask
		f.bits[b>>3] |= 1 << (b & 7)
	}
}

// MayContain reports whether the token may have been added (false: it
// certainly was not).
func (f *Filter) MayContain(t Token) bool {
	h1, h2 := probes(t)
	mask := uint64(1)<<f.logM - 1
	for i := uint64(0); i < uint64(f.k); i++ {
		b := (h1 + i*h2) & mask
		if f.bits[b>>3]&(1<<(b&7)) == 0 {
			return false
		}
	}
	return true
}

// Len returns the filter's size in bytes.
func (f *Filter) Len() int { return len(f.bits) }

// MarshalBinary encodes the filter: "RMBF", version 1, probes, log2 of
// the bit count, a reserved zero byte, then the bits.
func (f *Filter) MarshalBinary() ([]byte, error) {
	out := make([]byte, 0, filterHeader+len(f.bits))
	out = append(out, filterMagic...)
	out = append(out, filterVersion, f.k, f.logM, 0)
	return append(out, f.bits...), nil
}

// ErrFilter is returned for an encoded filter that does not decode.
var ErrFilter = errors.New("bayes filter: malformed")

// UnmarshalBinary decodes a filter encoded by MarshalBinary.
func (f *Filter) UnmarshalBinary(data []byte) error {
	if len(data) < filterHeader || string(data[:4]) != filterMagic {
		return fmt.Errorf("%w: no header", ErrFilter)
	}
	if data[4] != filterVersion {
		return fmt.Errorf("%w: version %d", ErrFilter, data[4])
	}
	k, logM := data[5], data[6]
	if k == 0 || k > 16 || logM < minFilterLogM || logM > maxFilterLogM {
		return fmt.Errorf("%w: %d probes over 2^%d bits", ErrFilter, k, logM)
	}
	if len(data)-filterHeader != 1<<(logM-3) {
		return fmt.Errorf("%w: %d bytes of bits for 2^%d", ErrFilter, len(data)-filterHeader, logM)
	}
	*f = Filter{k: k, logM: logM, bits: append([]byte(nil), data[filterHeader:]...)}
	return nil
}
