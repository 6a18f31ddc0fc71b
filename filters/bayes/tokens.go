// Package bayes is raftmail's Bayesian spam classifier: Graham/Robinson
// token probabilities combined with Fisher's method (Robinson's
// chi-square, as in SpamBayes and SpamAssassin's Bayes). Token counts live
// in the replicated store (raftstore bucket "bayes"), so every frontend
// and node classifies with the same model; frontends fetch counts in
// batches from any node and cache them briefly (see Remote).
package bayes

import (
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/raftmail/raftmail/filters/mimetext"
)

// Token is a hashed token (FNV-1a 64 of "prefix:word"). Hashes keep
// commands and buckets small and fixed-size and never store words of
// users' mail in the clear.
type Token uint64

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashToken(prefix, word string) Token {
	return hashBytes(hashPrefix(prefix), []byte(word))
}

// hashPrefix is the FNV-1a state after "prefix:".
func hashPrefix(prefix string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(prefix); i++ {
		h ^= uint64(prefix[i])
		h *= fnvPrime
	}
	h ^= ':'
	h *= fnvPrime
	return h
}

func hashBytes(h uint64, word []byte) Token {
	for _, c := range word {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return Token(h)
}

// maxTokens bounds the distinct tokens taken from one message.
const maxTokens = 3000

// Tokenize returns the distinct tokens of a parsed message, sorted (a
// deterministic order: training commands built from it are stable).
func Tokenize(t *mimetext.Text) []Token {
	set := make(map[Token]struct{}, 256)
	add := func(prefix, word string) {
		if len(set) < maxTokens {
			set[hashToken(prefix, word)] = struct{}{}
		}
	}
	addw := func(prefix string) func([]byte) {
		hp := hashPrefix(prefix)
		return func(w []byte) {
			if len(set) < maxTokens {
				set[hashBytes(hp, w)] = struct{}{}
			}
		}
	}
	words(t.Subject, addw("s"))
	// Every header field: its name, and the words of its value under the
	// name (Received hosts, List-Id, X-Mailer… separate ham from spam as
	// well as the body does). Date and Subject are handled apart.
	keys := make([]string, 0, len(t.Header))
	for k := range t.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic under the token cap
	for _, k := range keys {
		if k == "Date" || k == "Subject" {
			continue
		}
		add("hn", k)
		fn := addw(k)
		for _, v := range t.Header[k] {
			words(v, fn)
		}
	}
	body := addw("")
	for _, p := range t.Parts {
		add("ct", p.Type)
		words(p.Text, body)
	}
	for _, u := range t.URLs {
		add("url", urlHost(u))
	}
	for _, a := range t.Attach {
		add("att", strings.ToLower(a.Type))
	}
	if t.Malformed {
		add("mime", "malformed")
	}
	out := make([]Token, 0, len(set))
	for tok := range set {
		out = append(out, tok)
	}
	slices.Sort(out)
	return out
}

// words calls fn for each word of s: runs of letters, digits, '$', '-',
// '\” and '!' of 3 to 24 bytes, lower-cased; longer runs become a
// "skip" token of their length class (Graham; SpamBayes).
func words(s string, fn func([]byte)) {
	start := -1
	var arr [32]byte
	buf := arr[:0]
	flush := func(end int) {
		if start < 0 {
			return
		}
		w := trimPunct(s[start:end])
		start = -1
		switch {
		case len(w) < 3:
		case len(w) > 24:
			buf = append(append(buf[:0], "skip"...), byte('a'+min(len(w)/10, 25)))
			fn(buf)
		default:
			buf = appendLower(buf[:0], w)
			fn(buf)
		}
	}
	for i := 0; i < len(s); {
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '$' || r == '-' || r == '\'' || r == '!' {
			if start < 0 {
				start = i
			}
		} else {
			flush(i)
		}
		i += size
	}
	flush(len(s))
}

// trimPunct is strings.Trim(w, "-'!") without building the cutset's
// table on every word.
func trimPunct(w string) string {
	isPunct := func(c byte) bool { return c == '-' || c == '\'' || c == '!' }
	for len(w) > 0 && isPunct(w[0]) {
		w = w[1:]
	}
	for len(w) > 0 && isPunct(w[len(w)-1]) {
		w = w[:len(w)-1]
	}
	return w
}

func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func urlHost(u string) string {
	u = strings.ToLower(u)
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	if i := strings.IndexAny(u, "/?#:"); i >= 0 {
		u = u[:i]
	}
	return u
}
