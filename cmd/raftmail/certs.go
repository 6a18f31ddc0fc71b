package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/raftmail/raftmail/cluster"
)

const certsUsage = `Usage: raftmail admin certs --out DIR [--node ID=HOST[,HOST...]]... [--frontend NAME[=HOST,...]]... [--admin NAME]

Makes a cluster CA (DIR/ca.pem, DIR/ca-key.pem; reused when present, so a
later run adds certificates for new nodes) and a certificate and key per
node, frontend and admin (DIR/NAME.pem, DIR/NAME-key.pem). Each is valid
as TLS server and client, for its name and the HOSTs (DNS names or IPs)
the others use to reach it: a node's raft and API host names.
Keep ca-key.pem off the servers.
`

func runCerts(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), certsUsage); fs.PrintDefaults() }
	dir := fs.String("out", "", "directory for the CA, certificates and keys (required)")
	days := fs.Int("days", 825, "validity of the certificates in days")
	var nodes, frontends, admins stringListRaw
	fs.Var(&nodes, "node", "ID=HOST[,HOST...]: a node and the names/IPs it is reached at (repeatable)")
	fs.Var(&frontends, "frontend", "NAME[=HOST,...]: a frontend (repeatable)")
	fs.Var(&admins, "admin", "NAME: an admin client certificate (repeatable; default \"admin\")")
	loopback := fs.Bool("loopback", false, "add localhost, 127.0.0.1 and ::1 to every certificate (single-machine tests)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || len(nodes) == 0 {
		fs.Usage()
		return errors.New("--out and at least one --node are required")
	}
	if len(admins) == 0 {
		admins = append(admins, "admin")
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	validity := time.Duration(*days) * 24 * time.Hour
	ca, created, err := loadOrMakeCA(*dir, validity)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(out, "CA: %s (key %s: keep it off the servers)\n", filepath.Join(*dir, "ca.pem"), filepath.Join(*dir, "ca-key.pem"))
	}
	var extra []string
	if *loopback {
		extra = []string{"localhost", "127.0.0.1", "::1"}
	}
	for _, group := range []stringListRaw{nodes, frontends, admins} {
		for _, spec := range group {
			name, hosts, _ := strings.Cut(spec, "=")
			var hs []string
			for _, h := range strings.Split(hosts, ",") {
				if h = strings.TrimSpace(h); h != "" {
					hs = append(hs, h)
				}
			}
			if err := issueTo(ca, *dir, name, append(hs, extra...), validity); err != nil {
				return err
			}
			fmt.Fprintf(out, "%s: %s.pem, %s-key.pem (hosts %s)\n", name, name, name, strings.Join(append([]string{name}, hs...), ","))
		}
	}
	return nil
}

func loadOrMakeCA(dir string, validity time.Duration) (*cluster.CA, bool, error) {
	certPEM, errC := os.ReadFile(filepath.Join(dir, "ca.pem"))
	keyPEM, errK := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if errC == nil && errK == nil {
		ca, err := cluster.LoadCA(certPEM, keyPEM)
		return ca, false, err
	}
	ca, err := cluster.NewCA("raftmail cluster CA", validity*2)
	if err != nil {
		return nil, false, err
	}
	kp, err := ca.KeyPEM()
	if err != nil {
		return nil, false, err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca-key.pem"), kp, 0o600); err != nil {
		return nil, false, err
	}
	return ca, true, os.WriteFile(filepath.Join(dir, "ca.pem"), ca.PEM, 0o644)
}

func issueTo(ca *cluster.CA, dir, name string, hosts []string, validity time.Duration) error {
	if name == "" || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("bad certificate name %q", name)
	}
	certPEM, keyPEM, err := ca.Issue(name, hosts, validity)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), keyPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".pem"), certPEM, 0o644)
}

// stringListRaw is a repeatable flag whose values may contain commas.
type stringListRaw []string

func (s *stringListRaw) String() string     { return strings.Join(*s, " ") }
func (s *stringListRaw) Set(v string) error { *s = append(*s, v); return nil }
