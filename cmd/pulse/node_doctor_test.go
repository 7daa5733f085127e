package main

import (
	"bytes"
	"errors"
	"io/fs"
	"testing"

	"github.com/pulsefaas/pulse/doctor"
	"github.com/pulsefaas/pulse/provision"
)

// TestNodeDoctorLines: one line per check with its hint unless OK; a FAIL
// refuses the node with what failed and the fix, WARNs do not.
func TestNodeDoctorLines(t *testing.T) {
	results := []doctor.Result{
		{Check: "docker", Status: doctor.FAIL, Detail: "unreachable at ssh://root@n1:22: docker: not found", Hint: "install docker.io"},
		{Check: "host-ports", Status: doctor.WARN, Detail: "dockerd 32768-60999, not reserved", Hint: "run Pulse's playbook (make up, or ansible/site.yml on a cluster)"},
		{Check: "inotify", Status: doctor.OK, Detail: "max_user_watches 524288", Hint: "ignored on OK"},
	}
	var out bytes.Buffer
	printNodeResults(&out, "n1", results)
	want := "n1: doctor: docker: FAIL unreachable at ssh://root@n1:22: docker: not found (install docker.io)\n" +
		"n1: doctor: host-ports: WARN dockerd 32768-60999, not reserved (run Pulse's playbook (make up, or ansible/site.yml on a cluster))\n" +
		"n1: doctor: inotify: OK max_user_watches 524288\n"
	if out.String() != want {
		t.Errorf("lines:\n%s\nwant\n%s", out.String(), want)
	}

	target := provision.Target{User: "root", Host: "n1", Port: 22}
	err := nodeFailures(target, results)
	const wantErr = "node root@n1:22 not added: docker: unreachable at ssh://root@n1:22: docker: not found (install docker.io); fix it on the node, then run pulse node add again"
	if err == nil || err.Error() != wantErr {
		t.Errorf("refusal: %v\nwant %s", err, wantErr)
	}
	if err := nodeFailures(target, results[1:]); err != nil {
		t.Errorf("WARN and OK refuse the node: %v", err)
	}
}

// TestFailedFS: a snapshot that failed is every file check's error.
func TestFailedFS(t *testing.T) {
	why := errors.New("snapshot of n1's files: no base64 command")
	_, err := fs.ReadFile(failedFS{why}, "proc/sys/fs/inotify/max_user_watches")
	if !errors.Is(err, why) {
		t.Errorf("err = %v, want the snapshot's", err)
	}
}
