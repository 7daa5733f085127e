#!/usr/bin/env bash
# pulsed's bearer tokens, created when missing (32 random bytes, hex) with
# their owner and mode. Idempotent; run as root.
#   default            the alarm webhook's: Netdata's hook sends it, pulsed
#                      checks it. /etc/pulse/alarm-token (PULSE_ALARM_TOKEN_FILE),
#                      root:netdata 0640 once the netdata group exists (before
#                      Netdata is installed, root:root 0600; the next run fixes
#                      the group).
#   PULSE_TOKEN_KIND=api  the management API's (/v1/keys/): /etc/pulse/api-token
#                      (PULSE_API_TOKEN_FILE), always root:root 0600: pulsed
#                      refuses it when group or others can read it, and the
#                      netdata user must not manage invoke keys.
set -euo pipefail
kind=${PULSE_TOKEN_KIND:-alarm}
case "$kind" in
alarm) token=${PULSE_ALARM_TOKEN_FILE:-/etc/pulse/alarm-token} ;;
api) token=${PULSE_API_TOKEN_FILE:-/etc/pulse/api-token} ;;
*) echo "alarm-token: PULSE_TOKEN_KIND=$kind: want alarm or api" >&2; exit 2 ;;
esac
dir=$(dirname "$token")
name=$(basename "$token")
[ "$(id -u)" = 0 ] || { echo "$kind token: run as root" >&2; exit 1; }

mkdir -p "$dir"
[ "$dir" != /etc/pulse ] || chmod 0755 "$dir"
if [ ! -s "$token" ]; then
	tmp=$(mktemp "$dir/.$name.XXXXXX") # mode 0600
	head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' >"$tmp"
	mv -f "$tmp" "$token"
	echo "$kind token: created $token"
fi
if [ "$kind" = alarm ] && getent group netdata >/dev/null; then
	chown root:netdata "$token"
	chmod 0640 "$token"
else
	chown root:root "$token"
	chmod 0600 "$token"
fi
