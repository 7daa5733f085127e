#!/usr/bin/env bash
# The alarm webhook's bearer token: Netdata's hook sends it, pulsed checks it.
# Creates /etc/pulse/alarm-token (32 random bytes, hex) when missing and sets
# its owner and mode: root:netdata 0640 once the netdata group exists (before
# Netdata is installed, root:root 0600; the next run fixes the group).
# Idempotent; run as root. PULSE_ALARM_TOKEN_FILE overrides the path.
set -euo pipefail
token=${PULSE_ALARM_TOKEN_FILE:-/etc/pulse/alarm-token}
dir=$(dirname "$token")
[ "$(id -u)" = 0 ] || { echo "alarm-token: run as root" >&2; exit 1; }

mkdir -p "$dir"
[ "$dir" != /etc/pulse ] || chmod 0755 "$dir"
if [ ! -s "$token" ]; then
	tmp=$(mktemp "$dir/.alarm-token.XXXXXX")
	head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' >"$tmp"
	mv -f "$tmp" "$token"
	echo "alarm-token: created $token"
fi
if getent group netdata >/dev/null; then
	chown root:netdata "$token"
	chmod 0640 "$token"
else
	chown root:root "$token"
	chmod 0600 "$token"
fi
