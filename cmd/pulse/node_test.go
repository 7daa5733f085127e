package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/provision"
)

// TestNodeConfigSSH: docker_host accepts ssh://[user@]host[:port] and
// refuses what is not one, saying what to write; the SSH keys come from the
// file and are overridden by the environment, identity files as a YAML list
// or comma-separated.
func TestNodeConfigSSH(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	envOf := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}
	tests := []struct {
		name     string
		file     string
		env      map[string]string
		target   provision.Target
		identity []string
		known    string
		wantErr  string
	}{
		{name: "ssh with user and port", env: map[string]string{"PULSE_DOCKER_HOST": "ssh://admin@10.0.0.1:2222"},
			target: provision.Target{User: "admin", Host: "10.0.0.1", Port: 2222}},
		{name: "ssh without a user", env: map[string]string{"PULSE_DOCKER_HOST": "ssh://node1"},
			target: provision.Target{User: currentUserName(t), Host: "node1", Port: 22}},
		{name: "DOCKER_HOST ssh", env: map[string]string{"DOCKER_HOST": "ssh://root@[fd00::1]:22"},
			target: provision.Target{User: "root", Host: "fd00::1", Port: 22}},
		{name: "ssh keys from the file", file: write("ssh.yaml", "docker_host: ssh://root@n1\nssh_known_hosts: /k/known_hosts\nssh_identity_files:\n  - /k/a\n  - /k/b\n"),
			target: provision.Target{User: "root", Host: "n1", Port: 22}, known: "/k/known_hosts", identity: []string{"/k/a", "/k/b"}},
		{name: "ssh keys from the environment", file: write("ssh2.yaml", "ssh_known_hosts: /k/known_hosts\nssh_identity_files: [/k/a]\n"),
			env:   map[string]string{"PULSE_SSH_KNOWN_HOSTS": "/e/kh", "PULSE_SSH_IDENTITY_FILES": "/e/a,/e/b"},
			known: "/e/kh", identity: []string{"/e/a", "/e/b"}},
		{name: "ssh with a path", env: map[string]string{"PULSE_DOCKER_HOST": "ssh://root@n1/var/run/docker.sock"},
			wantErr: `docker_host: bad SSH target "ssh://root@n1/var/run/docker.sock": no path, query or fragment allowed; want ssh://[user@]host[:port] (set it in the config file or PULSE_DOCKER_HOST)`},
		{name: "ssh with a password", env: map[string]string{"PULSE_DOCKER_HOST": "ssh://root:secret@n1"},
			wantErr: "no password: SSH uses keys"},
		{name: "ssh with a bad port", env: map[string]string{"PULSE_DOCKER_HOST": "ssh://root@n1:99999"},
			wantErr: `port "99999" is not in 1-65535`},
		{name: "ssh files under ~", env: map[string]string{"PULSE_SSH_KNOWN_HOSTS": "~/.ssh/pulse_known_hosts", "PULSE_SSH_IDENTITY_FILES": "~/.ssh/pulse"},
			known: "~/.ssh/pulse_known_hosts", identity: []string{"~/.ssh/pulse"}},
		{name: "relative known_hosts", env: map[string]string{"PULSE_SSH_KNOWN_HOSTS": "known_hosts"},
			wantErr: `ssh file "known_hosts" (ssh_known_hosts, ssh_identity_files): want an absolute path or one starting with ~/`},
		{name: "relative identity file", env: map[string]string{"PULSE_SSH_IDENTITY_FILES": "/k/a,keys/b"},
			wantErr: `ssh file "keys/b"`},
		{name: "no scheme", env: map[string]string{"PULSE_DOCKER_HOST": "root@n1"},
			wantErr: `docker_host "root@n1": want unix:///var/run/docker.sock, tcp://host:2376 or ssh://[user@]host[:port]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(tc.file, envOf(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			target, ok, err := cfg.sshDockerHost()
			if err != nil || ok != (tc.target != provision.Target{}) || target != tc.target {
				t.Errorf("sshDockerHost = %+v, %v, %v; want %+v", target, ok, err, tc.target)
			}
			if cfg.SSHKnownHosts != tc.known || !slices.Equal(cfg.SSHIdentityFiles, tc.identity) {
				t.Errorf("ssh_known_hosts %q, ssh_identity_files %q; want %q, %q", cfg.SSHKnownHosts, cfg.SSHIdentityFiles, tc.known, tc.identity)
			}
		})
	}
}

func currentUserName(t *testing.T) string {
	t.Helper()
	tg, err := provision.ParseTarget("h")
	if err != nil {
		t.Fatal(err)
	}
	return tg.User
}

// TestNodeSSHConfig: the CLI's SSH settings: defaults under HOME (not the
// process's own), --identity before the config's files, the flag for new
// host keys, and no prompt when stdin is not a terminal.
func TestNodeSSHConfig(t *testing.T) {
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "id_ecdsa"), []byte("k"), 0o600)
	env := func(k string) string {
		if k == "HOME" {
			return home
		}
		return ""
	}
	a := &app{streams: streams{in: strings.NewReader("")}, env: env}
	got := a.sshConfig()
	if got.KnownHosts != filepath.Join(home, ".ssh", "known_hosts") || !slices.Equal(got.IdentityFiles, []string{filepath.Join(home, ".ssh", "id_ecdsa")}) ||
		got.Prompt != nil || got.AcceptNewHostKey {
		t.Errorf("defaults: %+v", got)
	}
	a.cfg.SSHIdentityFiles, a.cfg.SSHKnownHosts = []string{"/c/key"}, "/c/kh"
	a.identity, a.acceptNewHostKey = []string{"/flag/key"}, true
	got = a.sshConfig()
	if got.KnownHosts != "/c/kh" || !slices.Equal(got.IdentityFiles, []string{"/flag/key", "/c/key"}) || !got.AcceptNewHostKey {
		t.Errorf("configured: %+v", got)
	}
	// ~/ is the HOME the CLI sees; and /dev/null, a character device, is
	// no terminal to ask on.
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	a.in = devNull
	a.cfg.SSHIdentityFiles, a.cfg.SSHKnownHosts, a.identity = []string{"~/.ssh/pulse"}, "~/.ssh/pulse_known_hosts", nil
	got = a.sshConfig()
	if got.KnownHosts != filepath.Join(home, ".ssh", "pulse_known_hosts") || !slices.Equal(got.IdentityFiles, []string{filepath.Join(home, ".ssh", "pulse")}) || got.Prompt != nil {
		t.Errorf("under ~ with stdin /dev/null: %+v", got)
	}
}

// TestNodePromptHostKey: the first-contact question and its answers.
func TestNodePromptHostKey(t *testing.T) {
	for answer, want := range map[string]bool{"yes\n": true, "y\n": true, "YES\n": true, "no\n": false, "\n": false, "maybe\n": false} {
		var errb strings.Builder
		a := &app{streams: streams{in: strings.NewReader(answer), err: &errb}, env: func(string) string { return "" }}
		a.cfg.SSHKnownHosts = "/k/known_hosts"
		yes, err := a.promptHostKey(provision.NewHostKey{Host: "10.0.0.2", KeyType: "ssh-ed25519", Fingerprint: "SHA256:abc"})
		if err != nil || yes != want {
			t.Errorf("answer %q: %v, %v; want %v", answer, yes, err, want)
		}
		for _, w := range []string{"The authenticity of host 10.0.0.2 can't be established.", "ssh-ed25519 key fingerprint is SHA256:abc.", "/k/known_hosts (yes/no)? "} {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("prompt %q lacks %q", errb.String(), w)
			}
		}
	}
	a := &app{streams: streams{in: strings.NewReader(""), err: &strings.Builder{}}, env: func(string) string { return "" }}
	if _, err := a.promptHostKey(provision.NewHostKey{}); err == nil {
		t.Error("no answer (EOF): want an error")
	}
}

// TestNodeUsageErrors: the node commands' command-line mistakes exit 2
// before anything is dialled.
func TestNodeUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"node"}, "pulse node needs a command: add, ls or rm"},
		{[]string{"node", "frob"}, `unknown command "frob" for "pulse node"`},
		{[]string{"node", "add"}, "add takes [user@]host[:port]... (got 0 argument(s))"},
		{[]string{"node", "add", "root@-oProxyCommand=x"}, `bad SSH target "root@-oProxyCommand=x"`},
		{[]string{"node", "add", "n1", "--label", "zone"}, `--label "zone": want key=value`},
		{[]string{"node", "add", "n1", "--label", "pulse.ssh=x@y"}, "--label pulse.ssh: pulse sets that label itself"},
		{[]string{"node", "rm"}, "rm takes NAME... (got 0 argument(s))"},
		{[]string{"node", "ls", "x"}, `unknown command "x" for "pulse node ls"`},
		{[]string{"--config", filepath.Join(dir, "x.yaml"), "node", "ls"}, "x.yaml"},
	} {
		code, stdout, stderr := pulse(t, dir, map[string]string{"PULSE_DOCKER_HOST": "unix:///nonexistent.sock"}, tc.args...)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("pulse %s: exit %d, stdout %q, stderr:\n%s\nwant exit 2 and %q", strings.Join(tc.args, " "), code, stdout, stderr, tc.want)
		}
	}
}

// TestNodeDistributorOneNode: on a one-node swarm (the host's engine),
// deploy keeps the local distributor.
func TestNodeDistributorOneNode(t *testing.T) {
	cli := engineOrSkip(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil || len(nodes) != 1 {
		t.Skipf("the host's swarm has %d nodes (%v): want 1", len(nodes), err)
	}
	a := &app{streams: streams{in: strings.NewReader("")}, env: os.Getenv, cli: cli}
	dist, n, err := a.distributor(ctx, "x")
	if _, ok := dist.(function.LocalDistributor); err != nil || !ok || n != 1 {
		t.Errorf("distributor: %T, %d, %v; want LocalDistributor for 1 node", dist, n, err)
	}
}
