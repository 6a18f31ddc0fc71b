package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/raftmail/raftmail/cluster"
)

// queue runs "raftmail admin queue …" against the node API (/queue).
func (a *admin) queue(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: raftmail admin queue list|stats|show ID|retry ID|all|delete ID|bounce ID [REASON]")
	}
	switch args[0] {
	case "list":
		var qs []cluster.QueueSummary
		if err := a.do(http.MethodGet, "/queue", nil, &qs); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tAGE\tSIZE\tFROM\tPENDING\tATTEMPTS\tNEXT\tLAST REPLY")
		for _, q := range qs {
			next := "-"
			if q.NextAttempt != 0 {
				next = time.Until(time.Unix(0, q.NextAttempt)).Round(time.Second).String()
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d/%d\t%d\t%s\t%s\n", q.ID, time.Since(time.Unix(0, q.Created)).Round(time.Second),
				q.Size, orNull(q.From), q.Pending, q.Recipients, q.Attempts, next, q.LastReply)
		}
		return tw.Flush()
	case "stats":
		return a.printJSON(http.MethodGet, "/queue/stats")
	case "show":
		if err := need(args, 2, "queue show ID"); err != nil {
			return err
		}
		return a.printJSON(http.MethodGet, "/queue/"+url.PathEscape(args[1]))
	case "retry", "bounce", "delete":
		if len(args) < 2 || len(args) > 3 || (len(args) == 3 && args[0] != "bounce") {
			return fmt.Errorf("usage: raftmail admin queue %s ID", args[0])
		}
		method, path := http.MethodPost, "/queue/"+url.PathEscape(args[1])+"/"+args[0]
		if args[0] == "delete" {
			method, path = http.MethodDelete, "/queue/"+url.PathEscape(args[1])
		}
		if len(args) == 3 {
			path += "?reason=" + url.QueryEscape(args[2])
		}
		if err := a.do(method, path, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(a.out, "queue %s %s: done\n", args[1], args[0])
		return nil
	}
	return fmt.Errorf("unknown queue command %q", args[0])
}

func (a *admin) printJSON(method, path string) error {
	var v any
	if err := a.do(method, path, nil, &v); err != nil {
		return err
	}
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orNull(from string) string {
	if from == "" {
		return "<>"
	}
	return from
}
