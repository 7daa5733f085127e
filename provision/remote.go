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
	closed := make(chan struct{})
	go func() {
		_ = c.ssh.Wait()
		close(closed)
	}()
	for {
		select {
		case <-closed:
			return
		case <-t.C:
		}
		answered := make(chan error, 1)
		go func() {
			_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		select {
		case err := <-answered:
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

	mu      sync.Mutex
	c       *Client // nil until dialled, and after it broke
	dials   int
	lastErr error
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

// conn is the live connection, dialled when there is none.
func (r *RemoteEngine) conn(ctx context.Context) (*Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return nil, fmt.Errorf("docker over ssh %s: closed", r.target)
	}
	if r.c != nil {
		return r.c, nil
	}
	c, err := Dial(ctx, r.cfg, r.target)
	if err != nil {
		if r.lastErr == nil || r.lastErr.Error() != err.Error() {
			r.log.Warn("docker_host: cannot connect", "target", r.target.String(), "err", err)
		}
		r.lastErr = err
		return nil, err
	}
	r.dials++
	if r.dials > 1 {
		r.log.Info("docker_host: connected again", "target", r.target.String(), "connections", r.dials)
	}
	r.c, r.lastErr = c, nil
	go func() {
		err := c.Wait()
		if r.drop(c) && r.ctx.Err() == nil {
			r.log.Warn("docker_host: connection lost; the next request dials again", "target", r.target.String(), "err", err)
		}
	}()
	return c, nil
}

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

// brokenConn reports whether c is gone: a keepalive it cannot send or
// that goes unanswered for a few seconds (a session the server refused
// leaves a live connection, which is kept).
func brokenConn(c *Client) bool {
	answered := make(chan error, 1)
	go func() {
		_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
		answered <- err
	}()
	select {
	case err := <-answered:
		return err != nil
	case <-time.After(3 * time.Second):
		return true
	}
}
