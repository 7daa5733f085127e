package main

// The push profile's own SSH client: provision.Dial with one change, the
// cipher list, which provision.Config does not expose. The engine client
// over it works as provision's does (a session per connection running
// `docker system dial-stdio` on the node), so a push through it differs
// from pulse's only in the cipher. Host keys are checked against the lab's
// known_hosts, as provision does.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/pulsefaas/pulse/function"
)

// The ciphers the profile compares (x/crypto's names). x/crypto's default
// order puts aes128-gcm first, so that is what pulse uses with OpenSSH.
const (
	cipherAESGCM = "aes128-gcm@openssh.com"
	cipherChaCha = "chacha20-poly1305@openssh.com"
	cipherAESCTR = "aes128-ctr"
)

var pushCiphers = []string{cipherAESGCM, cipherChaCha, cipherAESCTR}

// sshDialCipher connects to root@addr:22 with the lab's key, the host key
// checked against knownHosts, offering only cipher.
func sshDialCipher(ctx context.Context, keyFile, knownHosts, addr, cipher string) (*ssh.Client, error) {
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: key: %w", addr, err)
	}
	hk, err := knownhosts.New(knownHosts)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: known hosts: %w", addr, err)
	}
	cfg := &ssh.ClientConfig{
		User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hk,
		// lab.sh records each node's ed25519 key only.
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Config:            ssh.Config{Ciphers: []string{cipher}},
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(addr, "22"))
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	cc, chans, reqs, err := ssh.NewClientConn(conn, net.JoinHostPort(addr, "22"), cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ssh %s with %s: %w", addr, cipher, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}

// stdioSession is a net.Conn over a session running `docker system
// dial-stdio` (provision's is not exported).
type stdioSession struct {
	s   *ssh.Session
	in  io.WriteCloser
	out io.Reader
}

func (c *stdioSession) Read(p []byte) (int, error)       { return c.out.Read(p) }
func (c *stdioSession) Write(p []byte) (int, error)      { return c.in.Write(p) }
func (c *stdioSession) Close() error                     { return c.s.Close() }
func (c *stdioSession) CloseWrite() error                { return c.in.Close() }
func (c *stdioSession) LocalAddr() net.Addr              { return &net.UnixAddr{Name: "local", Net: "ssh"} }
func (c *stdioSession) RemoteAddr() net.Addr             { return &net.UnixAddr{Name: "node", Net: "ssh"} }
func (c *stdioSession) SetDeadline(time.Time) error      { return nil }
func (c *stdioSession) SetReadDeadline(time.Time) error  { return nil }
func (c *stdioSession) SetWriteDeadline(time.Time) error { return nil }

// stdioEngine is a Docker client for the node's engine over sc.
func stdioEngine(sc *ssh.Client) (*client.Client, error) {
	tr := &http.Transport{MaxConnsPerHost: 6, MaxIdleConns: 6, IdleConnTimeout: 30 * time.Second}
	return client.NewClientWithOpts(
		client.WithHTTPClient(&http.Client{Transport: tr}),
		client.WithHost("http://docker"),
		func(*client.Client) error {
			tr.Proxy = nil
			tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
				s, err := sc.NewSession()
				if err != nil {
					return nil, err
				}
				in, err := s.StdinPipe()
				if err != nil {
					s.Close()
					return nil, err
				}
				out, err := s.StdoutPipe()
				if err != nil {
					s.Close()
					return nil, err
				}
				if err := s.Start("docker system dial-stdio"); err != nil {
					s.Close()
					return nil, err
				}
				return &stdioSession{s: s, in: in, out: out}, nil
			}
			return nil
		},
		client.WithAPIVersionNegotiation(),
	)
}

// cipherDial reaches n's engine with cipher only.
func (l *clusterLab) cipherDial(cipher string) func(ctx context.Context, n labNode) (function.NodeEngine, error) {
	return func(ctx context.Context, n labNode) (function.NodeEngine, error) {
		sc, err := sshDialCipher(ctx, l.keyFile, l.knownHosts, n.Addr, cipher)
		if err != nil {
			return function.NodeEngine{}, err
		}
		eng, err := stdioEngine(sc)
		if err != nil {
			sc.Close()
			return function.NodeEngine{}, err
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ping, err := eng.Ping(pctx)
		cancel()
		if err != nil {
			eng.Close()
			sc.Close()
			return function.NodeEngine{}, fmt.Errorf("docker over ssh %s: ping: %w", n.Addr, err)
		}
		eng.NegotiateAPIVersionPing(ping)
		return function.NodeEngine{Node: n.Name, API: eng, Close: func() error { eng.Close(); return sc.Close() }}, nil
	}
}

// sshSink sends data to `cat > /dev/null` on sc and waits for it to exit:
// the cost of the SSH transport alone.
func sshSink(sc *ssh.Client, data []byte) error {
	s, err := sc.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	in, err := s.StdinPipe()
	if err != nil {
		return err
	}
	if err := s.Start("cat > /dev/null"); err != nil {
		return err
	}
	if _, err := in.Write(data); err != nil {
		return err
	}
	if err := in.Close(); err != nil {
		return err
	}
	return s.Wait()
}
