#!/usr/bin/env bash
# make down: remove the example functions, stop pulsed and the HAProxy it
# runs. HAProxy outlives pulsed on purpose (leave_running: the gateway keeps
# serving while pulsed restarts), so it is stopped here by its pid file.
# Netdata stays: it is the host's monitoring, and Pulse's plugin in it only
# logs once that the catalog is unreachable.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
STATE=${PULSE_STATE_DIR:-/var/lib/pulse}
RUN=/run/pulse

"$BIN/pulse" rm hello echo greet || true

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null && systemctl is-active --quiet pulsed 2>/dev/null; then
	systemctl stop pulsed
elif [ -f "$RUN/pulsed.pid" ]; then
	pid=$(cat "$RUN/pulsed.pid")
	if kill "$pid" 2>/dev/null; then
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -f "$RUN/pulsed.pid"
fi

# HAProxy's master: SIGUSR1 is a soft stop (requests in progress finish),
# SIGTERM after 10 s a hard one.
if [ -f "$STATE/haproxy.pid" ]; then
	pid=$(head -1 "$STATE/haproxy.pid")
	if [ -n "$pid" ] && grep -qs haproxy "/proc/$pid/comm"; then
		kill -USR1 "$pid"
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && kill -TERM "$pid"
		echo "HAProxy stopped (pid $pid)"
	fi
	rm -f "$STATE/haproxy.pid"
fi
echo "Pulse is down (Netdata keeps running; functions deployed by hand are left alone)."
