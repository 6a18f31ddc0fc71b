package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/raftstore"
)

const adminUsage = `Usage: raftmail admin [--api URL] [--token T] COMMAND

  domain add NAME | domain del NAME | domain list
  user add ADDRESS (--password P | --password-stdin) [--quota BYTES]
  user passwd ADDRESS (--password P | --password-stdin)
  user quota ADDRESS BYTES
  user del ADDRESS | user show ADDRESS | user list
  alias add ADDRESS TARGET   (ADDRESS "@domain" is a catch-all)
  alias del ADDRESS | alias list
  bayes train [--spam PATH]... [--ham PATH]... [--untrain] | bayes status | bayes reset
  queue list | queue stats | queue show ID | queue retry ID|all | queue delete ID | queue bounce ID [REASON]
  dkim generate DOMAIN [--selector S] [--algo ed25519|rsa] | dkim list | dkim del DOMAIN
  backup --out FILE                      a consistent copy of the node's state
  restore --in FILE [--force]            seed a new cluster (its first node) from a backup
  certs --out DIR --node ID=HOST,... ... a cluster CA and certificates (quick start)
`

// apiFlags are the flags of the commands that talk to a node's API.
type apiFlags struct {
	api     string
	token   string
	timeout time.Duration
	tls     clusterTLSFlags
}

func (a *apiFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("RAFTMAIL_API")
	if def == "" {
		def = "http://127.0.0.1:8081"
	}
	fs.StringVar(&a.api, "api", def, "node API URL (env RAFTMAIL_API)")
	fs.StringVar(&a.token, "token", os.Getenv("RAFTMAIL_TOKEN"), "bearer token (env RAFTMAIL_TOKEN)")
	fs.DurationVar(&a.timeout, "timeout", 35*time.Second, "request timeout")
	a.tls.register(fs, "to the node API (an admin certificate)")
}

// client returns an API client with the token and cluster TLS given.
func (a *apiFlags) client() (*cluster.Client, error) {
	m, err := a.tls.load()
	if err != nil {
		return nil, err
	}
	return cluster.NewClientTLS(a.token, m), nil
}

// apiCommand is one run of `raftmail admin` or `raftmail cluster`: the
// words after the flags, a client of the node API and a context bounded
// by --timeout.
type apiCommand struct {
	args   []string
	api    string
	c      *cluster.Client
	ctx    context.Context
	cancel context.CancelFunc
	usage  func()
}

// parseAPICommand parses the API flags of subcommand name, whose help is
// usage, and needs at least minArgs words after them.
func parseAPICommand(name, usage string, args []string, minArgs int) (*apiCommand, error) {
	var a apiFlags
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	a.register(fs)
	if err := fs.Parse(hoistFlags(fs, args)); err != nil {
		return nil, err
	}
	if len(fs.Args()) < minArgs {
		fs.Usage()
		return nil, flag.ErrHelp
	}
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	return &apiCommand{args: fs.Args(), api: a.api, c: c, ctx: ctx, cancel: cancel, usage: fs.Usage}, nil
}

func (a *apiCommand) close() {
	a.cancel()
	a.c.Close()
}

func runAdmin(args []string, out io.Writer) error {
	if len(args) > 0 && args[0] == "certs" {
		return runCerts(args[1:], out)
	}
	cmd, err := parseAPICommand("admin", adminUsage, args, 2)
	if err != nil {
		return err
	}
	defer cmd.close()
	rest := cmd.args
	ad := &admin{apiCommand: cmd, out: out}
	switch rest[0] {
	case "backup":
		return ad.backup(rest[1:])
	case "restore":
		return ad.restore(rest[1:])
	case "domain":
		return ad.domain(rest[1:])
	case "user":
		return ad.user(rest[1:])
	case "alias":
		return ad.alias(rest[1:])
	case "queue":
		return ad.queue(rest[1:])
	case "dkim":
		return ad.dkim(rest[1:])
	case "bayes":
		return ad.bayes(rest[1:])
	}
	cmd.usage()
	return fmt.Errorf("unknown admin command %q", rest[0])
}

type admin struct {
	*apiCommand
	out io.Writer
}

func (a *admin) do(method, path string, body, out any) error {
	return a.c.Do(a.ctx, method, a.api, path, body, out)
}

func need(args []string, n int, usage string) error {
	if len(args) != n {
		return fmt.Errorf("usage: raftmail admin %s", usage)
	}
	return nil
}

func (a *admin) domain(args []string) error {
	switch {
	case len(args) == 2 && args[0] == "add":
		if err := a.do(http.MethodPost, "/admin/domains", map[string]string{"name": args[1]}, nil); err != nil {
			return err
		}
		fmt.Fprintf(a.out, "domain %s added\n", args[1])
		return nil
	case len(args) == 2 && args[0] == "del":
		if err := a.do(http.MethodDelete, "/admin/domains/"+url.PathEscape(args[1]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(a.out, "domain %s removed\n", args[1])
		return nil
	case len(args) == 1 && args[0] == "list":
		var ds []string
		if err := a.do(http.MethodGet, "/admin/domains", nil, &ds); err != nil {
			return err
		}
		for _, d := range ds {
			fmt.Fprintln(a.out, d)
		}
		return nil
	}
	return errors.New("usage: raftmail admin domain add|del NAME | domain list")
}

// readPassword takes --password or --password-stdin from a user subcommand.
func readPassword(args []string) (rest []string, pw string, quota int64, err error) {
	fs := flag.NewFlagSet("user", flag.ContinueOnError)
	fs.StringVar(&pw, "password", "", "password")
	stdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	fs.Int64Var(&quota, "quota", 0, "quota in bytes (0: unlimited)")
	// Allow the address before or after the flags.
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, "", 0, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if *stdin {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, "", 0, fmt.Errorf("read password: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	return pos, pw, quota, nil
}

func (a *admin) user(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: raftmail admin user add|passwd|quota|del|show|list ...")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "add", "passwd":
		pos, pw, quota, err := readPassword(args)
		if err != nil {
			return err
		}
		if err := need(pos, 1, "user "+sub+" ADDRESS --password P"); err != nil {
			return err
		}
		if pw == "" {
			return errors.New("a password is required (--password or --password-stdin)")
		}
		if sub == "add" {
			err = a.do(http.MethodPost, "/admin/accounts", map[string]any{"address": pos[0], "password": pw, "quota": quota}, nil)
		} else {
			err = a.do(http.MethodPut, "/admin/accounts/"+url.PathEscape(pos[0])+"/password", map[string]any{"password": pw}, nil)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(a.out, "user %s: %s done\n", pos[0], sub)
		return nil
	case "quota":
		if err := need(args, 2, "user quota ADDRESS BYTES"); err != nil {
			return err
		}
		q, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil || q < 0 {
			return fmt.Errorf("quota must be a number of bytes ≥ 0, not %q", args[1])
		}
		if err := a.do(http.MethodPut, "/admin/accounts/"+url.PathEscape(args[0])+"/quota", map[string]any{"quota": q}, nil); err != nil {
			return err
		}
		fmt.Fprintf(a.out, "user %s: quota %d bytes\n", args[0], q)
		return nil
	case "del":
		if err := need(args, 1, "user del ADDRESS"); err != nil {
			return err
		}
		if err := a.do(http.MethodDelete, "/admin/accounts/"+url.PathEscape(args[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(a.out, "user %s removed\n", args[0])
		return nil
	case "show":
		if err := need(args, 1, "user show ADDRESS"); err != nil {
			return err
		}
		var v cluster.AccountView
		if err := a.do(http.MethodGet, "/admin/accounts/"+url.PathEscape(args[0]), nil, &v); err != nil {
			return err
		}
		fmt.Fprintf(a.out, "%s  quota %d  used %d\n", v.Address, v.Quota, v.Used)
		tw := tabwriter.NewWriter(a.out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MAILBOX\tUSE\tMESSAGES\tBYTES")
		for _, m := range v.Mailboxes {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", m.Name, m.SpecialUse, m.Messages, m.Bytes)
		}
		return tw.Flush()
	case "list":
		var as []raftstore.Account
		if err := a.do(http.MethodGet, "/admin/accounts", nil, &as); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(a.out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tQUOTA\tUSED")
		for _, ac := range as {
			fmt.Fprintf(tw, "%s\t%d\t%d\n", ac.Address, ac.Quota, ac.Used)
		}
		return tw.Flush()
	}
	return fmt.Errorf("unknown user command %q", sub)
}

func (a *admin) alias(args []string) error {
	switch {
	case len(args) == 3 && args[0] == "add":
		if err := a.do(http.MethodPost, "/admin/aliases", map[string]string{"address": args[1], "target": args[2]}, nil); err != nil {
			return err
		}
		fmt.Fprintf(a.out, "alias %s → %s added\n", args[1], args[2])
		return nil
	case len(args) == 2 && args[0] == "del":
		if err := a.do(http.MethodDelete, "/admin/aliases/"+url.PathEscape(args[1]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(a.out, "alias %s removed\n", args[1])
		return nil
	case len(args) == 1 && args[0] == "list":
		var as []struct{ Address, Target string }
		if err := a.do(http.MethodGet, "/admin/aliases", nil, &as); err != nil {
			return err
		}
		for _, al := range as {
			fmt.Fprintf(a.out, "%s → %s\n", al.Address, al.Target)
		}
		return nil
	}
	return errors.New("usage: raftmail admin alias add ADDRESS TARGET | alias del ADDRESS | alias list")
}
