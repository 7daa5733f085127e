//go:build watchdog_nofork

package watchdog

import (
	"errors"
	"log/slog"
)

func newForkRunner(Config, *slog.Logger, *metrics) (runner, error) {
	return nil, errors.New("this watchdog was built without fork mode (tag watchdog_nofork); use pulse-watchdog")
}
