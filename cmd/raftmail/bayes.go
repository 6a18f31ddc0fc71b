package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/filters/bayes"
	"github.com/raftmail/raftmail/raftstore/command"
)

const bayesUsage = `raftmail admin bayes train [--spam PATH]... [--ham PATH]... [--untrain]
raftmail admin bayes status | reset

PATH is a folder (searched recursively: .eml files, Maildir cur/ and new/,
mbox files) or a single file. Messages are tokenized here and sent in
batches (POST /admin/bayes/train), each well under a megabyte; training a
message twice counts once, and training it in the other class moves it.
`

// bayes runs "admin bayes".
func (ad *admin) bayes(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(ad.out, bayesUsage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "status":
		var st cluster.BayesStats
		if err := ad.c.Do(ad.ctx, "GET", ad.api, "/admin/bayes", nil, &st); err != nil {
			return err
		}
		fmt.Fprintf(ad.out, "messages trained: %d spam, %d ham\ntokens: %d\nremembered messages: %d\n",
			st.Totals.Spam, st.Totals.Ham, st.Tokens, st.Seen)
		return nil
	case "reset":
		return ad.c.Do(ad.ctx, "POST", ad.api, "/admin/bayes/reset", nil, nil)
	case "train":
		return ad.bayesTrain(args[1:])
	}
	fmt.Fprint(ad.out, bayesUsage)
	return fmt.Errorf("unknown bayes command %q", args[0])
}

func (ad *admin) bayesTrain(args []string) error {
	var spam, ham stringList
	fs := flag.NewFlagSet("bayes train", flag.ContinueOnError)
	fs.Var(&spam, "spam", "folder or file of spam (repeatable)")
	fs.Var(&ham, "ham", "folder or file of ham (repeatable)")
	untrain := fs.Bool("untrain", false, "remove these messages from the model instead")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(spam) == 0 && len(ham) == 0 {
		return errors.New("bayes train: give --spam and/or --ham")
	}
	start := time.Now()
	var sent, changed, cmds int
	progress := func() {
		fmt.Fprintf(os.Stderr, "\rtrained %d messages (%d changed the model) in %d commands, %.0f msgs/s   ",
			sent, changed, cmds, float64(sent)/time.Since(start).Seconds())
	}
	for _, class := range []struct {
		spam  bool
		paths []string
	}{{true, spam}, {false, ham}} {
		b := bayes.NewBatcher(class.spam, *untrain, func(p *command.BayesTrain) error {
			body, err := msgpack.Marshal(p)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var res struct {
				UIDs []uint32 `json:"uids"`
			}
			if err := ad.c.Do(ctx, "POST", ad.api, "/admin/bayes/train", body, &res); err != nil {
				return fmt.Errorf("train: %w", err)
			}
			sent += len(p.Msgs)
			cmds++
			if len(res.UIDs) == 1 {
				changed += int(res.UIDs[0])
			}
			progress()
			return nil
		})
		for _, p := range class.paths {
			if err := eachMessage(p, b.Add); err != nil {
				return err
			}
		}
		if err := b.Flush(); err != nil {
			return err
		}
	}
	progress()
	fmt.Fprintln(os.Stderr)
	fmt.Fprintf(ad.out, "trained %d messages (%d changed the model) in %d commands\n", sent, changed, cmds)
	return nil
}

// eachMessage calls fn with every message under path: files holding one
// message (.eml, Maildir entries) and mbox files (split on "From " lines,
// RFC 4155), in name order.
func eachMessage(path string, fn func([]byte) error) error {
	var files []string
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && d.Name()[0] != '.' {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	sort.Strings(files)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(raw, []byte("From ")) {
			if err := fn(raw); err != nil {
				return err
			}
			continue
		}
		if err := splitMbox(bytes.NewReader(raw), fn); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return nil
}

// splitMbox splits an mbox on its "From " separator lines, undoing
// ">From " quoting (mboxrd).
func splitMbox(r io.Reader, fn func([]byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var cur []byte
	started := false
	flush := func() error {
		if !started {
			return nil
		}
		msg := cur
		cur = nil
		return fn(msg)
	}
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte("From ")) {
			if err := flush(); err != nil {
				return err
			}
			started = true
			continue
		}
		if bytes.HasPrefix(line, []byte(">")) && bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From ")) {
			line = line[1:]
		}
		cur = append(append(cur, line...), '\r', '\n')
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return flush()
}
