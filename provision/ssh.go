package provision

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Config says how to reach nodes. The zero value uses ssh's defaults.
type Config struct {
	// IdentityFiles are private key files to offer, after the agent's keys.
	// Default: those of ~/.ssh/id_ed25519, id_ecdsa and id_rsa that exist.
	// A listed file that cannot be read is an error.
	IdentityFiles []string
	// AgentSocket is the SSH agent's socket; default $SSH_AUTH_SOCK. With
	// neither, no agent is used.
	AgentSocket string
	// KnownHosts is the known_hosts file host keys are checked against and
	// new ones appended to; default ~/.ssh/known_hosts.
	KnownHosts string
	// AcceptNewHostKey accepts the key of a host known_hosts does not list
	// yet and appends it (--accept-new-host-key). A changed key is never
	// accepted.
	AcceptNewHostKey bool
	// Prompt, when set and AcceptNewHostKey is not, asks whether to trust a
	// host seen for the first time; yes appends its key to known_hosts.
	Prompt func(NewHostKey) (bool, error)
	// DialTimeout bounds the TCP connect and the SSH handshake (a prompt's
	// time excluded); default 15 s.
	DialTimeout time.Duration
	// KeepAliveInterval is how often an idle or busy connection sends an
	// OpenSSH keepalive request (default DefaultKeepAliveInterval; negative:
	// none); one unanswered for KeepAliveTimeout (default
	// DefaultKeepAliveTimeout) closes the connection, so a node that froze or
	// vanished fails what waits on it instead of hanging for minutes.
	KeepAliveInterval time.Duration
	KeepAliveTimeout  time.Duration
}

// NewHostKey is what Prompt is asked about.
type NewHostKey struct {
	Host        string // as known_hosts writes it: host, or [host]:port
	KeyType     string // ssh-ed25519, ...
	Fingerprint string // SHA256:...
}

// DefaultDialTimeout is Config.DialTimeout's default.
const DefaultDialTimeout = 15 * time.Second

// Sentinel errors, for callers that map outcomes (exit codes, hints).
var (
	ErrUnknownHost    = errors.New("unknown host key")
	ErrHostKeyChanged = errors.New("host key changed")
	ErrAuth           = errors.New("SSH authentication failed")
)

// withDefaults fills what c leaves empty.
func (c Config) withDefaults() (Config, error) {
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.KeepAliveInterval == 0 {
		c.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if c.KeepAliveTimeout <= 0 {
		c.KeepAliveTimeout = DefaultKeepAliveTimeout
	}
	if c.AgentSocket == "" {
		c.AgentSocket = os.Getenv("SSH_AUTH_SOCK")
	}
	if c.KnownHosts == "" || c.IdentityFiles == nil {
		home, err := os.UserHomeDir()
		if err != nil {
			return c, fmt.Errorf("ssh config: no home directory for the default ~/.ssh files: %w", err)
		}
		dir := filepath.Join(home, ".ssh")
		if c.KnownHosts == "" {
			c.KnownHosts = filepath.Join(dir, "known_hosts")
		}
		if c.IdentityFiles == nil {
			c.IdentityFiles = []string{}
			for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
				if p := filepath.Join(dir, name); fileExists(p) {
					c.IdentityFiles = append(c.IdentityFiles, p)
				}
			}
		}
	}
	return c, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Client is an SSH connection to one node.
type Client struct {
	target   Target
	ssh      *ssh.Client
	timedOut atomic.Bool   // a keepalive went unanswered
	done     chan struct{} // closed when the connection has ended
}

// Target is the node c is connected to.
func (c *Client) Target() Target { return c.target }

// Close closes the connection and every session on it.
func (c *Client) Close() error {
	return c.ssh.Close()
}

// Dial connects to t and authenticates with the agent's keys and the key
// files. The host key is checked against known_hosts (see Config).
func Dial(ctx context.Context, cfg Config, t Target) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Client, error) { return nil, fmt.Errorf("ssh %s: %w", t, err) }
	keys, err := loadKeys(cfg)
	if err != nil {
		return fail(err)
	}
	closeAgent := func() {
		if keys.agentConn != nil {
			keys.agentConn.Close()
		}
	}
	hk, err := newHostKeys(cfg)
	if err != nil {
		closeAgent()
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.Addr())
	if err != nil {
		closeAgent()
		return fail(err)
	}
	// The handshake has no context: closing the connection ends it when ctx
	// is done (the timeout or the caller's cancel). A prompt pauses this.
	hk.conn, hk.ctx = conn, ctx
	stop := context.AfterFunc(ctx, func() { hk.closeUnlessPrompting() })
	cc, chans, reqs, err := ssh.NewClientConn(conn, t.Addr(), &ssh.ClientConfig{
		User:              t.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeysCallback(keys.signers)},
		HostKeyCallback:   hk.check,
		HostKeyAlgorithms: hk.algorithms(t.Addr()),
	})
	stop()
	if err == nil && hk.interrupted() {
		cc.Close()
		err = errors.New("handshake interrupted")
	}
	if err != nil {
		conn.Close()
		closeAgent()
		switch {
		case hk.refusal() != nil:
			return fail(hk.refusal())
		case hk.interrupted():
			return fail(fmt.Errorf("connect and handshake within %v: %w", cfg.DialTimeout, ctx.Err()))
		case strings.Contains(err.Error(), "unable to authenticate"):
			// x/crypto has no error type for this on the client side.
			return fail(fmt.Errorf("%w for user %q on %s: tried publickey with %s; the server said: %v",
				ErrAuth, t.User, t.Host, keys.describe(), err))
		}
		return fail(err)
	}
	conn.SetDeadline(time.Time{}) // a prompt's answer may have set one
	closeAgent()                  // needed for authentication only
	done := make(chan struct{})
	c := &Client{target: t, ssh: ssh.NewClient(cc, chans, reqs), done: done}
	go func() {
		_ = c.ssh.Wait()
		close(done)
	}()
	if cfg.KeepAliveInterval > 0 {
		go c.keepAlive(cfg.KeepAliveInterval, cfg.KeepAliveTimeout)
	}
	return c, nil
}

// keys are the signers Dial offers, and what it knows about those it cannot.
type keys struct {
	agentConn net.Conn
	agent     agent.ExtendedAgent
	files     []ssh.Signer
	fileNames []string
	encrypted []string // encrypted key files the agent does not hold
	agentKeys int
	agentErr  error
}

func loadKeys(cfg Config) (*keys, error) {
	k := &keys{}
	if cfg.AgentSocket != "" {
		conn, err := net.DialTimeout("unix", cfg.AgentSocket, 5*time.Second)
		if err != nil {
			k.agentErr = fmt.Errorf("SSH agent at %s: %w", cfg.AgentSocket, err)
		} else {
			k.agentConn, k.agent = conn, agent.NewClient(conn)
		}
	}
	var held map[string]bool // the agent's keys, by blob
	if k.agent != nil {
		list, err := k.agent.List()
		if err != nil {
			k.agentErr = fmt.Errorf("SSH agent at %s: list keys: %w", cfg.AgentSocket, err)
		}
		held = map[string]bool{}
		k.agentKeys = len(list)
		for _, key := range list {
			held[string(key.Marshal())] = true
		}
	}
	for _, f := range cfg.IdentityFiles {
		pem, err := os.ReadFile(f)
		if err != nil {
			k.closeAgent()
			return nil, fmt.Errorf("identity file: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(pem)
		var missing *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &missing):
			if missing.PublicKey != nil && held[string(missing.PublicKey.Marshal())] {
				continue // the agent signs with it
			}
			k.encrypted = append(k.encrypted, f)
		case err != nil:
			k.closeAgent()
			return nil, fmt.Errorf("identity file %s: %w", f, err)
		default:
			k.files = append(k.files, signer)
			k.fileNames = append(k.fileNames, f)
		}
	}
	if len(held) == 0 && len(k.files) == 0 {
		err := fmt.Errorf("%w: no key to offer: %s", ErrAuth, k.describe())
		k.closeAgent()
		return nil, err
	}
	return k, nil
}

func (k *keys) closeAgent() {
	if k.agentConn != nil {
		k.agentConn.Close()
	}
}

// signers are the agent's keys, then the key files'.
func (k *keys) signers() ([]ssh.Signer, error) {
	var s []ssh.Signer
	if k.agent != nil {
		as, err := k.agent.Signers()
		if err != nil {
			return nil, fmt.Errorf("SSH agent: %w", err)
		}
		s = append(s, as...)
	}
	return append(s, k.files...), nil
}

// describe says which keys were offered and which could not be, with the
// fix for each.
func (k *keys) describe() string {
	var parts []string
	switch {
	case k.agentErr != nil:
		parts = append(parts, k.agentErr.Error())
	case k.agent != nil:
		parts = append(parts, fmt.Sprintf("the SSH agent's %d key(s)", k.agentKeys))
	default:
		parts = append(parts, "no SSH agent (SSH_AUTH_SOCK is not set)")
	}
	if len(k.fileNames) > 0 {
		parts = append(parts, "key file(s) "+strings.Join(k.fileNames, ", "))
	} else if len(k.encrypted) == 0 {
		parts = append(parts, "no key file (~/.ssh/id_ed25519, id_ecdsa, id_rsa or --identity)")
	}
	for _, f := range k.encrypted {
		parts = append(parts, fmt.Sprintf("%s is encrypted and not in the agent: load it with `ssh-add %s` (with SSH_AUTH_SOCK set)", f, f))
	}
	return strings.Join(parts, "; ")
}
