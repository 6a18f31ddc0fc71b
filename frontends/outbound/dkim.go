package outbound

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/raftmail/raftmail/raftstore"
)

// signedHeaders are the fields signed (RFC 6376 §5.4.1 recommends From,
// and these are what a forger would change).
var signedHeaders = []string{"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID", "In-Reply-To",
	"References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"}

// signerCache keeps parsed keys by domain, dropped when the stored key
// changes.
type signerCache struct {
	mu sync.Mutex
	m  map[string]cachedSigner
}

type cachedSigner struct {
	sum    [32]byte
	signer crypto.Signer
}

func newSignerCache() *signerCache { return &signerCache{m: map[string]cachedSigner{}} }

func (c *signerCache) get(k raftstore.DKIMKey) (crypto.Signer, error) {
	sum := sha256.Sum256(k.Key)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs, ok := c.m[k.Domain]; ok && cs.sum == sum {
		return cs.signer, nil
	}
	key, err := x509.ParsePKCS8PrivateKey(k.Key)
	if err != nil {
		return nil, fmt.Errorf("dkim key of %s: %w", k.Domain, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("dkim key of %s: %T cannot sign", k.Domain, key)
	}
	c.m[k.Domain] = cachedSigner{sum: sum, signer: signer}
	return signer, nil
}

// messageFor reads a queued body, drops the Return-Path the local copies
// carry (RFC 5321 §4.4: added at final delivery, not sent on) and signs
// it with the key of the From header's domain, or else the envelope
// sender's (RFC 6376). Without a key it goes unsigned.
func (s *Service) messageFor(e raftstore.QueueEntry) ([]byte, error) {
	var raw []byte
	var key raftstore.DKIMKey
	var haveKey bool
	err := s.st.View(func(r *raftstore.ReadTx) error {
		var err error
		if raw, err = r.Body(e.BlobID); err != nil {
			return err
		}
		for _, d := range signingDomains(raw, e.From) {
			if k, err := r.DKIMKey(d); err == nil {
				key, haveKey = k, true
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	raw = stripReturnPath(raw)
	if !haveKey {
		return raw, nil
	}
	signer, err := s.signers.get(key)
	if err != nil {
		s.logger.Warn("dkim: unusable key, sending unsigned", "domain", key.Domain, "err", err)
		return raw, nil
	}
	var out bytes.Buffer
	out.Grow(len(raw) + 1024)
	err = dkim.Sign(&out, bytes.NewReader(raw), &dkim.SignOptions{Domain: key.Domain, Selector: key.Selector,
		Signer: signer, HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization: dkim.CanonicalizationRelaxed, HeaderKeys: present(raw, signedHeaders)})
	if err != nil {
		s.logger.Warn("dkim: signing failed, sending unsigned", "domain", key.Domain, "err", err)
		return raw, nil
	}
	s.metrics.Signed.Add(1)
	return out.Bytes(), nil
}

// signingDomains lists the From header's domain, then the envelope's.
func signingDomains(raw []byte, envFrom string) []string {
	var out []string
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw))).ReadMIMEHeader()
	if err == nil || len(h) > 0 {
		if addrs, err := mail.ParseAddressList(h.Get("From")); err == nil && len(addrs) > 0 {
			if at := strings.LastIndexByte(addrs[0].Address, '@'); at > 0 {
				out = append(out, strings.ToLower(addrs[0].Address[at+1:]))
			}
		}
	}
	if at := strings.LastIndexByte(envFrom, '@'); at > 0 {
		out = append(out, strings.ToLower(envFrom[at+1:]))
	}
	return out
}

// present returns the fields of want that the header has (signing an
// absent field would forbid adding it, RFC 6376 §5.4, which we do not
// want for Cc or Reply-To), From always.
func present(raw []byte, want []string) []string {
	h, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw))).ReadMIMEHeader()
	out := []string{"From"}
	for _, k := range want {
		if k != "From" && len(h.Values(k)) > 0 {
			out = append(out, k)
		}
	}
	return out
}

// stripReturnPath removes leading Return-Path fields.
func stripReturnPath(raw []byte) []byte {
	for len(raw) > 12 && strings.EqualFold(string(raw[:12]), "Return-Path:") {
		i := bytes.Index(raw, []byte("\n"))
		if i < 0 {
			return raw
		}
		raw = raw[i+1:]
		for len(raw) > 0 && (raw[0] == ' ' || raw[0] == '\t') { // folded continuation
			j := bytes.Index(raw, []byte("\n"))
			if j < 0 {
				return raw
			}
			raw = raw[j+1:]
		}
	}
	return raw
}
