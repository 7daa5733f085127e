package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"
)

// dialStdio is the command that bridges a session's stdin and stdout to the
// node's engine socket, as `docker -H ssh://` runs it.
const dialStdio = "docker system dial-stdio"

// DockerDialer returns a dialer for the Docker SDK (client.WithDialContext):
// each connection is a session running `docker system dial-stdio` on the
// node, so HTTP goes to the node's engine over this SSH connection. network
// and addr are ignored. sshd limits sessions per connection (MaxSessions,
// 10 by default): Engine bounds its connections below that.
func (c *Client) DockerDialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		fail := func(err error) (net.Conn, error) {
			return nil, fmt.Errorf("docker over ssh %s: %w", c.target.Host, err)
		}
		s, err := c.newSession(ctx)
		if err != nil {
			return fail(err)
		}
		stdin, err := s.StdinPipe()
		if err != nil {
			s.Close()
			return fail(err)
		}
		stdout, err := s.StdoutPipe()
		if err != nil {
			s.Close()
			return fail(err)
		}
		sc := &stdioConn{s: s, stdin: stdin, stdout: stdout, stderr: &tail{max: 4 << 10}, target: c.target.String(), exited: make(chan struct{})}
		s.Stderr = sc.stderr
		if err := s.Start(dialStdio); err != nil {
			s.Close()
			return fail(fmt.Errorf("start %q: %w", dialStdio, err))
		}
		go func() {
			sc.exitErr = s.Wait()
			close(sc.exited)
		}()
		return sc, nil
	}
}

// maxEngineConns bounds the engine client's connections (one session each)
// below sshd's default MaxSessions of 10, leaving room for Run.
const maxEngineConns = 6

// Engine returns a Docker client for the node's engine over this SSH
// connection, with the API version negotiated (the node may run an older
// engine than the SDK). It pings the engine first, so an unreachable engine
// is an error here. Close the client before c.
func (c *Client) Engine(ctx context.Context) (*client.Client, error) {
	cli, err := c.EngineClient()
	if err != nil {
		return nil, err
	}
	// A wedged engine behind a live SSH connection must not hang the
	// caller: the ping has its own bound.
	pctx, cancel := context.WithTimeout(ctx, enginePingTimeout)
	ping, err := cli.Ping(pctx)
	cancel()
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker over ssh %s: ping the engine: %w", c.target.Host, err)
	}
	cli.NegotiateAPIVersionPing(ping)
	return cli, nil
}

// EngineClient is Engine without the ping: a client that connects on its
// first call and negotiates the API version then, for a caller that
// reports an unreachable engine itself (pulse node add's doctor checks).
// Close the client before c.
func (c *Client) EngineClient() (*client.Client, error) {
	tr := &http.Transport{MaxConnsPerHost: maxEngineConns, MaxIdleConns: maxEngineConns, IdleConnTimeout: 30 * time.Second}
	cli, err := client.NewClientWithOpts(
		client.WithHTTPClient(&http.Client{Transport: tr}),
		client.WithHost("http://docker"),
		// After WithHost, which sets its own dialer and the environment's
		// proxy on the transport.
		func(*client.Client) error {
			tr.DialContext = c.DockerDialer()
			tr.Proxy = nil
			return nil
		},
		client.WithAPIVersionNegotiation(),
	)
	if err != nil {
		return nil, fmt.Errorf("docker over ssh %s: %w", c.target.Host, err)
	}
	return cli, nil
}

// enginePingTimeout bounds Engine's first call to a node's engine.
const enginePingTimeout = 30 * time.Second

// stdioConn is a net.Conn over a session's stdin and stdout.
type stdioConn struct {
	s      *ssh.Session
	stdin  io.WriteCloser
	stdout io.Reader
	stderr *tail
	target string
	wmu    sync.Mutex // Write and CloseWrite: x/crypto races them otherwise

	exited  chan struct{}
	exitErr error // set before exited closes
}

var _ net.Conn = (*stdioConn)(nil)

// Read reads the engine's bytes.
func (c *stdioConn) Read(p []byte) (int, error) {
	n, err := c.stdout.Read(p)
	if errors.Is(err, io.EOF) {
		err = c.why(err)
	}
	return n, err
}

func (c *stdioConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	n, err := c.stdin.Write(p)
	c.wmu.Unlock()
	if err != nil {
		err = c.why(err)
	}
	return n, err
}

// why replaces err (an EOF or a closed channel) with dial-stdio's failure
// when it exited non-zero (no docker on the node, engine down), so the
// SDK's error says why.
func (c *stdioConn) why(err error) error {
	select {
	case <-c.exited:
	case <-time.After(time.Second):
		return err
	}
	var exit *ssh.ExitError
	if errors.As(c.exitErr, &exit) {
		return fmt.Errorf("%q on %s: exit status %d: %s", dialStdio, c.target, exit.ExitStatus(), c.stderr.lastLines(stderrLines))
	}
	return err
}

// CloseWrite sends EOF to dial-stdio, which half-closes its engine
// connection (the SDK's hijacked streams use it).
func (c *stdioConn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.stdin.Close()
}

// Close ends the session. It does not send EOF first: x/crypto's channel
// does not allow that concurrently with a Write, which net.Conn's Close
// must; the remote end closes dial-stdio's streams on the channel close.
func (c *stdioConn) Close() error {
	return c.s.Close()
}

func (c *stdioConn) LocalAddr() net.Addr  { return sshAddr("local") }
func (c *stdioConn) RemoteAddr() net.Addr { return sshAddr(c.target) }

// Deadlines are not supported on a session: the SDK bounds its calls with
// their contexts, and the transport closes the connection when one ends.
func (c *stdioConn) SetDeadline(time.Time) error      { return nil }
func (c *stdioConn) SetReadDeadline(time.Time) error  { return nil }
func (c *stdioConn) SetWriteDeadline(time.Time) error { return nil }

type sshAddr string

func (a sshAddr) Network() string { return "ssh" }
func (a sshAddr) String() string  { return string(a) }
