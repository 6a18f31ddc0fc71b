package imap

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "imap.test"},
		DNSNames:     []string{"imap.test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// TestTLSListeners: without InsecureAuth, LOGIN before STARTTLS is refused
// (LOGINDISABLED, RFC 9051 §6.2.3); after STARTTLS and on the implicit-TLS
// listener it works.
func TestTLSListeners(t *testing.T) {
	e := newEnv(t, 1)
	srvTLS, pool := selfSigned(t)
	srv, err := New(Config{TLS: srvTLS, Logger: testLogger(t), MaxConnsPerIP: 3}, e.c.Store(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	plain, _ := net.Listen("tcp", "127.0.0.1:0")
	implicit, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(plain) }()
	go func() { _ = srv.ServeTLS(implicit) }()
	clientTLS := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	c, err := imapclient.DialInsecure(plain.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitGreeting(); err != nil {
		t.Fatal(err)
	}
	if !c.Caps().Has(imap.CapLoginDisabled) || !c.Caps().Has(imap.CapStartTLS) {
		t.Errorf("plain caps %v: want LOGINDISABLED and STARTTLS", c.Caps())
	}
	if err := c.Login(alice, alicePw).Wait(); err == nil {
		t.Fatal("LOGIN in clear text without InsecureAuth succeeded")
	}

	st, err := imapclient.DialStartTLS(plain.Addr().String(), &imapclient.Options{TLSConfig: clientTLS})
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer st.Close()
	if err := st.Login(alice, alicePw).Wait(); err != nil {
		t.Fatalf("LOGIN after STARTTLS: %v", err)
	}
	it, err := imapclient.DialTLS(implicit.Addr().String(), &imapclient.Options{TLSConfig: clientTLS})
	if err != nil {
		t.Fatalf("implicit TLS: %v", err)
	}
	defer it.Close()
	if err := it.Login(alice, alicePw).Wait(); err != nil {
		t.Fatalf("LOGIN on IMAPS: %v", err)
	}
	if _, err := it.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	// A fourth connection from this IP is greeted with BYE (MaxConnsPerIP 3).
	over, err := imapclient.DialInsecure(plain.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if err := over.WaitGreeting(); err == nil {
		t.Error("connection over the per-IP limit was greeted with OK")
	}
}
