//go:build !watchdog_nohttp

package watchdog

import "log/slog"

func newHTTPRunner(cfg Config, log *slog.Logger, m *metrics) (runner, error) {
	return newProxy(cfg, log, m)
}
