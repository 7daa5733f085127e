package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/doctor"
	"github.com/pulsefaas/pulse/provision"
)

// Bounds of the node checks: the snapshot of the node's files (one SSH
// session), and each engine call or command over SSH, which takes a
// session of its own and a docker CLI started on the node.
const (
	nodeSnapshotTimeout = 30 * time.Second
	nodeCallTimeout     = 10 * time.Second
	nodeCheckTimeout    = 20 * time.Second
)

// nodeDoctor runs doctor's node checks (doctor.RunNode) on the node c
// reaches, over c: its files from one snapshot, its commands, its engine.
// A snapshot that fails leaves the file checks its error to report.
func nodeDoctor(ctx context.Context, c *provision.Client) ([]doctor.Result, error) {
	sctx, cancel := context.WithTimeout(ctx, nodeSnapshotTimeout)
	root, err := c.Snapshot(sctx, doctor.NodeFiles())
	cancel()
	if err != nil {
		root = failedFS{err}
	}
	eng, err := c.EngineClient()
	if err != nil {
		return nil, err
	}
	p := doctor.Probes{
		Root:         root,
		Exec:         c.CombinedOutput,
		Docker:       nodeEngine{eng, "ssh://" + c.Target().String()},
		CallTimeout:  nodeCallTimeout,
		CheckTimeout: nodeCheckTimeout,
	}
	defer p.Close()
	return doctor.RunNode(ctx, p), nil
}

// nodeEngine is a node's engine over SSH, which doctor reports at its SSH
// address (the client's own host is a placeholder).
type nodeEngine struct {
	*client.Client
	at string
}

func (e nodeEngine) DaemonHost() string { return e.at }

// failedFS answers every open with the error that kept the files from
// being read.
type failedFS struct{ err error }

func (f failedFS) Open(name string) (fs.File, error) {
	return nil, &fs.PathError{Op: "open", Path: name, Err: f.err}
}

// printNodeResults writes one line per check: "host: doctor: check:
// STATUS detail (hint)".
func printNodeResults(w io.Writer, host string, results []doctor.Result) {
	for _, r := range results {
		line := fmt.Sprintf("%s: doctor: %s: %s %s", host, r.Check, r.Status, r.Detail)
		if r.Hint != "" && r.Status != doctor.OK {
			line += " (" + r.Hint + ")"
		}
		fmt.Fprintln(w, line)
	}
}

// nodeFailures is nil, or the error that refuses a node on which a check
// failed: what failed, and how to fix it.
func nodeFailures(t provision.Target, results []doctor.Result) error {
	var fails []string
	for _, r := range results {
		if r.Status != doctor.FAIL {
			continue
		}
		s := r.Check + ": " + r.Detail
		if r.Hint != "" {
			s += " (" + r.Hint + ")"
		}
		fails = append(fails, s)
	}
	if len(fails) == 0 {
		return nil
	}
	return fmt.Errorf("node %s not added: %s; fix it on the node, then run pulse node add again", t, strings.Join(fails, "; "))
}
