#!/bin/sh
# PID 1 of a Pulse lab node (lab/README.md): a Debian machine with its own
# address and sshd, run as a container on the host's engine. Its argument is
# the node's variant:
#
#   node  (default) Docker Engine installed: dockerd is started here, and
#         SIGTERM is forwarded to it.
#   bare  no Docker Engine, as a freshly installed server: nothing but sshd
#         is started; what a playbook starts later (dockerd by docker.io's
#         init script, say) is adopted: orphans are reaped, and SIGTERM goes
#         to every process of the node. LAB_APT_PROXY, when set, is the apt
#         proxy its apt-get uses (the host's apt-cacher-ng).
#   systemd  the bare node booted with systemd: once the cgroups, keys and
#         apt proxy are in place, init.sh execs systemd, which starts sshd
#         (ssh.service) and whatever a playbook enables.
#
# The node runs with --cgroupns private, so Docker mounts the cgroup v1
# hierarchies read-only; they are mounted again read-write, this node's own
# namespace, so an inner dockerd (either variant's) nests its containers
# under the node's cgroup: `docker pause` of the node freezes its tasks too,
# and removing the node leaves no cgroup behind on the host.
set -u
mode=${1:-node}
case $mode in node | bare | systemd) ;; *) echo "lab node: unknown variant $mode" >&2; exit 2 ;; esac
if [ "$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)" = "/" ] &&
	grep -q ' /sys/fs/cgroup/memory cgroup ro' /proc/mounts; then
	for d in /sys/fs/cgroup/*/; do
		c=$(basename "$d")
		case $c in systemd) o=none,name=systemd ;; *) o=$c ;; esac
		umount "$d" && mount -t cgroup -o "rw,nosuid,nodev,noexec,$o" cgroup "$d"
	done
fi
mkdir -p /root/.ssh /run/sshd
if [ -n "${LAB_PUBKEY:-}" ]; then
	printf '%s\n' "$LAB_PUBKEY" >/root/.ssh/authorized_keys
	chmod 600 /root/.ssh/authorized_keys
fi
ssh-keygen -A >/dev/null 2>&1 # host keys are the node's own, made at its first start
if [ "$mode" != node ]; then
	if [ -n "${LAB_APT_PROXY:-}" ]; then
		printf 'Acquire::http::Proxy "%s";\n' "$LAB_APT_PROXY" >/etc/apt/apt.conf.d/01pulse-lab-proxy
	else
		rm -f /etc/apt/apt.conf.d/01pulse-lab-proxy
	fi
fi
if [ "$mode" = systemd ]; then
	# A machine booted with systemd has / shared (systemd's mount setup does
	# it, though not in a container): mounts made in one mount namespace,
	# such as dockerd's, reach the others, such as containerd.service's.
	mount --make-rshared /
	mkdir -p /etc/systemd/system/multi-user.target.wants
	ln -sf /lib/systemd/system/ssh.service /etc/systemd/system/multi-user.target.wants/ssh.service
	exec /lib/systemd/systemd
fi
/usr/sbin/sshd -E /var/log/sshd.log

if [ "$mode" = bare ]; then
	# True while a process other than this one is alive (builtins only,
	# so none of this loop's own). A zombie's state is the field after its
	# command's closing parenthesis.
	others() {
		for d in /proc/[0-9]*; do
			[ "${d#/proc/}" != 1 ] || continue
			read -r stat <"$d/stat" 2>/dev/null || continue
			s=${stat##*) }
			[ "${s%% *}" = Z ] || return 0
		done
		return 1
	}
	stop() {
		kill -TERM -1 2>/dev/null # every process of the node but this one
		n=0
		while others && [ $n -lt 18 ]; do sleep 0.5; n=$((n + 1)); done
		exit 0
	}
	trap stop TERM INT
	# The shell's wait reaps every child, adopted orphans too.
	while :; do
		sleep 3600 &
		wait $!
	done
fi

# shellcheck disable=SC2086 # LAB_DOCKERD_ARGS is a list of flags
dockerd --host unix:///var/run/docker.sock --storage-driver "${LAB_STORAGE_DRIVER:-overlay2}" \
	${LAB_DOCKERD_ARGS:-} >/var/log/dockerd.log 2>&1 &
dockerd_pid=$!
trap 'kill -TERM $dockerd_pid 2>/dev/null; wait $dockerd_pid; exit 0' TERM INT
while kill -0 "$dockerd_pid" 2>/dev/null; do wait "$dockerd_pid"; done
echo "lab node: dockerd exited" >&2
tail -20 /var/log/dockerd.log >&2 # shows in `docker logs <node>`
exit 1
