package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
)

// CombinedOutput runs name with args on the node, as os/exec would here,
// and returns what it wrote to stdout and stderr, interleaved: a
// doctor.Runner for checks that run a command on the node (iptables). The
// words are quoted for the node's login shell, which sshd hands the
// command line to (POSIX single quotes, which bash, dash, zsh and fish all
// read the same way). A command the node does not have (its shell's exit
// status 127) gives an error for which errors.Is reports exec.ErrNotFound.
func (c *Client) CombinedOutput(ctx context.Context, name string, args ...string) ([]byte, error) {
	var out lockedBuffer
	cmd := shellQuote(append([]string{name}, args...)...)
	errTail := &tail{max: 8 << 10}
	// stderr goes to the combined output and to the tail an ExitError quotes.
	err := c.session(ctx, cmd, nil, &out, io.MultiWriter(&out, errTail), errTail)
	var exit *ExitError
	if errors.As(err, &exit) && exit.Status == 127 {
		err = fmt.Errorf("run %q on %s: %w: %s", cmd, c.target.Host, exec.ErrNotFound, exit.Stderr)
	}
	return out.bytes(), err
}

// shellQuote joins words into a POSIX shell command line that gives them
// back unchanged: a word of only safe characters as it is, any other in
// single quotes, a single quote inside it closed, escaped and reopened.
func shellQuote(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.Trim(w, safeShellChars) == "" {
			q[i] = w
			continue
		}
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// safeShellChars need no quoting anywhere in a word, for a POSIX shell and
// for bash, zsh and fish: no globbing, expansion, assignment (=) or
// zsh's =command.
const safeShellChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@+:,./-"

// lockedBuffer collects stdout and stderr, which the session copies from
// two goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *lockedBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf
}
