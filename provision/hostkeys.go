package provision

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// knownHostsMu serialises appends to known_hosts by this process.
var knownHostsMu sync.Mutex

// hostKeys checks one dial's host key against known_hosts.
type hostKeys struct {
	cfg   Config
	known ssh.HostKeyCallback // nil when known_hosts does not exist yet

	// Set by Dial before the handshake.
	conn net.Conn
	ctx  context.Context

	mu        sync.Mutex
	prompting bool
	closed    bool
	accepted  ssh.PublicKey // the key the first check accepted
	err       error         // why check refused a key, unwrapped by the handshake
}

func newHostKeys(cfg Config) (*hostKeys, error) {
	h := &hostKeys{cfg: cfg}
	known, err := knownhosts.New(cfg.KnownHosts)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("known hosts: %w", err)
	default:
		h.known = known
	}
	return h, nil
}

// algorithms are the host key algorithms of the keys known_hosts holds for
// addr, so that a server with several host keys offers one we can check (as
// OpenSSH orders them); nil (the default list) for an unknown host.
func (h *hostKeys) algorithms(addr string) []string {
	if h.known == nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if err := h.known(addr, placeholderAddr{}, probeKey); !errors.As(err, &ke) {
		return nil
	}
	var algs []string
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			algs = append(algs, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algs = append(algs, t)
		}
	}
	return algs
}

// probeKey is a key no host has, to list what known_hosts holds for one.
var probeKey = func() ssh.PublicKey {
	k, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		panic(err)
	}
	return k
}()

type placeholderAddr struct{}

func (placeholderAddr) Network() string { return "tcp" }
func (placeholderAddr) String() string  { return "0.0.0.0:0" }

// check is the HostKeyCallback. It runs again at every key re-exchange of
// the connection: then only the key accepted first will do (known_hosts is
// neither asked nor appended to twice).
func (h *hostKeys) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	h.mu.Lock()
	accepted := h.accepted
	h.mu.Unlock()
	var err error
	if accepted != nil {
		if bytes.Equal(accepted.Marshal(), key.Marshal()) {
			return nil
		}
		err = fmt.Errorf("%w: %s offered %s %s at a key re-exchange, after %s %s",
			ErrHostKeyChanged, knownhosts.Normalize(hostname), key.Type(), ssh.FingerprintSHA256(key),
			accepted.Type(), ssh.FingerprintSHA256(accepted))
	} else {
		err = h.decide(hostname, remote, key)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.err = err
		return err
	}
	h.accepted = key
	return nil
}

// refusal is why check refused the host key, or nil.
func (h *hostKeys) refusal() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

func (h *hostKeys) decide(hostname string, remote net.Addr, key ssh.PublicKey) error {
	host := knownhosts.Normalize(hostname)
	fp := ssh.FingerprintSHA256(key)
	if h.known != nil {
		err := h.known(hostname, remote, key)
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &re):
			return fmt.Errorf("host key %s %s of %s is marked @revoked in %s:%d", key.Type(), fp, host, re.Revoked.Filename, re.Revoked.Line)
		case errors.As(err, &ke) && len(ke.Want) > 0:
			w := ke.Want[0]
			return fmt.Errorf("%w: WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED for %s! "+
				"It offers %s %s, but %s:%d holds %s %s. Someone could be eavesdropping (a man-in-the-middle attack), "+
				"or the host was reinstalled. Not accepted, whatever the flags: if the change is expected, remove the old key "+
				"(ssh-keygen -R '%s' -f %s) and connect again",
				ErrHostKeyChanged, host, key.Type(), fp, w.Filename, w.Line, w.Key.Type(), ssh.FingerprintSHA256(w.Key),
				host, h.cfg.KnownHosts)
		case errors.As(err, &ke):
			// Unknown host: decided below.
		default:
			return fmt.Errorf("known hosts: %w", err)
		}
	}
	switch {
	case h.cfg.AcceptNewHostKey:
	case h.cfg.Prompt != nil:
		yes, err := h.prompt(NewHostKey{Host: host, KeyType: key.Type(), Fingerprint: fp})
		if err != nil {
			return fmt.Errorf("host key prompt: %w", err)
		}
		if !yes {
			return fmt.Errorf("%w: %s (%s %s) not trusted: the answer was no", ErrUnknownHost, host, key.Type(), fp)
		}
	default:
		return fmt.Errorf("%w: %s is not in %s; it offers %s %s. If that is the host's key, "+
			"record it with `pulse node add <that host> --accept-new-host-key`, or add it to %s (ssh-keyscan, checked against the host's own "+
			"/etc/ssh/ssh_host_*_key.pub)", ErrUnknownHost, host, h.cfg.KnownHosts, key.Type(), fp, h.cfg.KnownHosts)
	}
	if err := appendKnownHost(h.cfg.KnownHosts, host, key); err != nil {
		return fmt.Errorf("record the host key of %s: %w", host, err)
	}
	return nil
}

// prompt asks Prompt with the dial's deadline lifted: a person answers at
// their own pace. A cancelled ctx still ends the dial after the answer.
func (h *hostKeys) prompt(q NewHostKey) (bool, error) {
	h.mu.Lock()
	h.prompting = true
	h.mu.Unlock()
	yes, err := h.cfg.Prompt(q)
	h.mu.Lock()
	h.prompting = false
	closed := h.closed
	h.mu.Unlock()
	if closed || (h.ctx != nil && h.ctx.Err() != nil && !errors.Is(h.ctx.Err(), context.DeadlineExceeded)) {
		return false, errors.New("dial cancelled while asking")
	}
	if h.conn != nil {
		// The handshake gets the full timeout again after the answer.
		h.conn.SetDeadline(time.Now().Add(h.cfg.DialTimeout))
	}
	return yes, err
}

// closeUnlessPrompting ends the handshake when the dial's ctx is done,
// unless a person is being asked (their answer is not bounded by the dial's
// timeout).
func (h *hostKeys) closeUnlessPrompting() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.prompting {
		return
	}
	h.closed = true
	h.conn.Close()
}

// interrupted says whether the dial's ctx ended the handshake.
func (h *hostKeys) interrupted() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// appendKnownHost adds host's key to file, creating it (0600) and its
// directory (0700) if needed.
func appendKnownHost(file, host string, key ssh.PublicKey) error {
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	// A file that does not end in a newline would glue our line to its last.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if r, err := os.Open(file); err == nil {
			if _, err := r.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
				f.WriteString("\n")
			}
			r.Close()
		}
	}
	if _, err := f.WriteString(knownhosts.Line([]string{host}, key) + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
