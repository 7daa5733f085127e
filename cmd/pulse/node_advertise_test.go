package main

import (
	"strings"
	"testing"
)

// TestNodeAddAdvertiseAddrUsage: --advertise-addr names one node's address,
// so it is refused with several targets or a value docker would not take,
// before anything is dialled.
func TestNodeAddAdvertiseAddrUsage(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"PULSE_DOCKER_HOST": "unix:///nonexistent.sock", "HOME": dir}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"node", "add", "root@10.0.0.12", "root@10.0.0.13", "--advertise-addr", "10.1.0.12"}, "one node at a time"},
		{[]string{"node", "add", "root@10.0.0.12", "--advertise-addr", "10.1.0.12:2377"}, "want the node's IP address or an interface name"},
	} {
		code, _, stderr := pulse(t, dir, env, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("pulse %s: exit %d, stderr %q; want exit %d with %q", strings.Join(tc.args, " "), code, stderr, exitUsage, tc.want)
		}
	}
}
