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
	return hashString(hashPrefix(prefix), word)
}

// hashPrefix is the FNV-1a state after "prefix:".
func hashPrefix(prefix string) uint64 {
	h := uint64(hashString(fnvOffset, prefix))
	h ^= ':'
	h *= fnvPrime
	return h
}

func hashString(h uint64, s string) Token {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return Token(h)
}

// hashLower hashes s lower-cased (ASCII letters only, like the words
// themselves), without building the lower-cased copy.
func hashLower(h uint64, s string) Token {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint64(c)
		h *= fnvPrime
	}
	return Token(h)
}

// maxTokens bounds the distinct tokens taken from one message.
const maxTokens = 3000

// Tokenize returns the distinct tokens of a parsed message, sorted (a
// deterministic order: training commands built from it are stable): the
// first maxTokens distinct ones in the order below.
func Tokenize(t *mimetext.Text) []Token {
	return distinctTokens(rawTokens(t))
}

// rawTokens hashes every token of a message in order, repeats included.
func rawTokens(t *mimetext.Text) []Token {
	raw := make([]Token, 0, 1024)
	emit := func(tok Token) { raw = append(raw, tok) }
	add := func(prefix, word string) { emit(hashToken(prefix, word)) }
	words(t.Subject, hashPrefix("s"), emit)
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
		hk := hashPrefix(k)
		for _, v := range t.Header[k] {
			words(v, hk, emit)
		}
	}
	body := hashPrefix("")
	for _, p := range t.Parts {
		add("ct", p.Type)
		words(p.Text, body, emit)
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
	return raw
}

// distinctTokens returns the first maxTokens distinct tokens of raw, in
// ascending order. Sorting a copy and dropping repeats is the usual path
// (measured: cheaper than a set, which cost a map growing through several
// sizes per message); only a message over the cap replays raw's order
// through a set to keep exactly its first maxTokens.
func distinctTokens(raw []Token) []Token {
	out := slices.Clone(raw)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) <= maxTokens {
		return out
	}
	set := make(map[Token]struct{}, maxTokens)
	for _, tok := range raw {
		if len(set) == maxTokens {
			break
		}
		set[tok] = struct{}{}
	}
	out = out[:0]
	for tok := range set {
		out = append(out, tok)
	}
	slices.Sort(out)
	return out
}

// wordByte marks the ASCII bytes words are made of.
var wordByte = func() (t [utf8.RuneSelf]bool) {
	for c := range utf8.RuneSelf {
		r := rune(c)
		t[c] = unicode.IsLetter(r) || unicode.IsDigit(r) || r == '$' || r == '-' || r == '\'' || r == '!'
	}
	return t
}()

// words emits the token (under the prefix state hp) of each word of s:
// runs of letters, digits, '$', '-', '\” and '!' of 3 to 24 bytes,
// lower-cased; longer runs become a "skip" token of their length class
// (Graham; SpamBayes).
func words(s string, hp uint64, emit func(Token)) {
	start := -1
	flush := func(end int) {
		if start < 0 {
			return
		}
		w := trimPunct(s[start:end])
		start = -1
		switch {
		case len(w) < 3:
		case len(w) > 24:
			h := uint64(hashString(hp, "skip"))
			h ^= uint64('a' + min(len(w)/10, 25))
			h *= fnvPrime
			emit(Token(h))
		default:
			emit(hashLower(hp, w))
		}
	}
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if wordByte[c] {
				if start < 0 {
					start = i
				}
			} else {
				flush(i)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
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
