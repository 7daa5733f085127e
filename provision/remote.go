package provision

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/docker/docker/client"
)

// KeepAlive defaults (Config.KeepAliveInterval, KeepAliveTimeout).
const (
	DefaultKeepAliveInterval = 5 * time.Second
	DefaultKeepAliveTimeout  = 15 * time.Second
)

// keepAlive sends an OpenSSH keepalive request every interval until the
// connection closes; a request unanswered within timeout closes it (every
// session on it then fails).
func (c *Client) keepAlive(interval, timeout time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	closed := c.done
	for {
		select {
		case <-closed:
			return
		case <-t.C:
		}
		select {
		case err := <-c.sendKeepAlive():
			if err != nil {
				c.Close()
				return
			}
		case <-time.After(timeout):
			c.timedOut.Store(true)
			c.Close()
			return
		case <-closed:
			return
		}
	}
}

// sendKeepAlive sends one OpenSSH keepalive request; the channel gets
// its outcome when the peer answers (or the connection fails).
func (c *Client) sendKeepAlive() <-chan error {
	answered := make(chan error, 1)
	go func() {
		_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
		answered <- err
	}()
	return answered
}

// Wait blocks until the connection ends and says why: a keepalive that
// went unanswered, or the transport's own error.
func (c *Client) Wait() error {
	err := c.ssh.Wait()
	if c.timedOut.Load() {
		return fmt.Errorf("ssh %s: a keepalive went unanswered: connection closed", c.target)
	}
	if err == nil {
		return fmt.Errorf("ssh %s: connection closed", c.target)
	}
	return fmt.Errorf("ssh %s: %w", c.target, err)
}

// RemoteEngine is a long-lived Docker client for a node's engine over SSH,
// for a daemon (pulsed with docker_host ssh://): the connection is kept
// alive, and when it breaks (the node restarted, the network dropped it,
// a keepalive went unanswered) the next request dials again, with the same
// host-key check. Requests in flight on a broken connection fail; the
// caller's own retry (a poll, a reconcile) goes through the new one.
type RemoteEngine struct {
	cfg    Config
	target Target
	log    *slog.Logger
	ctx    context.Context // ended by Close
	cancel context.CancelFunc

	mu        sync.Mutex
	c         *Client       // nil until dialled, and after it broke
	dialing   chan struct{} // closed when the dial in progress ends
	dials     int
	lastErr   error // the last dial's failure, until one succeeds
	lastErrAt time.Time
}

// NewRemoteEngine dials t, checks its engine answers and returns the
// client. Close rem (which closes the SSH connection) after the client.
func NewRemoteEngine(ctx context.Context, cfg Config, t Target, log *slog.Logger) (*client.Client, *RemoteEngine, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// A daemon never asks: a host key not yet known is an error with the
	// command that records it.
	cfg.Prompt, cfg.AcceptNewHostKey = nil, false
	rctx, cancel := context.WithCancel(context.Background())
	rem := &RemoteEngine{cfg: cfg, target: t, log: log, ctx: rctx, cancel: cancel}
	if _, err := rem.conn(ctx); err != nil {
		cancel()
		return nil, nil, err
	}
	tr := &http.Transport{MaxConnsPerHost: maxEngineConns, MaxIdleConns: maxEngineConns, IdleConnTimeout: 30 * time.Second}
	cli, err := client.NewClientWithOpts(
		client.WithHTTPClient(&http.Client{Transport: tr}),
		client.WithHost("http://docker"),
		func(*client.Client) error {
			tr.DialContext = rem.dial
			tr.Proxy = nil
			return nil
		},
		client.WithAPIVersionNegotiation(),
	)
	if err != nil {
		rem.Close()
		return nil, nil, fmt.Errorf("docker over ssh %s: %w", t.Host, err)
	}
	pctx, pcancel := context.WithTimeout(ctx, enginePingTimeout)
	ping, err := cli.Ping(pctx)
	pcancel()
	if err != nil {
		cli.Close()
		rem.Close()
		return nil, nil, fmt.Errorf("docker over ssh %s: ping the engine: %w", t.Host, err)
	}
	cli.NegotiateAPIVersionPing(ping)
	return cli, rem, nil
}

// Dials is how many SSH connections rem has made (1 while the first one
// holds).
func (r *RemoteEngine) Dials() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dials
}

// Close stops the keepalive and closes the connection.
func (r *RemoteEngine) Close() error {
	r.cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c != nil {
		err := r.c.Close()
		r.c = nil
		return err
	}
	return nil
}

// conn is the live connection, dialled when there is none. One dial runs
// at a time, outside the lock, and every caller waiting on it gets its
// result; a failed dial is remembered for failedDialMemory, so requests
// queued behind an unreachable manager fail at once with its error instead
// of dialling (up to DialTimeout each) in turn. Close interrupts a dial.
func (r *RemoteEngine) conn(ctx context.Context) (*Client, error) {
	for {
		r.mu.Lock()
		switch {
		case r.ctx.Err() != nil:
			r.mu.Unlock()
			return nil, fmt.Errorf("docker over ssh %s: closed", r.target)
		case r.c != nil:
			c := r.c
			r.mu.Unlock()
			return c, nil
		case r.lastErr != nil && time.Since(r.lastErrAt) < failedDialMemory:
			err := r.lastErr
			r.mu.Unlock()
			return nil, err
		case r.dialing != nil:
			wait := r.dialing
			r.mu.Unlock()
			select {
			case <-wait:
				continue // the dial's result is in r.c or r.lastErr
			case <-ctx.Done():
				return nil, fmt.Errorf("docker over ssh %s: %w", r.target, ctx.Err())
			}
		}
		done := make(chan struct{})
		r.dialing = done
		r.mu.Unlock()

		// The dial ends with Close (r.ctx) or the caller's context.
		dctx, cancel := context.WithCancel(r.ctx)
		stop := context.AfterFunc(ctx, cancel)
		c, err := Dial(dctx, r.cfg, r.target)
		stop()
		cancel()

		r.mu.Lock()
		r.dialing = nil
		close(done)
		if err != nil {
			if r.lastErr == nil || r.lastErr.Error() != err.Error() {
				r.log.Warn("docker_host: cannot connect", "target", r.target.String(), "err", err)
			}
			r.lastErr, r.lastErrAt = err, time.Now()
			r.mu.Unlock()
			return nil, err
		}
		if r.ctx.Err() != nil { // closed while dialling
			r.mu.Unlock()
			c.Close()
			return nil, fmt.Errorf("docker over ssh %s: closed", r.target)
		}
		r.dials++
		if r.dials > 1 {
			r.log.Info("docker_host: connected again", "target", r.target.String(), "connections", r.dials)
		}
		r.c, r.lastErr = c, nil
		r.mu.Unlock()
		go func() {
			err := c.Wait()
			if r.drop(c) && r.ctx.Err() == nil {
				r.log.Warn("docker_host: connection lost; the next request dials again", "target", r.target.String(), "err", err)
			}
		}()
		return c, nil
	}
}

// failedDialMemory is how long a failed dial's error answers requests
// without dialling again.
const failedDialMemory = time.Second

// drop forgets c if it is still the live connection, closing it; live
// says whether it was (a request may have found it broken and dialled a
// new one first).
func (r *RemoteEngine) drop(c *Client) (live bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	live = r.c == c
	if live {
		r.c = nil
	}
	c.Close()
	return live
}

// dial opens one engine connection: a dial-stdio session on the live SSH
// connection. A connection that cannot open a session any more is broken:
// it is dropped and dialled again, once.
func (r *RemoteEngine) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		c, err := r.conn(ctx)
		if err != nil {
			return nil, err
		}
		conn, err := c.DockerDialer()(ctx, network, addr)
		if err == nil {
			return conn, nil
		}
		lastErr = err
		if ctx.Err() != nil || !brokenConn(c) {
			return nil, err
		}
		r.drop(c)
	}
	return nil, lastErr
}

// brokenConn reports whether c is gone: a keepalive it cannot send. One
// that goes unanswered for a few seconds is not proof (a busy link, or the
// keepalive loop's own request ahead of it): the connection is kept, and
// the keepalive loop drops it if it is really gone. A session the server
// refused (sshd's MaxSessions) leaves a live connection.
func brokenConn(c *Client) bool {
	select {
	case err := <-c.sendKeepAlive():
		return err != nil
	case <-time.After(3 * time.Second):
		return false
	}
}
