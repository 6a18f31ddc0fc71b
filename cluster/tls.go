package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftmail/raftmail/raftstore"
)

// MutualTLS is a cluster's mutual TLS: every node, frontend and admin holds
// a certificate signed by the cluster CA and accepts peers only with one.
// It protects the raft transport and the node HTTP API (docs/operations.md
// "TLS between nodes").
type MutualTLS struct {
	// Server is for listeners: the own certificate, and client
	// certificates required and verified against the cluster CA.
	Server *tls.Config
	// Client is for dialers: the own certificate, and servers verified
	// against the cluster CA (host name included).
	Client *tls.Config
}

// LoadMutualTLS reads the cluster CA certificate and this party's key pair
// (PEM files, as "raftmail admin certs" writes them).
func LoadMutualTLS(caFile, certFile, keyFile string) (*MutualTLS, error) {
	if caFile == "" || certFile == "" || keyFile == "" {
		return nil, errors.New("cluster TLS needs a CA, a certificate and a key file")
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster certificate: %w", err)
	}
	return NewMutualTLS(caPEM, cert)
}

// NewMutualTLS builds the configurations from a PEM CA bundle and a key
// pair.
func NewMutualTLS(caPEM []byte, cert tls.Certificate) (*MutualTLS, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("cluster CA: no PEM certificate found")
	}
	return &MutualTLS{
		Server: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientCAs:    pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			MinVersion:   tls.VersionTLS13,
		},
		Client: &tls.Config{
			Certificates: []tls.Certificate{cert},
			RootCAs:      pool,
			MinVersion:   tls.VersionTLS13,
		},
	}, nil
}

// NewClientTLS returns an API client that presents the client certificate
// of m and verifies nodes against the cluster CA (m nil: plain HTTP).
func NewClientTLS(token string, m *MutualTLS) *Client {
	return &Client{token: token, http: NewHTTPClient(m)}
}

// tlsStream is a raft.StreamLayer over mutual TLS: incoming connections
// must present a certificate of the cluster CA before raft reads a byte,
// and outgoing ones verify the peer the same way.
type tlsStream struct {
	net.Listener
	advertise net.Addr
	client    *tls.Config
}

var _ raft.StreamLayer = (*tlsStream)(nil)

// Dial implements raft.StreamLayer: the TLS handshake is done within
// timeout, so a peer without a valid certificate fails here.
func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	conn, err := tls.DialWithDialer(d, "tcp", string(addr), s.client)
	if err != nil {
		return nil, fmt.Errorf("raft tls dial %s: %w", addr, err)
	}
	return conn, nil
}

// Addr implements net.Listener with the advertised address.
func (s *tlsStream) Addr() net.Addr { return s.advertise }

// advertiseAddr is a host:port kept as written: a host name stays a name,
// so peers dial (and verify the certificate of) the name, not an IP it
// resolved to once.
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// NewTLSTransport listens on bind and returns a raft transport over mutual
// TLS that advertises advertise.
func NewTLSTransport(bind, advertise string, m *MutualTLS, logger *slog.Logger) (*raft.NetworkTransport, error) {
	if _, _, err := net.SplitHostPort(advertise); err != nil {
		return nil, fmt.Errorf("raft address %q: %w", advertise, err)
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", bind, err)
	}
	stream := &tlsStream{Listener: tls.NewListener(ln, m.Server), advertise: advertiseAddr(advertise), client: m.Client}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 4,
		Timeout: 10 * time.Second,
		Logger:  raftstore.HclogAdapter(logger),
	}), nil
}

// listenAPI opens the API listener, wrapped in TLS when the cluster uses
// mutual TLS.
func (c *Config) listenAPI() (net.Listener, error) {
	ln, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("api listen %s: %w", c.HTTPAddr, err)
	}
	if c.TLS != nil {
		ln = tls.NewListener(ln, c.TLS.Server)
	}
	return ln, nil
}

// raftTransport returns the TLS raft transport when the cluster uses mutual
// TLS and none was given (nil: raftstore's plain TCP).
func (c *Config) raftTransport() (raft.Transport, error) {
	if c.TLS == nil || c.Store.Transport != nil {
		return c.Store.Transport, nil
	}
	return NewTLSTransport(c.RaftAddr, c.RaftAddr, c.TLS, c.Logger)
}

// apiScheme is the scheme of this node's API URL.
func (c *Config) apiScheme() string {
	if c.TLS != nil {
		return "https://"
	}
	return "http://"
}

// verifiedPeer reports whether the request came over mutual TLS with a
// certificate of the cluster CA (such callers need no bearer token).
func verifiedPeer(r *http.Request) bool {
	return r.TLS != nil && len(r.TLS.VerifiedChains) > 0
}
