package function

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Limits of the tools Build runs.
const (
	// toolTimeout bounds one tool run: a cold Go build compiles the standard
	// library, which takes a minute or two on a slow machine.
	toolTimeout = 10 * time.Minute
	// toolWaitDelay bounds the wait for a killed tool's output pipes.
	toolWaitDelay = 5 * time.Second
	// maxCapture is how much of a tool's stdout and of its stderr is kept.
	maxCapture = 1 << 20
	// maxErrorOutput is how much of a failed tool's output its error shows:
	// the first errors are the ones to read.
	maxErrorOutput = 16 << 10
)

// CompileError is a failed compiler or go command: it names the command and
// carries the tool's own output, which says what to fix.
type CompileError struct {
	// Command is the command line that failed, and Dir where it ran.
	Command string
	Dir     string
	// Output is the tool's stderr and stdout, cut to a readable size.
	Output string
	// Hint, when set, says what to install or change.
	Hint string
	// Err is the exit status or the context's error.
	Err error
}

func (e *CompileError) Error() string {
	var s strings.Builder
	fmt.Fprintf(&s, "%s (in %s): %v", e.Command, e.Dir, e.Err)
	if e.Hint != "" {
		fmt.Fprintf(&s, "\n%s", e.Hint)
	}
	if e.Output != "" {
		fmt.Fprintf(&s, "\n%s", e.Output)
	}
	return s.String()
}

func (e *CompileError) Unwrap() error { return e.Err }

// How to install the tools Build runs.
const (
	hintGo  = "install Go 1.26 or later (https://go.dev/dl/) and put its bin directory on PATH"
	hintCC  = "apt-get install gcc libc6-dev"
	hintCXX = "apt-get install g++ libc6-dev"
)

// lookTool finds a tool on PATH (or at its path) or returns an error that
// says how to install it.
func lookTool(name, hint string) error {
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Errorf("%w: %s not found: %s", ErrToolNotFound, name, hint)
	}
	return nil
}

// staticLibHints explain link errors of a missing static library.
var staticLibHints = []struct{ output, hint string }{
	{"cannot find -lc", "the static C library is missing: apt-get install libc6-dev"},
	{"cannot find -lm", "the static C library is missing: apt-get install libc6-dev"},
	{"cannot find -lstdc++", "the static C++ library is missing: apt-get install libstdc++-dev"},
}

// runTool runs a tool in dir with env and returns its stdout. A failure is a
// *CompileError with the tool's output.
func runTool(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.WaitDelay = toolWaitDelay
	stdout, stderr := &capBuffer{max: maxCapture}, &capBuffer{max: maxCapture}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	if errors.Is(err, exec.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", ErrToolNotFound, err)
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = fmt.Errorf("%w (%v)", ctxErr, err)
	}
	out := strings.TrimSpace(stderr.String() + "\n" + stdout.String())
	e := &CompileError{Command: commandLine(name, args), Dir: dir, Output: trimOutput(out, stderr.dropped+stdout.dropped), Err: err}
	for _, h := range staticLibHints {
		if strings.Contains(out, h.output) {
			e.Hint = h.hint
			break
		}
	}
	return nil, e
}

// toolEnv is this process's environment, then extra entries (later ones win).
func toolEnv(extra ...[]string) []string {
	env := os.Environ()
	for _, e := range extra {
		env = append(env, e...)
	}
	return env
}

// trimOutput cuts a tool's output to maxErrorOutput bytes, at a line end
// where it can, and says how much it left out.
func trimOutput(out string, dropped int) string {
	if len(out) > maxErrorOutput {
		cut := strings.LastIndexByte(out[:maxErrorOutput], '\n')
		if cut < maxErrorOutput/2 {
			cut = maxErrorOutput
		}
		dropped += len(out) - cut
		out = out[:cut]
	}
	if dropped > 0 {
		out += fmt.Sprintf("\n… (%d more bytes of output)", dropped)
	}
	return out
}

// commandLine renders a command for a message, quoting what a shell would
// need quoted.
func commandLine(name string, args []string) string {
	words := append([]string{name}, args...)
	for i, w := range words {
		if w == "" || strings.ContainsAny(w, " \t\n\"'\\$`;&|<>()*?[]#~") {
			words[i] = strconv.Quote(w)
		}
	}
	return strings.Join(words, " ")
}

// capBuffer keeps the first max bytes written to it and counts the rest.
type capBuffer struct {
	bytes.Buffer
	max     int
	dropped int
}

func (b *capBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if room := b.max - b.Len(); room < len(p) {
		b.dropped += len(p) - max(room, 0)
		p = p[:max(room, 0)]
	}
	b.Buffer.Write(p)
	return n, nil
}
