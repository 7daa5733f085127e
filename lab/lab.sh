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
# (default 172.31.250.0/24; nodes are .11, .12, ...), PULSE_LAB_IMAGE.
#
# Everything the lab creates is named pulse-lab-* and labelled
# pulse.lab=1; `down` removes exactly that, and the host's own swarm is never
# touched. Only the node image stays, as a cache.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
nodes=${PULSE_LAB_NODES:-3}
dir=${PULSE_LAB_DIR:-/tmp/pulse-lab}
subnet=${PULSE_LAB_SUBNET:-172.31.250.0/24}
image=${PULSE_LAB_IMAGE:-pulse-lab-node:bookworm}
net=pulse-lab
prefix=${subnet%.*}
say() { echo "lab: $*"; }
die() { echo "lab: $*" >&2; exit 1; }

node_addr() { echo "$prefix.$((10 + $1))"; }

up() {
	case $nodes in '' | *[!0-9]*) die "PULSE_LAB_NODES=$nodes: want a number from 1 to 9" ;; esac
	[ "$nodes" -ge 1 ] && [ "$nodes" -le 9 ] || die "PULSE_LAB_NODES=$nodes: want a number from 1 to 9"
	[ "${subnet#*/}" = 24 ] || die "PULSE_LAB_SUBNET=$subnet: want a /24"
	# The flags a node needs on this engine are in LAB.md §2: --privileged
	# fails where the bounding set lacks CAP_SYS_RESOURCE.
	grep -q '^CapBnd' /proc/self/status || die "cannot read the capability bounding set"
	"$here/node-image.sh"
	mkdir -p "$dir"
	chmod 700 "$dir"
	[ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C pulse-lab -f "$dir/id_ed25519"
	if ! docker network inspect "$net" >/dev/null 2>&1; then
		docker network create --driver bridge --subnet "$subnet" --gateway "$prefix.1" \
			--label pulse.lab=1 "$net" >/dev/null
	fi
	local i name start=$SECONDS
	for i in $(seq 1 "$nodes"); do
		name=pulse-lab-node$i
		if docker container inspect "$name" >/dev/null 2>&1; then
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
			-e LAB_PUBKEY="$(cat "$dir/id_ed25519.pub")" \
			--label pulse.lab=1 "$image" >/dev/null
	done
	# Wait (bounded) for every node's engine and sshd; then record its
	# host key, read from inside the node, so SSH checks it for real.
	: >"$dir/known_hosts.new"
	for i in $(seq 1 "$nodes"); do
		name=pulse-lab-node$i
		local n=0
		until docker exec "$name" docker info >/dev/null 2>&1 &&
			docker exec "$name" test -s /etc/ssh/ssh_host_ed25519_key.pub; do
			n=$((n + 1))
			if [ $n -ge 90 ]; then
				docker exec "$name" tail -20 /var/log/dockerd.log >&2 || docker logs --tail 20 "$name" >&2
				die "$name: its engine did not answer within 90 s (log above)"
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
