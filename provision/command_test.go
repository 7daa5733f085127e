package provision

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestShellQuote(t *testing.T) {
	tests := []struct {
		words []string
		want  string
	}{
		{[]string{"iptables", "-w", "-t", "nat", "-S", "OUTPUT"}, "iptables -w -t nat -S OUTPUT"},
		{[]string{"/usr/sbin/haproxy", "-v"}, "/usr/sbin/haproxy -v"},
		{[]string{"echo", ""}, "echo ''"},
		{[]string{"echo", "a b"}, "echo 'a b'"},
		{[]string{"echo", "it's"}, `echo 'it'\''s'`},
		{[]string{"echo", "$HOME", "*", "~", "a=b", "=ls"}, "echo '$HOME' '*' '~' 'a=b' '=ls'"},
		{[]string{"gcc", "-print-file-name=libc.a"}, "gcc '-print-file-name=libc.a'"},
	}
	for _, tc := range tests {
		if got := shellQuote(tc.words...); got != tc.want {
			t.Errorf("shellQuote(%q) = %s, want %s", tc.words, got, tc.want)
		}
	}
}

// TestCombinedOutput runs commands through SSH and a real sh -c, as sshd
// runs them: every word arrives as it was sent, stdout and stderr come
// back together, a command the node lacks is exec.ErrNotFound, another
// failure an *ExitError with its status.
func TestCombinedOutput(t *testing.T) {
	c := dialShServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	words := []string{"", "a b", "it's", `"quoted"`, "$HOME", "`id`", "$(id)", "*", "?", "[a]", "~", "a=b", "=ls",
		"new\nline", "tab\there", ";", "&&", "|", "<>", "#", "!", "{a,b}", "%", "-n", "é✓"}
	out, err := c.CombinedOutput(ctx, "printf", append([]string{"[%s]\n"}, words...)...)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, w := range words {
		want.WriteString("[" + w + "]\n")
	}
	if string(out) != want.String() {
		t.Errorf("printf over SSH:\n got %q\nwant %q", out, want.String())
	}

	out, err = c.CombinedOutput(ctx, "sh", "-c", "echo out; echo err >&2")
	if err != nil || (string(out) != "out\nerr\n" && string(out) != "err\nout\n") {
		t.Errorf("stdout and stderr: %q, %v; want both lines", out, err)
	}

	out, err = c.CombinedOutput(ctx, "pulse-no-such-command", "-v")
	if !errors.Is(err, exec.ErrNotFound) || !strings.Contains(err.Error(), "pulse-no-such-command") {
		t.Errorf("a missing command: %q, %v; want exec.ErrNotFound naming it", out, err)
	}

	// A backslash is refused before anything runs (fish would read it as
	// an escape inside single quotes).
	if out, err := c.CombinedOutput(ctx, "printf", `a\b`); err == nil || !strings.Contains(err.Error(), "backslash") {
		t.Errorf("a word with a backslash: %q, %v; want it refused", out, err)
	}
	// Output over the bound: the first maxCommandOutput bytes, and an error.
	out, err = c.CombinedOutput(ctx, "head", "-c", "1100000", "/dev/zero")
	if err == nil || !strings.Contains(err.Error(), "output over") || len(out) != maxCommandOutput {
		t.Errorf("1.1 MB of output: %d bytes kept, %v; want %d and an error", len(out), err, maxCommandOutput)
	}

	out, err = c.CombinedOutput(ctx, "sh", "-c", "echo why >&2; exit 3")
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Status != 3 || exit.Stderr != "why" || string(out) != "why\n" || errors.Is(err, exec.ErrNotFound) {
		t.Errorf("exit 3: %q, %v; want an ExitError with status 3 and its stderr", out, err)
	}
}
