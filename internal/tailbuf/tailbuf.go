// Package tailbuf keeps the end of what a process or a logger writes, for
// an error message or a failed test to show: the last bytes, read back as
// the last lines.
package tailbuf

import (
	"strings"
	"sync"
)

// Tail keeps the last Max bytes written to it, in at most twice that
// memory; safe for concurrent use.
type Tail struct {
	Max int

	mu  sync.Mutex
	buf []byte
}

// New returns a Tail that keeps the last max bytes.
func New(max int) *Tail { return &Tail{Max: max} }

// Write keeps p's end; it never fails. The buffer grows to twice Max
// before its front is dropped, so a full Tail copies Max bytes once per Max
// bytes written, not on every write (a logger writes a line at a time).
func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.Max; over > 0 && len(t.buf) > 2*t.Max {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// LastLines is the last n lines of the last Max bytes, joined with
// newlines, without the white space around them (the first may be cut
// short by Max).
func (t *Tail) LastLines(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	kept := t.buf[max(0, len(t.buf)-t.Max):]
	lines := strings.Split(strings.TrimRight(string(kept), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}
