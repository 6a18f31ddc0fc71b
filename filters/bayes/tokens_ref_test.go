package bayes

// The tokenizer as it was before its rewrite for speed (map-based set,
// strings.Trim, a copy of each word), kept verbatim as the reference that
// TestTokenizeMatchesReference compares against: token values and the
// cap's choice must not change, or trained counts would stop matching.

import (
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/raftmail/raftmail/filters/mimetext"
)

func refTokenize(t *mimetext.Text) []Token {
	set := make(map[Token]struct{}, 256)
	add := func(prefix, word string) {
		if len(set) < maxTokens {
			set[refHashToken(prefix, word)] = struct{}{}
		}
	}
	addw := func(prefix string) func([]byte) {
		hp := refHashPrefix(prefix)
		return func(w []byte) {
			if len(set) < maxTokens {
				set[refHashBytes(hp, w)] = struct{}{}
			}
		}
	}
	refWords(t.Subject, addw("s"))
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
			refWords(v, fn)
		}
	}
	body := addw("")
	for _, p := range t.Parts {
		add("ct", p.Type)
		refWords(p.Text, body)
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
func refWords(s string, fn func([]byte)) {
	start := -1
	var arr [32]byte
	buf := arr[:0]
	flush := func(end int) {
		if start < 0 {
			return
		}
		w := s[start:end]
		start = -1
		w = strings.Trim(w, "-'!")
		switch {
		case len(w) < 3:
		case len(w) > 24:
			buf = append(append(buf[:0], "skip"...), byte('a'+min(len(w)/10, 25)))
			fn(buf)
		default:
			buf = refAppendLower(buf[:0], w)
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

func refAppendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func refHashToken(prefix, word string) Token {
	return refHashBytes(refHashPrefix(prefix), []byte(word))
}

// hashPrefix is the FNV-1a state after "prefix:".
func refHashPrefix(prefix string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(prefix); i++ {
		h ^= uint64(prefix[i])
		h *= fnvPrime
	}
	h ^= ':'
	h *= fnvPrime
	return h
}

func refHashBytes(h uint64, word []byte) Token {
	for _, c := range word {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return Token(h)
}
