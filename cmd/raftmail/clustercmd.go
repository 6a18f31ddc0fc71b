package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
)

const clusterUsage = `Usage: raftmail cluster [--api URL] [--token T] COMMAND

  status                         the node's view: state, leader, indexes, members
  join ID RAFT_ADDR API_URL      add a node as a voter (through the leader)
  remove ID                      remove a node from the cluster
  digest [API_URL ...]           state digest of each node (default: every member)
`

func runCluster(args []string, out io.Writer) error {
	cmd, err := parseAPICommand("cluster", clusterUsage, args, 1)
	if err != nil {
		return err
	}
	defer cmd.close()
	rest, c, ctx := cmd.args, cmd.c, cmd.ctx
	switch rest[0] {
	case "status":
		st, err := c.Status(ctx, cmd.api)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "node %s (pid %d): %s, leader %s, term %d\n", st.ID, st.PID, st.State, st.LeaderID, st.Term)
		fmt.Fprintf(out, "applied %d, commit %d, last %d\n", st.AppliedIndex, st.CommitIndex, st.LastIndex)
		tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSUFFRAGE\tRAFT\tAPI")
		for _, m := range st.Servers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.ID, m.Suffrage, m.RaftAddr, m.APIAddr)
		}
		return tw.Flush()
	case "join":
		if len(rest) != 4 {
			return errors.New("usage: raftmail cluster join ID RAFT_ADDR API_URL")
		}
		body := map[string]string{"id": rest[1], "raft_addr": rest[2], "api_addr": rest[3]}
		if err := c.Do(ctx, http.MethodPost, cmd.api, "/cluster/join", body, nil); err != nil {
			return err
		}
		fmt.Fprintf(out, "node %s joined\n", rest[1])
		return nil
	case "remove":
		if len(rest) != 2 {
			return errors.New("usage: raftmail cluster remove ID")
		}
		if err := c.Do(ctx, http.MethodPost, cmd.api, "/cluster/remove", map[string]string{"id": rest[1]}, nil); err != nil {
			return err
		}
		fmt.Fprintf(out, "node %s removed\n", rest[1])
		return nil
	case "digest":
		apis := rest[1:]
		if len(apis) == 0 {
			st, err := c.Status(ctx, cmd.api)
			if err != nil {
				return err
			}
			for _, m := range st.Servers {
				apis = append(apis, m.APIAddr)
			}
		}
		var first string
		same := true
		for i, api := range apis {
			d, err := c.Digest(ctx, api)
			if err != nil {
				fmt.Fprintf(out, "%s\terror: %v\n", api, err)
				same = false
				continue
			}
			fmt.Fprintf(out, "%s\t%s\tapplied %d\t%s\n", d.ID, api, d.AppliedIndex, d.Digest)
			if i == 0 {
				first = d.Digest
			} else if d.Digest != first {
				same = false
			}
		}
		if !same {
			return errors.New("digests differ (a node may still be catching up: compare at equal applied index)")
		}
		return nil
	}
	cmd.usage()
	return fmt.Errorf("unknown cluster command %q", rest[0])
}
