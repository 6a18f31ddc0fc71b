package cluster_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/raftstore/command"
)

func newCA(t *testing.T, name string) *cluster.CA {
	t.Helper()
	ca, err := cluster.NewCA(name, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestMutualTLSCluster: three nodes over mutual TLS replicate, forward and
// answer API calls from holders of a cluster certificate without a token;
// a node or client without a certificate of the cluster CA can neither
// join, replicate nor call the API.
func TestMutualTLSCluster(t *testing.T) {
	ca := newCA(t, "cluster CA")
	oc := newOpsCluster(t, ca)
	for _, id := range []string{"n1", "n2", "n3"} {
		oc.add(id)
	}
	oc.waitMembers(3)
	n1 := oc.node("n1")
	if got := n1.APIURL(); got[:8] != "https://" {
		t.Fatalf("API URL %q, want https", got)
	}
	// Forwarding from a follower to the leader goes over TLS.
	var follower *cluster.Node
	for _, n := range oc.running() {
		if !n.Store().IsLeader() {
			follower = n
		}
	}
	oc.addAccount("alice@example.test")
	if err := deliver(follower, "alice@example.test", "over tls"); err != nil {
		t.Fatalf("deliver through a follower: %v", err)
	}
	oc.waitConverged()

	t.Run("admin certificate calls the API without a token", func(t *testing.T) {
		admin, err := ca.MutualTLS("admin")
		if err != nil {
			t.Fatal(err)
		}
		c := cluster.NewClientTLS("", admin)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Do(ctx, http.MethodPost, n1.APIURL(), "/admin/domains", map[string]string{"name": "admin.test"}, nil); err != nil {
			t.Fatalf("admin call with a cluster certificate: %v", err)
		}
	})

	rogueCA := newCA(t, "rogue CA")
	rogue, err := rogueCA.MutualTLS("rogue", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("API refuses a foreign certificate and no certificate", func(t *testing.T) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca.PEM)
		noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		defer noCert.CloseIdleConnections()
		// The server is genuine: the client trusts the cluster CA, but
		// presents the rogue CA's certificate (or none).
		trustsCA := &cluster.MutualTLS{Client: rogue.Client.Clone()}
		trustsCA.Client.RootCAs = pool
		for name, do := range map[string]func() error{
			"foreign certificate": func() error {
				c := cluster.NewClientTLS("", trustsCA)
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, err := c.Status(ctx, n1.APIURL())
				return err
			},
			"no certificate": func() error {
				resp, err := noCert.Get(n1.APIURL() + "/status")
				if err == nil {
					resp.Body.Close()
				}
				return err
			},
			"plain http": func() error {
				resp, err := http.Get("http://" + n1.StatusNow().APIAddr[len("https://"):] + "/status")
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				_, _ = io.Copy(io.Discard, resp.Body)
				if resp.StatusCode >= 300 {
					return errors.New(resp.Status)
				}
				return nil
			},
		} {
			if err := do(); err == nil {
				t.Errorf("%s: API call succeeded, want a refused handshake", name)
			}
		}
	})

	t.Run("raft refuses a foreign transport", func(t *testing.T) {
		trans, err := cluster.NewTLSTransport("127.0.0.1:0", "127.0.0.1:1", rogue, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer trans.Close()
		leader := oc.leader()
		var resp raft.AppendEntriesResponse
		err = trans.AppendEntries("n1", raft.ServerAddress(leader.Store().RaftAddr()),
			&raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("rogue"), Addr: []byte("127.0.0.1:1")}, Term: 1000}, &resp)
		if err == nil {
			t.Fatal("AppendEntries from a foreign certificate succeeded")
		}
		plain, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		var vote raft.RequestVoteResponse
		err = plain.RequestVote("n1", raft.ServerAddress(leader.Store().RaftAddr()),
			&raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("rogue")}, Term: 1000}, &vote)
		if err == nil && vote.Granted {
			t.Fatal("a plain TCP RequestVote was granted")
		}
		if leader.Store().Raft().Stats()["term"] == "1000" {
			t.Fatal("a foreign RPC moved the term")
		}
	})

	t.Run("a node with a foreign certificate cannot join", func(t *testing.T) {
		cfg := oc.config("rogue", rogueCA)
		cfg.Join = []string{n1.APIURL()}
		r, err := cluster.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		clustertest.Eventually(t, 20*time.Second, "a refused join attempt", func() bool {
			return oc.logs["rogue"].contains("join attempt failed")
		})
		for _, m := range n1.StatusNow().Servers {
			if m.ID == "rogue" {
				t.Fatal("the rogue node is in the configuration")
			}
		}
	})
	// The cluster still works after the attempts.
	oc.propose(oc.anyRunning(), &command.AddDomain{Name: "after.test"})
	oc.waitConverged()
}
