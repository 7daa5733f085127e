package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"

	"github.com/pulsefaas/pulse/provision"
)

// context is the command's context (set before any command runs).
func (a *app) context() context.Context {
	if a.ctx != nil {
		return a.ctx
	}
	return context.Background()
}

// sshEngine connects to docker_host ssh://t: the manager's engine over
// SSH (provision.Dial, then `docker system dial-stdio` on it). The SSH
// connection lives until the command ends (run closes it).
func (a *app) sshEngine(t provision.Target) (*client.Client, error) {
	ctx := a.context()
	c, err := provision.Dial(ctx, a.sshConfig(), t)
	if errors.Is(err, provision.ErrUnknownHost) && !a.acceptNewHostKey {
		// Only `pulse node add` has the flag: adding the manager itself
		// records its key (and labels it).
		return nil, fmt.Errorf("docker_host %s: %w (for docker_host, `pulse node add %s --accept-new-host-key` records it and labels the manager)", a.cfg.DockerHost, err, t)
	}
	if err != nil {
		return nil, fmt.Errorf("docker_host %s: %w", a.cfg.DockerHost, err)
	}
	eng, err := c.Engine(ctx)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("docker_host %s: %w", a.cfg.DockerHost, err)
	}
	a.sshc, a.cli = c, eng
	return eng, nil
}

// sshConfig is how the CLI reaches nodes over SSH: the config's
// ssh_known_hosts and ssh_identity_files (with ~ taken from HOME), `pulse
// node add`'s --identity and --accept-new-host-key, the agent of
// SSH_AUTH_SOCK, and a prompt about new host keys when stdin is a terminal.
func (a *app) sshConfig() provision.Config {
	cfg := provision.Config{
		KnownHosts:       a.cfg.SSHKnownHosts,
		IdentityFiles:    append(append([]string{}, a.identity...), a.cfg.SSHIdentityFiles...),
		AgentSocket:      a.env("SSH_AUTH_SOCK"),
		AcceptNewHostKey: a.acceptNewHostKey,
	}
	home := a.env("HOME")
	cfg.KnownHosts = expandHome(cfg.KnownHosts, home)
	for i, f := range cfg.IdentityFiles {
		cfg.IdentityFiles[i] = expandHome(f, home)
	}
	if cfg.KnownHosts == "" && home != "" {
		cfg.KnownHosts = filepath.Join(home, ".ssh", "known_hosts")
	}
	if len(cfg.IdentityFiles) == 0 && home != "" {
		for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			if p := filepath.Join(home, ".ssh", name); fileExists(p) {
				cfg.IdentityFiles = append(cfg.IdentityFiles, p)
			}
		}
	}
	if isTerminal(a.in) {
		cfg.Prompt = a.promptHostKey
	}
	return cfg
}

// expandHome replaces a leading ~/ of path with home, as a shell would.
func expandHome(path, home string) string {
	if rest, ok := strings.CutPrefix(path, "~/"); ok && home != "" {
		return filepath.Join(home, rest)
	}
	return path
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// isTerminal says whether r is a terminal (not merely a character
// device: /dev/null is one, and under cron or systemd a prompt on it would
// read EOF instead of failing with the fingerprint and the flag).
func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// promptMu asks one question at a time (nodes are dialled in parallel).
var promptMu sync.Mutex

// promptHostKey asks about a host seen for the first time, as ssh does.
func (a *app) promptHostKey(k provision.NewHostKey) (bool, error) {
	promptMu.Lock()
	defer promptMu.Unlock()
	fmt.Fprintf(a.err, "The authenticity of host %s can't be established.\n%s key fingerprint is %s.\n"+
		"Compare it with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on it).\n"+
		"Trust it and record it in %s (yes/no)? ", k.Host, k.KeyType, k.Fingerprint, a.sshConfigKnownHosts())
	line, err := bufio.NewReader(a.in).ReadString('\n')
	if err != nil && line == "" {
		return false, fmt.Errorf("no answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "yes", "y":
		return true, nil
	}
	return false, nil
}

func (a *app) sshConfigKnownHosts() string {
	if a.cfg.SSHKnownHosts != "" {
		return a.cfg.SSHKnownHosts
	}
	return "~/.ssh/known_hosts"
}
