#!/bin/sh
# PID 1 of a Pulse lab node (lab/README.md): a Debian machine with its own
# address, sshd and Docker Engine, run as a container on the host's engine.
#
# The node runs with --cgroupns private, so Docker mounts the cgroup v1
# hierarchies read-only; they are mounted again read-write, this node's own
# namespace, so the inner dockerd nests its containers under the node's
# cgroup: `docker pause` of the node freezes its tasks too, and removing the
# node leaves no cgroup behind on the host.
set -u
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
/usr/sbin/sshd -E /var/log/sshd.log
# shellcheck disable=SC2086 # LAB_DOCKERD_ARGS is a list of flags
dockerd --host unix:///var/run/docker.sock --storage-driver "${LAB_STORAGE_DRIVER:-overlay2}" \
	${LAB_DOCKERD_ARGS:-} >/var/log/dockerd.log 2>&1 &
dockerd_pid=$!
trap 'kill -TERM $dockerd_pid 2>/dev/null; wait $dockerd_pid; exit 0' TERM INT
while kill -0 "$dockerd_pid" 2>/dev/null; do wait "$dockerd_pid"; done
echo "lab node: dockerd exited" >&2
tail -20 /var/log/dockerd.log >&2 # shows in `docker logs <node>`
exit 1
