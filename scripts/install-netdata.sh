#!/usr/bin/env bash
# make install-netdata: Netdata with Pulse's collector, alarms and hook on this
# machine (the control node). Run as root from the repository; idempotent.
#
#   Debian's netdata                      apt-get, when /usr/sbin/netdata is missing
#   /etc/netdata/custom-plugins.d/pulse.d.plugin   root:netdata 0750
#   /usr/local/lib/pulse/pulse-alarm-hook          root:netdata 0750
#   /etc/pulse/alarm-token                         root:netdata 0640 (scripts/alarm-token.sh)
#   /etc/pulse/replica-auth                        root:netdata 0640 when it exists (pulsed
#                       creates it; the collector presents it to every replica and
#                       re-reads it when it changes, so it may appear later)
#   /etc/netdata/pulse.d.conf, pulse.d/pulse.conf, health.d/pulse.conf,
#   /usr/share/netdata/web/pulse-dashboard-info.js and a marked block at the
#   end of /etc/netdata/netdata.conf       root:root 0644 (pulse-netdata-files)
#   /etc/netdata/pulse-cgroup-name.sh      root:root 0755: keeps Docker containers
#                       (which user netdata cannot name) out of the cgroup charts
#   /etc/pulse/alarm-hook.conf             root:root 0644: the hook's webhook URL and CA file
#
# pulsed's API is http://127.0.0.1:8090 (the port from api_listen in
# /etc/pulse/pulsed.yaml), or https:// when that file has a tls_cert: line;
# then the collector's job gets ca_file and the hook PULSE_ALARM_CA_FILE,
# both /etc/pulse/tls-ca.pem (the certificate alone, 0644, written from
# tls_cert with openssl on every run, as make up does). Without
# tls_cert both go back to http:// and no CA file. Every run rewrites the
# same files from scratch, so it can run any number of times.
# PULSED_CONF and PULSE_TLS_CA_FILE override those two paths (tests).
#
# Then it restarts Netdata (systemctl where systemd runs, else
# `netdata -D` in the background with its pid in /run/netdata.pid, the file
# Debian's init script uses), waits for its API and checks that the plugin
# runs as user netdata and that netdata cannot reach the Docker socket.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

ETC=${NETDATA_ETC_DIR:-/etc/netdata}
WEB=${NETDATA_WEB_DIR:-/usr/share/netdata/web}
PIDFILE=/run/netdata.pid
API=http://127.0.0.1:19999
PLUGIN=$ETC/custom-plugins.d/pulse.d.plugin
HOOK=/usr/local/lib/pulse/pulse-alarm-hook
LOG=/var/log/netdata

say() { echo "install-netdata: $*"; }
die() { echo "install-netdata: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs into /etc/netdata and restarts Netdata)"
# pulsed's API as the collector and the hook reach it: https with the
# install's CA file when pulsed serves TLS (tls_cert), else http.
PULSED_CONF=${PULSED_CONF:-/etc/pulse/pulsed.yaml}
CA_FILE=${PULSE_TLS_CA_FILE:-/etc/pulse/tls-ca.pem}
conf_value() { [ -f "$PULSED_CONF" ] && sed -n "s/^$1: *\([^ #]*\).*/\1/p" "$PULSED_CONF" | tr -d "\"'" | tail -1; }
api_listen=$(conf_value api_listen || true)
api_port=${api_listen##*:}
case "$api_port" in '' | *[!0-9]*) api_port=8090 ;; esac
api_host=${api_listen%:*}
case "$api_host" in '' | 0.0.0.0 | '[::]' | '::' | "$api_listen") api_host=127.0.0.1 ;; esac
tls_cert=$(conf_value tls_cert || true)
api_args=(-api "http://$api_host:$api_port")
if [ -n "$tls_cert" ]; then
	# The certificate alone, as make up writes it: rewritten every time, so
	# it follows a new tls_cert.
	if command -v openssl >/dev/null; then
		openssl x509 -in "$tls_cert" -out "$CA_FILE.new" || die "cannot write $CA_FILE from tls_cert $tls_cert (above)"
		chmod 0644 "$CA_FILE.new"
		mv -f "$CA_FILE.new" "$CA_FILE"
	elif [ ! -s "$CA_FILE" ]; then
		die "pulsed's tls_cert is set but $CA_FILE is missing and openssl is not installed to write it: apt-get install openssl, or run make up"
	fi
	chmod 0644 "$CA_FILE"
	runuser -u netdata -- test -r "$CA_FILE" 2>/dev/null ||
		die "user netdata cannot read $CA_FILE (check the directories above it: $(namei -m "$CA_FILE" 2>/dev/null | tr '\n' ' '))"
	api_args=(-api "https://$api_host:$api_port" -ca-file "$CA_FILE")
	say "pulsed serves HTTPS (tls_cert $tls_cert): the collector and the hook use https://$api_host:$api_port, verified with $CA_FILE"
else
	say "pulsed serves plain HTTP (no tls_cert in $PULSED_CONF): the collector and the hook use http://$api_host:$api_port"
fi
# --api-args: print the arguments chosen for pulse-netdata-files, one a
# line, and stop (cmd/pulse-netdata-files' tests run this part alone).
if [ "${1:-}" = --api-args ]; then
	printf '%s\n' "${api_args[@]}"
	exit 0
fi

command -v go >/dev/null || die "Go missing: install Go 1.26 in /usr/local/go (see README)"

if [ ! -x /usr/sbin/netdata ]; then
	say "installing Debian's netdata"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq netdata >/dev/null
fi
getent group netdata >/dev/null || die "no netdata group after installing netdata"
# pulsed alone talks to Docker (DESIGN §4): access to the socket is root.
if id -nG netdata | tr ' ' '\n' | grep -qx docker; then
	die "user netdata is in group docker, which gives it root on this host; remove it (gpasswd -d netdata docker) and run again"
fi

# Static builds of the plugin, the hook and the file writer.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$work/" \
	./cmd/pulse.d.plugin ./cmd/pulse-alarm-hook ./cmd/pulse-netdata-files 2>"$work/build.log"; then
	cat "$work/build.log" >&2
	die "cannot build cmd/pulse.d.plugin, cmd/pulse-alarm-hook or cmd/pulse-netdata-files (above); Netdata left as it was"
fi

# put SRC DST MODE: replace DST atomically (a running plugin's binary
# cannot be overwritten in place), owned by root:netdata.
put() {
	local dir tmp
	dir=$(dirname "$2")
	install -d -m 0755 "$dir"
	tmp="$dir/.$(basename "$2").new"
	install -o root -g netdata -m "$3" "$1" "$tmp"
	mv -f "$tmp" "$2"
	say "installed $2 (root:netdata $3)"
}
put "$work/pulse.d.plugin" "$PLUGIN" 0750
put "$work/pulse-alarm-hook" "$HOOK" 0750
scripts/alarm-token.sh
# The replica credential: pulsed generates it; the collector (user netdata)
# must be able to read it and nobody else.
REPLICA_AUTH=/etc/pulse/replica-auth # the collector's replica_auth_file (pulse.d/pulse.conf)
if [ -e "$REPLICA_AUTH" ]; then
	chown root:netdata "$REPLICA_AUTH"
	chmod 0640 "$REPLICA_AUTH"
	say "$REPLICA_AUTH: root:netdata 0640"
else
	say "$REPLICA_AUTH not there yet: pulsed creates it (root:netdata 0640); the collector reads it once it appears"
fi

"$work/pulse-netdata-files" -etc "$ETC" -web "$WEB" "${api_args[@]}" | sed 's/^/install-netdata: /'

# (Re)start: Netdata looks for new plugins only every 60 s, and reads
# netdata.conf only at start. Its log from here on is checked below.
logstart=$(($(stat -c %s "$LOG/error.log" 2>/dev/null || echo 0) + 1))
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	systemctl enable netdata >/dev/null 2>&1 || true
	systemctl restart netdata
	say "restarted netdata (systemd)"
else
	if [ -f "$PIDFILE" ]; then
		pid=$(cat "$PIDFILE")
		if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = netdata ]; then
			say "stopping netdata (pid $pid)"
			kill "$pid"
			for _ in $(seq 1 300); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
			[ ! -d "/proc/$pid" ] || { kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; }
		fi
		rm -f "$PIDFILE"
	fi
	if curl -sf -o /dev/null "$API/api/v1/info"; then
		die "a netdata not started from $PIDFILE still answers on $API (pids: $(pgrep -x netdata | tr '\n' ' ')); stop it and run again"
	fi
	mkdir -p "$LOG"
	chown netdata:netdata "$LOG" 2>/dev/null || true
	setsid /usr/sbin/netdata -D -P "$PIDFILE" </dev/null >>"$LOG/netdata.out" 2>&1 &
	echo $! >"$PIDFILE"
	say "started netdata -D (pid $!, $PIDFILE; output in $LOG/netdata.out)"
fi

for _ in $(seq 1 300); do curl -sf -o /dev/null "$API/api/v1/info" && break; sleep 0.1; done
curl -sf -o /dev/null "$API/api/v1/info" || die "Netdata's API $API does not answer; see $LOG/error.log"

# The plugin: started by Netdata, as user netdata.
users=""
for _ in $(seq 1 100); do
	users=$(ps -o user= -C pulse.d.plugin | sort -u | tr "\n" " " || true)
	[ -n "$users" ] && break
	sleep 0.1
done
[ -n "$users" ] || die "Netdata did not start pulse.d.plugin; see: grep -i pulse $LOG/error.log"
[ "$users" = "netdata " ] || die "pulse.d.plugin runs as '$users', want netdata"
say "pulse.d.plugin runs as netdata: $(ps -o pid=,cmd= -C pulse.d.plugin | head -1 | sed 's/^ *//')"
if [ -e "$REPLICA_AUTH" ] && ! runuser -u netdata -- test -r "$REPLICA_AUTH" 2>/dev/null; then
	die "user netdata cannot read $REPLICA_AUTH (check the directories above it: $(namei -m "$REPLICA_AUTH" 2>/dev/null | tr '\n' ' '))"
fi
# Health reads its files right after start: any complaint is there by now.
complaints=$(tail -c +"$logstart" "$LOG/error.log" 2>/dev/null | grep -i 'health.*pulse\.conf' || true)
[ -z "$complaints" ] || { echo "$complaints" | tail -5 >&2; die "Netdata complained about $ETC/health.d/pulse.conf (above)"; }
say "done: dashboard $API (menu \"Pulse functions\"), alarms: curl -s '$API/api/v1/alarms?all'"
