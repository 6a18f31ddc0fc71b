package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/raftmail/raftmail/cluster"
)

// dkim runs "raftmail admin dkim …": generate prints the TXT record to
// publish; the private key stays in the replicated state.
func (a *admin) dkim(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: raftmail admin dkim generate DOMAIN [--selector S] [--algo ed25519|rsa] | list | del DOMAIN")
	}
	switch args[0] {
	case "generate":
		fs := flag.NewFlagSet("dkim generate", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		sel := fs.String("selector", "", "selector (default raftmailYYYYMM)")
		algo := fs.String("algo", "ed25519", "ed25519 or rsa (RSA-2048)")
		if err := fs.Parse(hoistFlags(fs, args[1:])); err != nil || fs.NArg() != 1 {
			return fmt.Errorf("usage: raftmail admin dkim generate DOMAIN [--selector S] [--algo ed25519|rsa]")
		}
		var v cluster.DKIMView
		body := map[string]string{"domain": fs.Arg(0), "selector": *sel, "algo": *algo}
		if err := a.do(http.MethodPost, "/admin/dkim", body, &v); err != nil {
			return err
		}
		printRecord(a.out, v)
		return nil
	case "list":
		var vs []cluster.DKIMView
		if err := a.do(http.MethodGet, "/admin/dkim", nil, &vs); err != nil {
			return err
		}
		for _, v := range vs {
			printRecord(a.out, v)
		}
		return nil
	case "del":
		if err := need(args, 2, "dkim del DOMAIN"); err != nil {
			return err
		}
		if err := a.do(http.MethodDelete, "/admin/dkim/"+url.PathEscape(args[1]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(a.out, "DKIM key of %s removed\n", args[1])
		return nil
	}
	return fmt.Errorf("unknown dkim command %q", args[0])
}

// printRecord prints a zone-file line (RFC 6376 §3.6.2.1), the record
// split into 255-byte strings as TXT requires.
func printRecord(w io.Writer, v cluster.DKIMView) {
	fmt.Fprintf(w, "; %s key of %s, selector %s\n%s. IN TXT (", v.Algo, v.Domain, v.Selector, v.Name)
	rec := v.Record
	for len(rec) > 0 {
		n := min(len(rec), 255)
		fmt.Fprintf(w, " %q", rec[:n])
		rec = rec[n:]
	}
	fmt.Fprintln(w, " )")
}
