package rules_test

import (
	"context"
	"strings"
	"testing"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/filters/rules"
)

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"unknown kind", "rawbody X /a/ 1", "unknown rule kind"},
		{"no regexp", "body X a 1", "want /regexp/"},
		{"unterminated", "body X /abc 1", "unterminated"},
		{"bad score", "body X /a/ lots", "score"},
		{"bad regexp", "body X /(/ 1", "missing closing"},
		{"header without name", "header X", "names no header"},
		{"duplicate", "body X /a/ 1\nbody X /b/ 1", "defined twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rules.Parse(strings.NewReader(tc.in), "t.rules")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRules(t *testing.T) {
	rs, err := rules.Parse(strings.NewReader(`
# comment
header SUBJ_FREE Subject /free\s+money/i 2.5 free money
body   PILLS /\bviagra\b/i 3 pills
body   SLASH /a\/b/ 0.5 escaped slash
uri    BADHOST /evil\.example/ 1.25
`), "t.rules")
	if err != nil {
		t.Fatal(err)
	}
	c := rules.New(append(rs, rules.Default()...))
	for _, tc := range []struct {
		name  string
		msg   string
		score float64
		hits  string
	}{
		{"clean", "Subject: lunch\r\n\r\nSee you at noon.\r\n", 0, ""},
		{"encoded subject", "Subject: =?utf-8?q?FREE_Money?=\r\n\r\nhi\r\n", 2.5, "SUBJ_FREE"},
		{"html body stripped", "Subject: x\r\nContent-Type: text/html\r\n\r\n<p>buy <b>via</b>gra</p><p>now VIAGRA</p><a href=\"http://evil.example/x\">x</a>\r\n", 6.25, "PILLS,BADHOST,PHARMA"},
		{"qp body", "Subject: x\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na/=\r\nb\r\n", 0.5, "SLASH"},
		{"gtube", "Subject: test\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n", 8, "GTUBE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := c.NewState(context.Background(), &filters.ConnInfo{})
			v := st.Body(context.Background(), &filters.Message{Body: filters.BytesBody(tc.msg)})
			got := ""
			for _, h := range v.Headers {
				got = h.Value
			}
			if v.Score != tc.score || got != tc.hits {
				t.Fatalf("score %v hits %q, want %v %q", v.Score, got, tc.score, tc.hits)
			}
		})
	}
}

func TestRequiredLiterals(t *testing.T) {
	for _, tc := range []struct {
		rule string
		text string
		want bool
	}{
		{`body X /(?i)\bviagra\b/ 1`, "buy VIAGRA now", true},
		{`body X /viagra|cialis/i 1`, "some cialis", true},
		{`body X /click here (?:now|today)/i 1`, "Click Here Today", true},
		{`body X /a+b?/ 1`, "a", true}, // no prefilter: too short
	} {
		rs, err := rules.Parse(strings.NewReader(tc.rule), "t")
		if err != nil {
			t.Fatal(err)
		}
		st, _ := rules.New(rs).NewState(context.Background(), &filters.ConnInfo{})
		v := st.Body(context.Background(), &filters.Message{Body: filters.BytesBody("Subject: s\r\n\r\n" + tc.text + "\r\n")})
		if (v.Score > 0) != tc.want {
			t.Errorf("%s on %q: score %v", tc.rule, tc.text, v.Score)
		}
	}
}
