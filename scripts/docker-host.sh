#!/usr/bin/env bash
# Prepares this host's Docker Engine for Pulse (DESIGN.md §7 "Docker and
# Swarm"). Run as root; idempotent: one line per change, nothing when all is
# in place.
#
# 1. Host ports apart from client ports. dockerd 20.10 hands out the host port
#    of every published port (Pulse's host-mode replicas) in order across the
#    range it reads once, at start, from /proc/sys/net/ipv4/ip_local_port_range
#    -- the kernel's range for client sockets, so under client load a new
#    replica failed with "bind: address already in use". Here dockerd runs in
#    its own mount namespace in which that file is /etc/pulse/docker-port-range
#    (bind-mounted read-only; /usr/local/lib/pulse/dockerd-port-range does it),
#    and the kernel reserves that range (net.ipv4.ip_local_reserved_ports in
#    /etc/sysctl.d/60-pulse.conf), so no client connect() takes one of its
#    ports: clients keep the rest of the kernel's range.
# 2. No userland proxy: "userland-proxy": false in /etc/docker/daemon.json, so
#    127.0.0.1:<host port> reaches a replica through iptables DNAT instead of
#    a docker-proxy process copying every byte.
#
# dockerd is (re)started only when one of these changed or the running one
# lacks them: with systemd, a drop-in (docker.service.d/pulse.conf) and
# `systemctl restart docker`; without, TERM to the running dockerd and a new
# one started the same way (same arguments), logging to /var/log/dockerd.log,
# pid in /run/docker.pid. Replicas on this node restart with it, as Swarm
# restarts tasks after any engine restart.
#
# PULSE_DOCKER_PORT_RANGE (default 49152-60999, IANA's dynamic range) is
# dockerd's range; clients keep the kernel's range without it (32768-49151
# with Linux's default).
set -euo pipefail

RANGE=${PULSE_DOCKER_PORT_RANGE:-49152-60999}
RANGE_FILE=/etc/pulse/docker-port-range
SYSCTL_FILE=/etc/sysctl.d/60-pulse.conf
DAEMON_JSON=/etc/docker/daemon.json
WRAPPER=/usr/local/lib/pulse/dockerd-port-range
DROPIN=/etc/systemd/system/docker.service.d/pulse.conf
LOG=/var/log/dockerd.log
PORT_RANGE=/proc/sys/net/ipv4/ip_local_port_range
RESERVED=/proc/sys/net/ipv4/ip_local_reserved_ports

say() { echo "docker-host: $*"; }
die() {
	echo "docker-host: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (it writes /etc, sets sysctls and restarts dockerd)"
command -v dockerd >/dev/null || die "dockerd missing: apt-get install docker.io"

# The range, as "LOW-HIGH" (or "LOW HIGH").
read -r lo hi < <(echo "$RANGE" | tr -- '-' ' ')
[[ "$lo" =~ ^[0-9]+$ && "$hi" =~ ^[0-9]+$ ]] && [ "$lo" -ge 1024 ] && [ "$lo" -le "$hi" ] && [ "$hi" -le 65535 ] ||
	die "PULSE_DOCKER_PORT_RANGE=$RANGE: want LOW-HIGH with 1024 <= LOW <= HIGH <= 65535"

# normalize LIST: a reserved-ports list as the kernel prints it (sorted,
# overlapping and adjacent entries merged, "8080,49152-60999").
normalize() {
	printf '%s\n' "$1" | tr ',' '\n' | awk '
		/^[ \t]*$/ { next }
		/^[ \t]*[0-9]+([ \t]*-[ \t]*[0-9]+)?[ \t]*$/ {
			gsub(/[ \t]/, ""); split($0, a, "-"); n++; L[n] = a[1] + 0; H[n] = (a[2] == "" ? a[1] : a[2]) + 0; next
		}
		{ print "bad entry: " $0 > "/dev/stderr"; bad = 1 }
		END {
			if (bad) exit 1
			for (i = 2; i <= n; i++) for (j = i; j > 1 && L[j] < L[j-1]; j--) {
				t = L[j]; L[j] = L[j-1]; L[j-1] = t; t = H[j]; H[j] = H[j-1]; H[j-1] = t
			}
			out = ""; m = 0
			for (i = 1; i <= n; i++) {
				if (m && L[i] <= ch + 1) { if (H[i] > ch) ch = H[i]; continue }
				if (m) out = out (out == "" ? "" : ",") (cl == ch ? cl : cl "-" ch)
				cl = L[i]; ch = H[i]; m = 1
			}
			if (m) out = out (out == "" ? "" : ",") (cl == ch ? cl : cl "-" ch)
			print out
		}'
}

# without LIST LO HI: LIST's entries that do not overlap LO-HI.
without() {
	printf '%s\n' "$1" | tr ',' '\n' | awk -v lo="$2" -v hi="$3" -F- '
		/^[0-9]/ { l = $1 + 0; h = (NF > 1 ? $2 : $1) + 0; if (lo == "" || h < lo + 0 || l > hi + 0) print }' | paste -sd, -
}

# free_ports LO HI LIST: how many ports of LO-HI are not in LIST.
free_ports() {
	printf '%s\n' "$3" | tr ',' '\n' | awk -v lo="$1" -v hi="$2" -F- '
		/^[0-9]/ { l = $1 + 0; h = (NF > 1 ? $2 : $1) + 0; if (l < lo) l = lo; if (h > hi) h = hi; if (h >= l) used += h - l + 1 }
		END { print hi - lo + 1 - used }'
}

# put FILE MODE WHAT: replace FILE atomically with stdin when it differs
# (a new inode: a bind mount of the old file keeps the old content, which
# is how a stale dockerd shows) and says so; returns 1 when it was so already.
# restart: what this run changed that a running dockerd reads only at start.
restart=""
put() {
	local tmp
	mkdir -p "$(dirname "$1")"
	tmp=$(mktemp "$(dirname "$1")/.$(basename "$1").XXXXXX")
	cat >"$tmp"
	if [ -f "$1" ] && cmp -s "$tmp" "$1"; then
		rm -f "$tmp"
		return 1
	fi
	chmod "$2" "$tmp"
	mv -f "$tmp" "$1"
	say "wrote $1 ($3)"
}

# --- 1. The ranges ----------------------------------------------------------
read -r klo khi <"$PORT_RANGE"
old_range=""
if [ -f "$RANGE_FILE" ]; then
	read -r olo ohi <"$RANGE_FILE" || true
	[[ "${olo:-}" =~ ^[0-9]+$ && "${ohi:-}" =~ ^[0-9]+$ ]] && old_range="$olo $ohi"
fi
# Reservations of others stay; the previous range of dockerd is replaced.
current=$(normalize "$(cat "$RESERVED")")
# shellcheck disable=SC2086
others=$(without "$current" ${old_range:-$lo $hi})
want=$(normalize "${others:+$others,}$lo-$hi")
clients=$(free_ports "$klo" "$khi" "$want")
[ "$clients" -gt 0 ] || die "the kernel's client range $klo-$khi lies inside the reserved ports $want: no client port would be left; choose PULSE_DOCKER_PORT_RANGE outside it"

printf '%s %s\n' "$lo" "$hi" | put "$RANGE_FILE" 0644 "dockerd's host ports: $lo-$hi" && restart="its port range changed"
cat <<EOF | put "$SYSCTL_FILE" 0644 "reserve $lo-$hi from client sockets" || true
# Written by Pulse's scripts/docker-host.sh (run it again rather than editing).
# dockerd assigns published host ports from $RANGE_FILE ($lo-$hi);
# reserving those ports keeps client sockets (connect, bind to port 0) out of
# them, so a new replica's port is never taken by a client.
net.ipv4.ip_local_reserved_ports = $want
EOF
if [ "$current" != "$want" ]; then
	sysctl -q -p "$SYSCTL_FILE" >/dev/null
	say "set net.ipv4.ip_local_reserved_ports = $want (clients keep $clients ports of $klo-$khi)"
fi

# --- 2. No userland proxy ---------------------------------------------------
json_proxy_off() { # exit 0 when daemon.json says "userland-proxy": false
	if command -v jq >/dev/null; then
		jq -e '."userland-proxy" == false' "$DAEMON_JSON" >/dev/null
	else
		python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get("userland-proxy") is False else 1)' "$DAEMON_JSON"
	fi
}
json_merge() { # daemon.json with "userland-proxy": false, other keys kept
	if command -v jq >/dev/null; then
		jq '. + {"userland-proxy": false}' "$DAEMON_JSON"
	else
		python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["userland-proxy"]=False; print(json.dumps(d, indent=2))' "$DAEMON_JSON"
	fi
}
if [ ! -s "$DAEMON_JSON" ]; then
	printf '{\n  "userland-proxy": false\n}\n' | put "$DAEMON_JSON" 0644 '"userland-proxy": false' && restart="$DAEMON_JSON changed"
elif ! json_proxy_off 2>/dev/null; then
	command -v jq >/dev/null || command -v python3 >/dev/null || die "need jq or python3 to edit $DAEMON_JSON"
	merged=$(json_merge) || die "$DAEMON_JSON is not valid JSON; fix it and run again"
	mode=$(stat -c %a "$DAEMON_JSON")
	printf '%s\n' "$merged" | put "$DAEMON_JSON" "$mode" '"userland-proxy": false, other keys kept' && restart="$DAEMON_JSON changed"
fi

# --- 3. The wrapper dockerd runs under --------------------------------------
# unshare keeps every mount's propagation (shared on systemd hosts), so the
# mounts dockerd makes -- Swarm secrets, shm -- still reach a containerd
# outside this namespace (containerd.service); only /proc becomes a slave, so
# the bind mount over the range file stays inside. (systemd's own
# BindReadOnlyPaths= cuts that propagation: runc then fails every task with a
# secret, "stat .../mounts/secrets/<id>: no such file or directory".)
cat <<'EOF' | put "$WRAPPER" 0755 "runs dockerd with its own port range" || true
#!/bin/sh
# Installed by Pulse's scripts/docker-host.sh. Runs "$@" (dockerd) in its own
# mount namespace, in which /proc/sys/net/ipv4/ip_local_port_range reads as
# /etc/pulse/docker-port-range: dockerd takes published host ports from that
# range, which the kernel reserves from client sockets. Every other mount keeps
# its propagation, so containerd outside still sees what dockerd mounts.
set -e
exec unshare --mount --propagation unchanged -- /bin/sh -ec '
mount --make-rslave /proc
mount --bind /etc/pulse/docker-port-range /proc/sys/net/ipv4/ip_local_port_range
mount -o remount,bind,ro /proc/sys/net/ipv4/ip_local_port_range
exec "$@"' dockerd-port-range "$@"
EOF

# --- 4. dockerd -------------------------------------------------------------
systemd=0
[ -d /run/systemd/system ] && command -v systemctl >/dev/null && systemd=1

dockerd_pid() {
	local pid f
	if [ "$systemd" = 1 ]; then
		pid=$(systemctl show -p MainPID --value docker.service 2>/dev/null || true)
		[ "${pid:-0}" != 0 ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && { echo "$pid"; return; }
	fi
	for f in /run/docker.pid /var/run/docker.pid; do
		pid=$(cat "$f" 2>/dev/null || true)
		[ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && { echo "$pid"; return; }
	done
	# No pid file: the dockerd in this network namespace (nested engines,
	# such as the lab's nodes, have their own).
	for pid in $(pgrep -x dockerd || true); do
		[ "$(readlink "/proc/$pid/ns/net")" = "$(readlink /proc/self/ns/net)" ] && { echo "$pid"; return; }
	done
	return 0
}

# lacks PID: why the running dockerd does not have the settings (empty: it has).
lacks() {
	local pid=$1 seen
	if [ -z "$pid" ]; then
		echo "dockerd is not running"
		return
	fi
	seen=$(tr -s ' \t' ' ' <"/proc/$pid/root$PORT_RANGE" 2>/dev/null || true)
	if [ "$seen" != "$lo $hi" ]; then
		echo "dockerd (pid $pid) reads the port range ${seen:-?}, not $lo $hi"
		return
	fi
	# With the proxy, Docker's nat OUTPUT rule skips 127.0.0.0/8 (docker-proxy
	# serves loopback); without, it covers it.
	if command -v iptables >/dev/null && iptables -w -t nat -S OUTPUT 2>/dev/null | grep -q -- '-d 127.0.0.0/8 .*-j DOCKER'; then
		echo "dockerd (pid $pid) runs with the userland proxy"
		return
	fi
	if ps -o comm= --ppid "$pid" | grep -qx docker-proxy; then
		echo "dockerd (pid $pid) runs docker-proxy processes"
	fi
}

# unit_exec_start: docker.service's command line, from its unit file and
# drop-ins other than Pulse's (the last ExecStart= wins; an empty one resets).
unit_exec_start() {
	local files=() f
	f=$(systemctl show -p FragmentPath --value docker.service)
	[ -n "$f" ] && files+=("$f")
	for f in $(systemctl show -p DropInPaths --value docker.service); do
		[ "$f" != "$DROPIN" ] && files+=("$f")
	done
	[ ${#files[@]} -gt 0 ] || return 0
	awk '/^[ \t]*ExecStart[ \t]*=/ { sub(/^[ \t]*ExecStart[ \t]*=[ \t]*/, ""); cmd = $0 } END { print cmd }' "${files[@]}"
}

wait_engine() { # wait for the API, then for the swarm if it was active
	local i
	for i in $(seq 1 120); do
		docker info >/dev/null 2>&1 && break
		sleep 0.5
	done
	docker info >/dev/null 2>&1 || die "dockerd does not answer after 60 s; see ${1:-its log}"
	if [ "$swarm_before" = active ]; then
		for i in $(seq 1 120); do
			[ "$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ] && break
			sleep 0.5
		done
		[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ] || die "the swarm is not active again after 60 s; see ${1:-its log}"
	fi
}

swarm_before=$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo none)
pid=$(dockerd_pid)
why=$(lacks "$pid")
[ -n "$why" ] || why=$restart

if [ "$systemd" = 1 ]; then
	cmd=$(unit_exec_start)
	cmd=${cmd#"$WRAPPER "}
	[ -n "$cmd" ] || die "cannot find docker.service's ExecStart= (systemctl cat docker.service)"
	if cat <<EOF | put "$DROPIN" 0644 "docker.service runs dockerd through $WRAPPER"
# Written by Pulse's scripts/docker-host.sh (run it again rather than editing).
# dockerd runs through $WRAPPER, in its own mount namespace where
# /proc/sys/net/ipv4/ip_local_port_range reads as $RANGE_FILE, the ports the
# kernel reserves for it (net.ipv4.ip_local_reserved_ports). Not
# BindReadOnlyPaths=: systemd's mount namespace hides the mounts dockerd makes
# for Swarm secrets from containerd.service, and every task with a secret fails.
[Service]
ExecStart=
ExecStart=$WRAPPER $cmd
EOF
	then
		systemctl daemon-reload
		[ -n "$why" ] || why="its unit changed"
	fi
	if [ -n "$why" ]; then
		say "restarting docker.service: $why"
		systemctl restart docker.service
		wait_engine "journalctl -u docker"
	fi
else
	if [ -n "$why" ]; then
		args=()
		if [ -n "$pid" ]; then
			# The same arguments as before, less a --userland-proxy flag (it
			# would clash with daemon.json's key).
			while IFS= read -r -d '' a; do
				case $a in --userland-proxy | --userland-proxy=*) ;; *) args+=("$a") ;; esac
			done < <(tail -z -n +2 "/proc/$pid/cmdline")
			say "stopping dockerd (pid $pid): $why"
			kill -TERM "$pid"
			for _ in $(seq 1 240); do
				[ -d "/proc/$pid" ] || break
				sleep 0.5
			done
			[ ! -d "/proc/$pid" ] || die "dockerd (pid $pid) did not stop within 120 s"
		fi
		setsid nohup "$WRAPPER" "$(command -v dockerd)" "${args[@]}" >>"$LOG" 2>&1 </dev/null &
		wait_engine "$LOG"
		pid=$(dockerd_pid)
		say "started dockerd (pid ${pid:-?}) with host ports from $lo-$hi, no userland proxy; log $LOG"
	fi
fi

if [ -n "$why" ]; then
	pid=$(dockerd_pid)
	still=$(lacks "$pid")
	[ -z "$still" ] || die "after the restart: $still"
fi
