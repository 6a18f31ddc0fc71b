package bayes

import (
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
)

// TestFilter: no added token is ever reported absent; about 1% of other
// tokens are reported present; the encoding round-trips and refuses
// malformed input.
func TestFilter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 50_000
	f := NewFilter(n)
	added := make([]Token, n)
	for i := range added {
		added[i] = Token(rng.Uint64())
		f.Add(added[i])
	}
	for _, tok := range added {
		if !f.MayContain(tok) {
			t.Fatalf("added token %x reported absent", tok)
		}
	}
	fp := 0
	const probes = 200_000
	for i := 0; i < probes; i++ {
		if f.MayContain(Token(rng.Uint64())) {
			fp++
		}
	}
	if rate := float64(fp) / probes; rate > 0.02 || fp == 0 {
		t.Errorf("false positive rate %.4f, want about 0.01", rate)
	}
	t.Logf("%d tokens in %d bytes: %.2f%% false positives", n, f.Len(), 100*float64(fp)/probes)

	data, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var g Filter
	if err := g.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	for _, tok := range added[:1000] {
		if !g.MayContain(tok) {
			t.Fatal("decoded filter lost a token")
		}
	}
	bad := map[string][]byte{
		"empty":     nil,
		"magic":     append([]byte("XXXX"), data[4:]...),
		"version":   slices.Concat(data[:4], []byte{2}, data[5:]),
		"no probes": slices.Concat(data[:5], []byte{0}, data[6:]),
		"huge":      slices.Concat(data[:6], []byte{40}, data[7:]),
		"truncated": data[:len(data)-1],
	}
	for name, b := range bad {
		if err := new(Filter).UnmarshalBinary(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if small, big := NewFilter(0).Len(), NewFilter(1_000_000).Len(); small != 128 || big != 2<<20 {
		t.Errorf("sizes %d and %d bytes, want 128 and 2 MiB", small, big)
	}
}

// fakeNode serves FilterPath (when filter is set) and CountsPath for a
// model that knows the tokens of known, counting the tokens asked.
func fakeNode(t *testing.T, known map[Token]Counts, serveFilter bool) (*httptest.Server, *atomic.Int64) {
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == FilterPath && serveFilter:
			f := NewFilter(len(known))
			for tok := range known {
				f.Add(tok)
			}
			data, _ := f.MarshalBinary()
			_, _ = w.Write(data)
		case r.URL.Path == CountsPath:
			body, _ := io.ReadAll(r.Body)
			asked.Add(int64(len(body) / 8))
			out := binary.BigEndian.AppendUint64(nil, 40) // spam messages
			out = binary.BigEndian.AppendUint64(out, 60)  // ham messages
			for i := 0; i+8 <= len(body); i += 8 {
				c := known[Token(binary.BigEndian.Uint64(body[i:]))]
				out = binary.BigEndian.AppendUint32(out, c.Spam)
				out = binary.BigEndian.AppendUint32(out, c.Ham)
			}
			_, _ = w.Write(out)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &asked
}

// TestRemoteSkipsTokensTheModelLacks: with the filter, the counts of
// tokens the model never saw are zero without being asked (bar the
// filter's rare false positives), while known tokens still get their
// counts; nodes without the filter endpoint are asked for every token.
func TestRemoteSkipsTokensTheModelLacks(t *testing.T) {
	known := map[Token]Counts{1: {Spam: 3}, 2: {Ham: 5}, 3: {Spam: 1, Ham: 1}}
	var tokens []Token
	for tok := range known {
		tokens = append(tokens, tok)
	}
	for i := 0; i < 500; i++ {
		tokens = append(tokens, Token(1000+i)) // never trained
	}
	for _, withFilter := range []bool{true, false} {
		srv, asked := fakeNode(t, known, withFilter)
		r, err := NewRemote(RemoteConfig{Nodes: []string{srv.URL}})
		if err != nil {
			t.Fatal(err)
		}
		tot, cs, err := r.Counts(context.Background(), tokens)
		if err != nil {
			t.Fatal(err)
		}
		if tot != (Totals{Spam: 40, Ham: 60}) {
			t.Errorf("filter %v: totals %+v", withFilter, tot)
		}
		for i, tok := range tokens {
			if cs[i] != known[tok] {
				t.Errorf("filter %v: token %d counts %+v, want %+v", withFilter, tok, cs[i], known[tok])
			}
		}
		switch {
		case withFilter && (asked.Load() < 3 || asked.Load() > 3+25 || r.Skipped() < 475):
			t.Errorf("with the filter %d tokens were asked and %d skipped; want the 3 known (+ ~1%% false positives)", asked.Load(), r.Skipped())
		case !withFilter && (asked.Load() != int64(len(tokens)) || r.Skipped() != 0):
			t.Errorf("without a filter %d of %d tokens were asked, %d skipped", asked.Load(), len(tokens), r.Skipped())
		}
	}
}
