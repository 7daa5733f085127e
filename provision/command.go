package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"

	"github.com/pulsefaas/pulse/internal/tailbuf"
)

// CombinedOutput runs name with args on the node, as os/exec would here,
// and returns what it wrote to stdout and stderr, interleaved: a
// doctor.Runner for checks that run a command on the node (iptables). The
// words are quoted for the node's login shell, which sshd hands the
// command line to (POSIX single quotes, which bash, dash and zsh read the
// same way; fish reads a backslash inside them as an escape, so a word with
// one is refused). A command the node does not have (its shell's exit
// status 127) gives an error for which errors.Is reports exec.ErrNotFound.
// Output beyond maxCommandOutput is an error.
func (c *Client) CombinedOutput(ctx context.Context, name string, args ...string) ([]byte, error) {
	words := append([]string{name}, args...)
	for _, w := range words {
		if strings.ContainsRune(w, '\\') {
			return nil, fmt.Errorf("run on %s: %q: a backslash in a word is refused (login shells quote it differently)", c.target.Host, w)
		}
	}
	out := lockedBuffer{max: maxCommandOutput}
	cmd := shellQuote(words...)
	errTail := tailbuf.New(8 << 10)
	// stderr goes to the combined output and to the tail an ExitError quotes.
	err := c.session(ctx, cmd, nil, &out, io.MultiWriter(&out, errTail), errTail)
	var exit *ExitError
	if errors.As(err, &exit) && exit.Status == 127 {
		err = fmt.Errorf("run %q on %s: %w: %s", cmd, c.target.Host, exec.ErrNotFound, exit.Stderr)
	}
	if out.truncated() && err == nil {
		err = fmt.Errorf("run %q on %s: output over %d bytes", cmd, c.target.Host, maxCommandOutput)
	}
	return out.bytes(), err
}

// maxCommandOutput bounds what CombinedOutput keeps of a command's output.
const maxCommandOutput = 1 << 20

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
	mu   sync.Mutex
	buf  []byte
	max  int  // bytes kept at most (0: no bound)
	over bool // more was written than kept
}

// Write keeps what fits under max and drops the rest (reading on, so the
// command is not stalled by a full pipe), noting it.
func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := p
	if b.max > 0 && len(b.buf)+len(p) > b.max {
		keep = p[:max(0, b.max-len(b.buf))]
		b.over = true
	}
	b.buf = append(b.buf, keep...)
	return len(p), nil
}

func (b *lockedBuffer) truncated() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.over
}

func (b *lockedBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf
}
