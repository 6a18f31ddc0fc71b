package bayes

import (
	"context"
	"math"
	"sort"
)

// Counts is one token's counts: in how many spam and ham messages it was
// seen.
type Counts struct{ Spam, Ham uint32 }

// Totals is the number of messages trained per class.
type Totals struct{ Spam, Ham uint64 }

// Model answers token counts; implementations: Memory (tests, benchmarks),
// Remote (frontends, over the node API, cached), a store read on nodes.
type Model interface {
	Counts(ctx context.Context, tokens []Token) (Totals, []Counts, error)
}

// Params tune the classifier; the zero value takes SpamBayes' defaults.
type Params struct {
	// S is the strength of the prior x for rare tokens (default 0.45).
	S float64
	// X is the probability assumed for an unseen token (default 0.5).
	X float64
	// MinDev skips tokens whose probability is within MinDev of 0.5
	// (default 0.1).
	MinDev float64
	// MaxClues is the most tokens combined (default 300; measured on the corpus, 150 caught 2 points less spam).
	MaxClues int
}

func (p *Params) setDefaults() {
	if p.S == 0 {
		p.S = 0.45
	}
	if p.X == 0 {
		p.X = 0.5
	}
	if p.MinDev == 0 {
		p.MinDev = 0.1
	}
	if p.MaxClues == 0 {
		p.MaxClues = 300
	}
}

// Classify returns the spam probability of a message from its tokens'
// counts: Robinson's f(w) per token, then Fisher's chi-square combining of
// the most significant ones (SpamBayes chi2_spamprob). 0.5 means no
// opinion (an untrained model, or no significant token).
func Classify(tot Totals, counts []Counts, p Params) (prob float64, clues int) {
	p.setDefaults()
	if tot.Spam == 0 || tot.Ham == 0 {
		return 0.5, 0
	}
	fs := make([]float64, 0, len(counts))
	for _, c := range counts {
		n := float64(c.Spam) + float64(c.Ham)
		if n == 0 {
			continue
		}
		spamRatio := float64(c.Spam) / float64(tot.Spam)
		hamRatio := float64(c.Ham) / float64(tot.Ham)
		pw := spamRatio / (spamRatio + hamRatio)
		f := (p.S*p.X + n*pw) / (p.S + n)
		if math.Abs(f-0.5) >= p.MinDev {
			fs = append(fs, f)
		}
	}
	if len(fs) == 0 {
		return 0.5, 0
	}
	if len(fs) > p.MaxClues {
		sort.Slice(fs, func(i, j int) bool { return math.Abs(fs[i]-0.5) > math.Abs(fs[j]-0.5) })
		fs = fs[:p.MaxClues]
	}
	var lnS, lnH float64 // sums of ln(1-f) and ln(f)
	for _, f := range fs {
		f = math.Min(math.Max(f, 1e-6), 1-1e-6)
		lnS += math.Log(1 - f)
		lnH += math.Log(f)
	}
	n := 2 * len(fs)
	s := 1 - chi2Q(-2*lnS, n)
	h := 1 - chi2Q(-2*lnH, n)
	return (s - h + 1) / 2, len(fs)
}

// chi2Q is the probability that a chi-square variable with v (even)
// degrees of freedom exceeds x2.
func chi2Q(x2 float64, v int) float64 {
	m := x2 / 2
	term := math.Exp(-m)
	sum := term
	for i := 1; i < v/2; i++ {
		term *= m / float64(i)
		sum += term
	}
	return math.Min(sum, 1)
}
