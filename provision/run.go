package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/ssh"

	"github.com/pulsefaas/pulse/internal/tailbuf"
)

// ExitError is a remote command that ran and failed.
type ExitError struct {
	Status int    // exit status; -1 when a signal ended it
	Signal string // the signal's name (TERM, KILL, ...) when one ended it
	Stderr string // the last lines of its stderr
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("exit status %d", e.Status)
	if e.Signal != "" {
		msg = "killed by signal " + e.Signal
	}
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

// stderrLines is how many of the last lines of stderr an ExitError keeps.
const stderrLines = 10

// newSession opens a session, or gives up when ctx is done first (a node
// that is frozen never answers the channel open).
func (c *Client) newSession(ctx context.Context) (*ssh.Session, error) {
	ch := make(chan openResult, 1)
	go func() {
		s, err := c.ssh.NewSession()
		ch <- openResult{s, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("open session: %w", r.err)
		}
		return r.s, nil
	case <-ctx.Done():
		go closeLate(ch)
		return nil, fmt.Errorf("open session: %w", ctx.Err())
	case <-c.done:
		// x/crypto forgets a channel opened while its connection ends
		// (after the read loop dropped the channels, before the socket
		// closed): that open never answers. The connection's end does.
		go closeLate(ch)
		return nil, errors.New("open session: the connection ended")
	}
}

type openResult struct {
	s   *ssh.Session
	err error
}

// closeLate closes the session an abandoned open still returns.
func closeLate(ch <-chan openResult) {
	if r := <-ch; r.s != nil {
		r.s.Close()
	}
}

// Run runs cmd on the node in a session of its own, with stdin (nil: none)
// as its standard input, and returns its standard output. A command that
// exits non-zero returns an *ExitError (wrapped) carrying the status and the
// last lines of its stderr. When ctx is done the session is closed and Run
// returns at once.
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	var stdout bytes.Buffer
	if err := c.stream(ctx, cmd, stdin, &stdout); err != nil {
		return nil, err
	}
	return stdout.Bytes(), nil
}

// stream is Run writing the command's standard output to stdout as it
// comes. A stdout that fails must also end ctx (Snapshot's does): the
// command would otherwise block on the unread channel and never exit.
func (c *Client) stream(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
	stderr := tailbuf.New(8 << 10)
	return c.session(ctx, cmd, stdin, stdout, stderr, stderr)
}

// session runs cmd with the given streams; errTail is what an ExitError
// quotes of its output.
func (c *Client) session(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer, errTail *tailbuf.Tail) error {
	fail := func(err error) error {
		return fmt.Errorf("run %q on %s: %w", cmd, c.target.Host, err)
	}
	s, err := c.newSession(ctx)
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	s.Stdin, s.Stdout, s.Stderr = stdin, stdout, stderr
	done := make(chan error, 1)
	go func() { done <- s.Run(cmd) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		s.Signal(ssh.SIGKILL) // best effort: OpenSSH ignores signals without a pty
		s.Close()
		return fail(ctx.Err())
	}
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit):
		return fail(&ExitError{Status: exit.ExitStatus(), Signal: exit.Signal(), Stderr: errTail.LastLines(stderrLines)})
	case errors.As(err, &missing):
		msg := "the connection or session closed before the command exited"
		if t := errTail.LastLines(stderrLines); t != "" {
			msg += "; its stderr: " + t
		}
		return fail(errors.New(msg))
	}
	return fail(err)
}
