//go:build watchdog_nohttp

package watchdog

import (
	"errors"
	"log/slog"
)

func newHTTPRunner(Config, *slog.Logger, *metrics) (runner, error) {
	return nil, errors.New("this watchdog was built without http mode (tag watchdog_nohttp); use pulse-watchdog")
}
