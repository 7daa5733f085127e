package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ValidateTimeout bounds one `haproxy -c` run when the caller's context
// has no earlier deadline.
const ValidateTimeout = 10 * time.Second

// ErrInvalidConfig is what Validate's error wraps when HAProxy refused the
// configuration (as opposed to failing to run at all).
var ErrInvalidConfig = errors.New("haproxy refused the configuration")

// Validate checks cfg with `haproxyBin -c` so an invalid render is never
// loaded. HAProxy reads the file as haproxy.cfg in a private temporary
// directory, so its messages name lines as [haproxy.cfg:N]; on refusal the
// error wraps ErrInvalidConfig and carries HAProxy's messages (its NOTICE
// lines dropped). Warnings alone do not fail the check. haproxyBin ""
// means "haproxy" from PATH.
func Validate(ctx context.Context, haproxyBin string, cfg []byte) error {
	return validateConfig(ctx, haproxyBin, cfg)
}

// validateConfig is Validate with extra HAProxy flags (the tests add -dW,
// which makes warnings fatal).
func validateConfig(ctx context.Context, haproxyBin string, cfg []byte, extra ...string) error {
	if haproxyBin == "" {
		haproxyBin = "haproxy"
	}
	dir, err := os.MkdirTemp("", "pulse-haproxy-check-")
	if err != nil {
		return fmt.Errorf("validate haproxy.cfg: %w", err)
	}
	defer os.RemoveAll(dir)
	const name = "haproxy.cfg"
	// 0600: the file may hold the replica credential.
	if err := os.WriteFile(filepath.Join(dir, name), cfg, 0o600); err != nil {
		return fmt.Errorf("validate haproxy.cfg: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, ValidateTimeout)
	defer cancel()
	args := append([]string{"-c"}, extra...)
	cmd := exec.CommandContext(ctx, haproxyBin, append(args, "-f", name)...)
	cmd.Dir = dir
	cmd.Env = []string{} // nothing from pulsed's environment reaches the check
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err = cmd.Run()
	if err == nil {
		return nil
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || ctx.Err() != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("validate haproxy.cfg: run %s -c: %w", haproxyBin, err)
	}
	return fmt.Errorf("validate haproxy.cfg: %w (%s): %s", ErrInvalidConfig, exit, validateMessages(out.String()))
}

// validateMessages keeps HAProxy's ALERT and WARNING lines (and anything
// else it printed), without the NOTICE lines about its version and path.
func validateMessages(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "[NOTICE]") {
			continue
		}
		keep = append(keep, l)
	}
	if len(keep) == 0 {
		return "no message"
	}
	return strings.Join(keep, "\n")
}
