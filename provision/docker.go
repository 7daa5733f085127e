package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"

	"github.com/pulsefaas/pulse/internal/tailbuf"
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
		sc := newStdioConn(s, c.target.String())
		s.Stderr = sc.stderr
		if err := s.Start(dialStdio); err != nil {
			s.Close()
			return fail(fmt.Errorf("start %q: %w", dialStdio, err))
		}
		sc.start(stdin, stdout)
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

// ErrConnectionLost means the SSH connection to a node ended in the middle
// of a request to its engine; errors.Is finds it through the SDK's wrapping.
var ErrConnectionLost = errors.New("SSH connection lost")

// stdioConn is a net.Conn over a session's stdin and stdout. Two pumps move
// the bytes between the session and the pipes Read and Write use, so that
// Close ends a Read or a Write at once: x/crypto wakes a Write waiting for
// the peer's window only when the peer answers the close or the connection
// ends, and the HTTP transport waits for its writer when a request's
// context ends, so a node that stops answering mid-load would otherwise
// hold the caller past its deadline. The pumps end with the channel: at the
// latest when Client.Close ends the connection.
type stdioConn struct {
	s      *ssh.Session
	target string
	stderr *tailbuf.Tail

	inR  *io.PipeReader // the stdin pump's end; Write writes inW
	inW  *io.PipeWriter
	outR *io.PipeReader // Read's end; the stdout pump writes outW
	outW *io.PipeWriter

	sent      atomic.Int64 // bytes the stdin pump gave the channel
	received  atomic.Int64 // bytes the stdout pump took from it
	closed    chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	failure error // the first pump's error that said why the session ended

	exited  chan struct{}
	exitErr error // set before exited closes
}

var _ net.Conn = (*stdioConn)(nil)

func newStdioConn(s *ssh.Session, target string) *stdioConn {
	c := &stdioConn{s: s, target: target, stderr: tailbuf.New(4 << 10), closed: make(chan struct{}), exited: make(chan struct{})}
	c.inR, c.inW = io.Pipe()
	c.outR, c.outW = io.Pipe()
	return c
}

// start runs the pumps and waits for dial-stdio's exit; call it once the
// session runs dial-stdio.
func (c *stdioConn) start(stdin io.WriteCloser, stdout io.Reader) {
	go func() {
		c.exitErr = c.s.Wait()
		close(c.exited)
	}()
	go c.pumpIn(stdin)
	go c.pumpOut(stdout)
}

// pumpIn copies what Write is given to dial-stdio's stdin, and sends EOF
// after CloseWrite. A failed write fails the next Write with why. (An
// engine that answers before reading the whole body, a full disk, closes
// half a second after its answer, as Go's HTTP server does: the answer is
// read first.)
func (c *stdioConn) pumpIn(stdin io.WriteCloser) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.inR.Read(buf)
		if n > 0 {
			w, werr := stdin.Write(buf[:n])
			c.sent.Add(int64(w))
			if werr != nil {
				c.inR.CloseWithError(c.fail(c.why(werr)))
				return
			}
		}
		switch {
		case errors.Is(err, io.EOF): // CloseWrite
			stdin.Close()
			return
		case err != nil: // Close
			return
		}
	}
}

// pumpOut copies dial-stdio's stdout to Read; its end (EOF, or why's
// error) is Read's once the bytes before it are read.
func (c *stdioConn) pumpOut(stdout io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := stdout.Read(buf)
		if n > 0 {
			c.received.Add(int64(n))
			if _, werr := c.outW.Write(buf[:n]); werr != nil {
				return // Close
			}
		}
		if err != nil {
			if err = c.why(err); !errors.Is(err, io.EOF) {
				err = c.fail(err)
			}
			c.outW.CloseWithError(err)
			return
		}
	}
}

// Read reads the engine's bytes.
func (c *stdioConn) Read(p []byte) (int, error) { return c.outR.Read(p) }

// Write sends bytes to the engine. It returns once the stdin pump holds
// them; a failure to send them fails the next Write (and Read).
func (c *stdioConn) Write(p []byte) (int, error) { return c.inW.Write(p) }

// why replaces err (an EOF or a closed channel) with what ended the
// session, so the SDK's error says it: dial-stdio's failure when it exited
// non-zero (no docker on the node, engine down, or the engine gone
// mid-request), ErrConnectionLost when the session ended without an exit
// status. A clean exit keeps the EOF: the engine closed the connection
// after its answer, which HTTP reads.
func (c *stdioConn) why(err error) error {
	select {
	case <-c.closed:
		return net.ErrClosed
	case <-c.exited:
	case <-time.After(time.Second):
		return err
	}
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case errors.As(c.exitErr, &exit):
		msg := fmt.Sprintf("%q on %s: exit status %d", dialStdio, c.target, exit.ExitStatus())
		stderr := c.stderr.LastLines(stderrLines)
		if !c.midRequest() {
			return fmt.Errorf("%s: %s", msg, stderr)
		}
		return fmt.Errorf("%s after %s of the request was sent: %s: the engine on the node dropped the connection: check it there (systemctl status docker; journalctl -u docker)",
			msg, byteSize(c.sent.Load()), stderr)
	case errors.As(c.exitErr, &missing):
		return &connLostError{target: c.target, sent: c.sent.Load()}
	}
	return err
}

// fail records err as why the session ended, unless a reason is known
// already, and returns the reason.
func (c *stdioConn) fail(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failure == nil {
		c.failure = err
	}
	return c.failure
}

// midRequest is whether dial-stdio had reached the engine: it relayed an
// answer, or more than a request's head. Before that, its stderr says all
// (no docker, no permission on the socket, engine not running).
func (c *stdioConn) midRequest() bool {
	return c.received.Load() > 0 || c.sent.Load() >= 64<<10
}

// connLostError is ErrConnectionLost for one connection.
type connLostError struct {
	target string
	sent   int64
}

func (e *connLostError) Error() string {
	return fmt.Sprintf("the SSH connection to %s was lost after %s of the request was sent: check the network to the node and that its sshd runs",
		e.target, byteSize(e.sent))
}

func (e *connLostError) Is(target error) bool { return target == ErrConnectionLost }

// byteSize is n for people: 512 B, 64.0 kB, 3.1 MB.
func byteSize(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

// CloseWrite sends EOF to dial-stdio once what was written is sent; it
// half-closes its engine connection (the SDK's hijacked streams use it).
func (c *stdioConn) CloseWrite() error {
	return c.inW.Close()
}

// Close ends Read and Write at once, with why the session ended when a
// pump knows (the transport closes the connection on the first error it
// sees, and may report the other side's), and closes the session without
// waiting: the close message waits for the channel's writer, which may
// wait for the peer. It does not send EOF first: the remote end closes
// dial-stdio's streams on the channel close.
func (c *stdioConn) Close() error {
	c.closeOnce.Do(func() {
		reason := c.fail(net.ErrClosed)
		close(c.closed)
		c.inR.CloseWithError(reason)
		c.outW.CloseWithError(reason)
		go c.s.Close()
	})
	return nil
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
