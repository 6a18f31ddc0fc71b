package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/raftmail/raftmail/raftstore"
)

// Backup and restore over the API (docs/api.md, docs/operations.md):
//
//	GET  /admin/backup            a consistent copy of this node's state (snapshot format)
//	POST /admin/restore[?force=1] seed a new cluster from a backup (leader of a fresh cluster)

const backupIndexHeader = "X-Raftmail-Applied-Index"

// handleBackup streams the state. The applied index is known only once
// the read transaction is open, so it travels in a trailer as well as in
// the log; a failure after the first byte cuts the stream short, which
// the client notices as a missing trailer.
func (n *Node) handleBackup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/zstd")
	w.Header().Set("Trailer", backupIndexHeader)
	info, err := n.store.Backup(w)
	if err != nil {
		n.logger.Error("backup failed", "err", err, "bytes", info.Bytes)
		if info.Bytes == 0 {
			n.writeFailure(w, err)
		}
		return
	}
	w.Header().Set(backupIndexHeader, strconv.FormatUint(info.AppliedIndex, 10))
	n.logger.Info("backup served", "applied_index", info.AppliedIndex, "bytes", info.Bytes, "remote", r.RemoteAddr)
}

func (n *Node) handleRestore(w http.ResponseWriter, r *http.Request) {
	force := r.URL.Query().Get("force") == "1"
	info, err := n.store.RestoreBackup(r.Body, force, 10*time.Minute)
	switch {
	case errors.Is(err, raftstore.ErrNotEmpty):
		writeErr(w, http.StatusConflict, "not_empty", err.Error())
		return
	case errors.Is(err, raftstore.ErrBadBackup):
		writeErr(w, http.StatusBadRequest, "bad_backup", err.Error())
		return
	case err != nil:
		n.writeFailure(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// Backup streams a node's state into w and returns the applied index the
// copy holds (from the answer's trailer; an answer without it was cut
// short and is an error).
func (c *Client) Backup(ctx context.Context, base string, w io.Writer) (uint64, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/admin/backup", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := c.send(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	nbytes, err := io.Copy(w, resp.Body)
	if err != nil {
		return 0, nbytes, fmt.Errorf("backup: read: %w", err)
	}
	idx, err := strconv.ParseUint(resp.Trailer.Get(backupIndexHeader), 10, 64)
	if err != nil {
		return 0, nbytes, errors.New("backup: the stream ended early (no applied index trailer); see the node's log")
	}
	return idx, nbytes, nil
}

// Restore uploads a backup to the leader of a new cluster.
func (c *Client) Restore(ctx context.Context, base string, backup io.Reader, force bool) (raftstore.BackupInfo, error) {
	path := "/admin/restore"
	if force {
		path += "?force=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+path, backup)
	if err != nil {
		return raftstore.BackupInfo{}, err
	}
	req.Header.Set("Content-Type", "application/zstd")
	resp, err := c.send(req)
	if err != nil {
		return raftstore.BackupInfo{}, err
	}
	defer resp.Body.Close()
	var info raftstore.BackupInfo
	return info, decodeAnswer(resp, &info)
}
