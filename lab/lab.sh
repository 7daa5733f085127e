#!/usr/bin/env bash
# The Pulse lab (lab/README.md): N Debian nodes on this machine, each a
# container of the host's engine with its own address on a private bridge,
# its own sshd and Docker Engine (docker-in-docker), from the node image that
# lab/node-image.sh builds and caches.
#
#   lab/lab.sh up      start the nodes (builds the image first if needed)
#   lab/lab.sh down    remove the nodes, their volumes and the network
#   lab/lab.sh status  list the nodes
#
# Environment: PULSE_LAB_NODES (default 3), PULSE_LAB_DIR (default
# /tmp/pulse-lab: the SSH key, ssh_config and known_hosts), PULSE_LAB_SUBNET
# (default 172.31.250.0/24; nodes are .11, .12, ...), PULSE_LAB_VARIANT
# (node, the default, or bare: Debian with sshd and python3 and no Docker
# Engine, see lab/node-image.sh), PULSE_LAB_IMAGE (default the variant's),
# PULSE_LAB_SYSTEMD_NODES (bare variant: the numbers of the nodes that boot
# with systemd as PID 1, image pulse-lab-systemd:bookworm, e.g. "1"; the
# others run without systemd, as these machines do).
# Bare nodes' apt goes through PULSE_LAB_APT_PROXY (default the host's
# apt-cacher-ng at http://<subnet>.1:3142, started here when it is not
# answering).
#
# Everything the lab creates is named pulse-lab-* and labelled
# pulse.lab=1; `down` removes exactly that, and the host's own swarm is never
# touched. Only the node images (and node-image.sh's debootstrapped root in
# /var/cache/pulse-lab) stay, as a cache.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
nodes=${PULSE_LAB_NODES:-3}
dir=${PULSE_LAB_DIR:-/tmp/pulse-lab}
subnet=${PULSE_LAB_SUBNET:-172.31.250.0/24}
variant=${PULSE_LAB_VARIANT:-node}
image=${PULSE_LAB_IMAGE:-pulse-lab-$variant:bookworm}
systemd_nodes=${PULSE_LAB_SYSTEMD_NODES:-}
systemd_image=pulse-lab-systemd:bookworm
# node_systemd I: whether node I boots systemd.
node_systemd() { case " $systemd_nodes " in *" $1 "*) return 0 ;; esac; return 1; }
net=pulse-lab
prefix=${subnet%.*}
apt_proxy=${PULSE_LAB_APT_PROXY:-http://$prefix.1:3142}
say() { echo "lab: $*"; }
die() { echo "lab: $*" >&2; exit 1; }

node_addr() { echo "$prefix.$((10 + $1))"; }

# The host's apt-cacher-ng (Debian's), which bare nodes' apt goes through.
# When nothing answers on its port it is started here as its init script
# would (there is no systemd; `/etc/init.d/apt-cacher-ng stop` stops it),
# fetching Debian's archive from this host's mirror: its packaged default
# (backends_debian.default) is ftp.debian.org, which a host may not reach.
# Either way it must fetch the mirror's InRelease. Its cache,
# /var/cache/apt-cacher-ng, outlives the lab.
apt_cache() {
	command -v curl >/dev/null || die "curl missing (to check apt-cacher-ng): apt-get install -y curl"
	# shellcheck source=lab/mirror.sh
	. "$here/mirror.sh"
	[ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list*: set PULSE_LAB_MIRROR"
	local proxy=http://127.0.0.1:3142 run=/var/run/apt-cacher-ng n=0
	if ! timeout 2 bash -c ': </dev/tcp/127.0.0.1/3142' 2>/dev/null; then
		[ -x /usr/sbin/apt-cacher-ng ] || die "apt-cacher-ng missing (bare nodes' apt goes through it): apt-get install -y apt-cacher-ng"
		install -d -m 0755 -o apt-cacher-ng -g apt-cacher-ng "$run"
		# The daemon outlives this script: it must not inherit a descriptor
		# beyond 0-2, such as the lab lock that `flock /tmp/pulse-lab.lock
		# lab/lab.sh up` holds (it would hold the lock for good).
		(
			for fd in /proc/$BASHPID/fd/*; do
				fd=${fd##*/}
				[ "$fd" -le 2 ] || eval "exec $fd>&-" 2>/dev/null || true
			done
			exec start-stop-daemon --start --quiet --chuid apt-cacher-ng --group apt-cacher-ng --pidfile "$run/pid" \
				--exec /usr/sbin/apt-cacher-ng -- -c /etc/apt-cacher-ng pidfile="$run/pid" SocketPath="$run/socket" \
				foreground=0 "Remap-debrep=file:deb_mirror*.gz /debian ; $mirror/" </dev/null >/dev/null 2>&1
		)
		until timeout 2 bash -c ': </dev/tcp/127.0.0.1/3142' 2>/dev/null; do
			n=$((n + 1))
			[ $n -lt 20 ] || die "apt-cacher-ng started but does not answer on :3142 (see /var/log/apt-cacher-ng/)"
			sleep 0.5
		done
		say "apt-cacher-ng started, fetching from $mirror (cache in /var/cache/apt-cacher-ng)"
	fi
	curl -sf -o /dev/null --max-time 30 -x "$proxy" "$mirror/dists/bookworm/InRelease" ||
		die "apt-cacher-ng on :3142 cannot fetch $mirror/dists/bookworm/InRelease: its Debian backend (/etc/apt-cacher-ng/backends_debian, else backends_debian.default) is not a mirror this host reaches? Put $mirror/ there, or stop it (/etc/init.d/apt-cacher-ng stop) and lab.sh starts one that fetches from $mirror"
}

up() {
	case $nodes in '' | *[!0-9]*) die "PULSE_LAB_NODES=$nodes: want a number from 1 to 9" ;; esac
	[ "$nodes" -ge 1 ] && [ "$nodes" -le 9 ] || die "PULSE_LAB_NODES=$nodes: want a number from 1 to 9"
	[ "${subnet#*/}" = 24 ] || die "PULSE_LAB_SUBNET=$subnet: want a /24"
	# The flags a node needs on this engine are in LAB.md §2: --privileged
	# fails where the bounding set lacks CAP_SYS_RESOURCE.
	grep -q '^CapBnd' /proc/self/status || die "cannot read the capability bounding set"
	case $variant in node | bare) ;; *) die "PULSE_LAB_VARIANT=$variant: want node or bare" ;; esac
	PULSE_LAB_IMAGE=$image "$here/node-image.sh" "$variant"
	if [ -n "$systemd_nodes" ]; then
		[ "$variant" = bare ] || die "PULSE_LAB_SYSTEMD_NODES is for the bare variant"
		PULSE_LAB_IMAGE=$systemd_image "$here/node-image.sh" systemd
	fi
	local env=()
	if [ "$variant" = bare ]; then
		[ -n "${PULSE_LAB_APT_PROXY:-}" ] || apt_cache
		env=(-e LAB_APT_PROXY="$apt_proxy")
	fi
	mkdir -p "$dir"
	chmod 700 "$dir"
	[ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C pulse-lab -f "$dir/id_ed25519"
	if ! docker network inspect "$net" >/dev/null 2>&1; then
		docker network create --driver bridge --subnet "$subnet" --gateway "$prefix.1" \
			--label pulse.lab=1 "$net" >/dev/null
	fi
	local i name start=$SECONDS img extra
	for i in $(seq 1 "$nodes"); do
		name=pulse-lab-node$i
		img=$image extra=()
		if node_systemd "$i"; then img=$systemd_image extra=(--tmpfs /run/lock); fi
		if had=$(docker container inspect -f '{{.Config.Image}}' "$name" 2>/dev/null); then
			[ "$had" = "$img" ] || die "$name runs $had, not $img: lab/lab.sh down first"
			docker start "$name" >/dev/null
			continue
		fi
		docker run -d --name "$name" --hostname "$name" \
			--network "$net" --ip "$(node_addr "$i")" \
			--cap-add ALL --cap-drop SYS_RESOURCE \
			--security-opt seccomp=unconfined --security-opt apparmor=unconfined \
			--security-opt systempaths=unconfined \
			--device-cgroup-rule 'a *:* rwm' --cgroupns private \
			-v "$name-docker:/var/lib/docker" --tmpfs /run --tmpfs /tmp \
			-e LAB_PUBKEY="$(cat "$dir/id_ed25519.pub")" "${env[@]}" "${extra[@]}" \
			--label pulse.lab=1 "$img" >/dev/null
	done
	# Wait (bounded) for every node's engine (a bare node has none) and
	# sshd; then record its host key, read from inside the node, so SSH
	# checks it for real.
	: >"$dir/known_hosts.new"
	for i in $(seq 1 "$nodes"); do
		name=pulse-lab-node$i
		local n=0
		until { [ "$variant" = bare ] || docker exec "$name" docker info >/dev/null 2>&1; } &&
			docker exec "$name" test -s /etc/ssh/ssh_host_ed25519_key.pub &&
			{ ! node_systemd "$i" || docker exec "$name" systemctl is-active -q ssh.service; }; do
			n=$((n + 1))
			if [ $n -ge 90 ]; then
				docker exec "$name" tail -20 /var/log/dockerd.log >&2 || docker logs --tail 20 "$name" >&2
				die "$name: its engine or sshd did not answer within 90 s (log above)"
			fi
			sleep 1
		done
		printf '%s %s\n' "$(node_addr "$i")" "$(docker exec "$name" cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)" >>"$dir/known_hosts.new"
	done
	mv "$dir/known_hosts.new" "$dir/known_hosts"
	{
		for i in $(seq 1 "$nodes"); do
			printf 'Host pulse-lab-node%s\n  HostName %s\n' "$i" "$(node_addr "$i")"
		done
		printf 'Host pulse-lab-node* %s.*\n  User root\n  IdentityFile %s/id_ed25519\n  IdentitiesOnly yes\n' "$prefix" "$dir"
		printf '  UserKnownHostsFile %s/known_hosts\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n' "$dir"
	} >"$dir/ssh_config"
	for i in $(seq 1 "$nodes"); do
		ssh -F "$dir/ssh_config" -o BatchMode=yes -o ConnectTimeout=5 "pulse-lab-node$i" true ||
			die "pulse-lab-node$i: ssh with the lab's key and known host key failed"
	done
	[ "$variant" = node ] || say "bare nodes: no Docker Engine; apt through $apt_proxy${systemd_nodes:+; systemd on node(s) $systemd_nodes}"
	say "$nodes nodes up in $((SECONDS - start)) s: $(node_addr 1)..$(node_addr "$nodes"); ssh -F $dir/ssh_config pulse-lab-node1"
}

down() {
	local ids vols
	ids=$(docker ps -aq --filter label=pulse.lab=1)
	[ -z "$ids" ] || docker rm -f $ids >/dev/null
	vols=$(docker volume ls -q | grep -E '^pulse-lab-node[0-9]+-docker$' || true)
	[ -z "$vols" ] || docker volume rm $vols >/dev/null
	if docker network inspect "$net" >/dev/null 2>&1; then docker network rm "$net" >/dev/null; fi
	rm -f "$dir/known_hosts" "$dir/ssh_config"
	say "down: no pulse-lab container, volume or network left"
}

status() {
	docker ps -a --filter label=pulse.lab=1 --format 'table {{.Names}}\t{{.Status}}\t{{.Image}}'
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
*) die "usage: lab/lab.sh up|down|status" ;;
esac
