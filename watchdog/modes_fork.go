//go:build !watchdog_nofork

package watchdog

import "log/slog"

func newForkRunner(cfg Config, log *slog.Logger, m *metrics) (runner, error) {
	return newForker(cfg, log, m)
}
