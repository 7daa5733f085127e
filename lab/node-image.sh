#!/usr/bin/env bash
# Builds a lab node image (lab/README.md) from Debian packages, with no
# registry: debootstrap a bookworm root, install the variant's packages in it,
# `docker import` it as the base image, and put lab/node/init.sh on top as
# PID 1, started with the variant as its argument. The variants
# ($1, or PULSE_LAB_VARIANT; default node):
#
#   node  pulse-lab-node:bookworm: Docker Engine, sshd and Python (for
#         Ansible's docker modules); init.sh starts dockerd.
#   bare  pulse-lab-bare:bookworm: a freshly installed Debian server, sshd
#         and Python (python3-apt for Ansible's apt module), no Docker
#         Engine: what a playbook installs it onto (issue 15). systemd is
#         installed, as on any Debian server, but PID 1 is init.sh.
#   systemd  pulse-lab-systemd:bookworm: the bare node booted with systemd
#         as PID 1 (the same base image; init.sh prepares the node and
#         execs it), which starts sshd: a server as users run them.
#
# The images are what the lab keeps between runs, as a cache: each stage is
# labelled with a digest of what made it and is skipped when an image with
# that label exists. The debootstrapped root, the slowest step and the same
# for every variant, is kept too, as a tar file in PULSE_LAB_CACHE, so the
# second variant built cold starts from it. Cold (nothing cached) takes 1 to 4
# minutes, most of it debootstrap and apt from the mirror; a variant built on
# a cached root takes the package install only (about 20 s); a changed
# init.sh only re-runs the last stage (seconds). PULSE_LAB_REBUILD=1 builds
# everything again. Builds on one host take turns (a lock in PULSE_LAB_CACHE).
#
# Environment: PULSE_LAB_IMAGE (default the variant's, above),
# PULSE_LAB_MIRROR and PULSE_LAB_SECURITY_MIRROR (default: the ones this
# host's apt sources name), PULSE_LAB_CACHE (default /var/cache/pulse-lab),
# PULSE_LAB_WORKDIR (default a temporary directory, removed after). Run as
# root (debootstrap, chroot, mount).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
variant=${1:-${PULSE_LAB_VARIANT:-node}}
case $variant in
node) packages="docker.io openssh-server iptables python3 python3-docker procps curl less" ;;
# ca-certificates and iproute2 come with debootstrap (below), like the rest
# of a minimal install: apt, bash, coreutils, tar, gzip; openssh-sftp-server
# is what a server's sshd comes with (Recommends), and Ansible copies by it.
bare | systemd) packages="openssh-server openssh-sftp-server python3 python3-apt procps netbase less systemd systemd-sysv" ;;
*) echo "lab-image: unknown variant $variant: want node, bare or systemd" >&2; exit 2 ;;
esac
image=${PULSE_LAB_IMAGE:-pulse-lab-$variant:bookworm}
base=${image%%:*}-base:${image##*:}
# systemd boots the bare node's root file system.
[ "$variant" != systemd ] || base=pulse-lab-bare-base:bookworm
say() { echo "lab-image: $*"; }
die() { echo "lab-image: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and mount need it)"
command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install -y debootstrap"
docker info >/dev/null 2>&1 || die "no Docker Engine answers (docker info)"

# shellcheck source=lab/mirror.sh
. "$here/mirror.sh"
[ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list*: set PULSE_LAB_MIRROR"
[ -n "$security" ] || die "no Debian security mirror in /etc/apt/sources.list*: set PULSE_LAB_SECURITY_MIRROR"

cache=${PULSE_LAB_CACHE:-/var/cache/pulse-lab}
mkdir -p "$cache"
# One build at a time on this host: two would debootstrap the same root, and
# the last step's prune could take an image another build is making.
exec 9>"$cache/.lock"
flock 9

label() { docker image inspect -f "{{index .Config.Labels \"pulse.lab.recipe\"}}" "$1" 2>/dev/null || true; }
# The debootstrapped root, before any variant's packages; each stage's
# recipe takes in the one before it.
debootstrap_args=(--variant=minbase --include=ca-certificates,iproute2 bookworm)
root_recipe=$(printf '%s\n' "${debootstrap_args[*]}" "$mirror" | sha256sum | cut -c1-16)
root_tar=$cache/root-bookworm-$root_recipe.tar
base_recipe=$(printf '%s\n' "$root_recipe" "$security" "$packages" | sha256sum | cut -c1-16)
top_recipe=$( (cat "$here/node/init.sh"; echo "$variant") | sha256sum | cut -c1-16)-$base_recipe

if [ -z "${PULSE_LAB_REBUILD:-}" ] && [ "$(label "$image")" = "$top_recipe" ]; then
	say "$image is up to date (recipe $top_recipe)"
	exit 0
fi

work=${PULSE_LAB_WORKDIR:-$(mktemp -d /tmp/pulse-lab-image.XXXXXX)}
root=$work/rootfs
unmount_all() {
	local m
	for m in dev/pts dev sys proc; do
		if mountpoint -q "$root/$m" 2>/dev/null; then umount -l "$root/$m"; fi
	done
	return 0
}
cleanup() {
	unmount_all
	[ -n "${PULSE_LAB_WORKDIR:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${PULSE_LAB_REBUILD:-}" ] || [ "$(label "$base")" != "$base_recipe" ]; then
	start=$SECONDS
	rm -rf "$root"
	if [ -z "${PULSE_LAB_REBUILD:-}" ] && [ -f "$root_tar" ]; then
		say "the debootstrapped root from $root_tar"
		mkdir -p "$root"
		tar -C "$root" -xf "$root_tar" || die "unpacking $root_tar failed: remove it to debootstrap again"
	else
		say "debootstrap bookworm from $mirror (about 1-3 minutes)"
		# In a container debootstrap can exit non-zero after it has succeeded
		# (it leaves proc mounted): its last line is what counts.
		debootstrap "${debootstrap_args[@]}" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || true
		grep -q 'Base system installed successfully' "$work/debootstrap.log" ||
			{ tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
		unmount_all
		# Kept for the next variant (written whole, then renamed); roots of
		# other recipes go.
		rm -f "$cache"/root-bookworm-*.tar "$cache"/root-bookworm-*.tar.tmp
		tar -C "$root" -cf "$root_tar.tmp" . && mv "$root_tar.tmp" "$root_tar"
	fi
	say "the root took $((SECONDS - start)) s; installing $packages"
	start=$SECONDS
	printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
		"$mirror" "$mirror" "$security" >"$root/etc/apt/sources.list"
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	mount -t proc proc "$root/proc"
	# shellcheck disable=SC2086 # $packages is a list
	if ! chroot "$root" sh -c "export DEBIAN_FRONTEND=noninteractive
		apt-get update -q && apt-get install -y -q --no-install-recommends $packages &&
		apt-get clean && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /usr/share/locale/*" >"$work/install.log" 2>&1; then
		tail -20 "$work/install.log" >&2
		die "installing the $variant node's packages failed (log above)"
	fi
	unmount_all
	rm -f "$root"/etc/ssh/ssh_host_* # each node makes its own at its first start
	mkdir -p "$root/root/.ssh" "$root/run/sshd"
	chmod 700 "$root/root/.ssh"
	sed -i 's/^#\?PermitRootLogin.*/PermitRootLogin prohibit-password/' "$root/etc/ssh/sshd_config"
	: >"$root/etc/resolv.conf"
	: >"$root/etc/hostname"
	say "packages took $((SECONDS - start)) s; importing $base"
	tar -C "$root" -c . | docker import -c "LABEL pulse.lab.recipe=$base_recipe" - "$base" >/dev/null
fi

say "building $image (init.sh $variant on $base)"
ctx=$work/context
mkdir -p "$ctx"
cp "$here/node/init.sh" "$ctx/init.sh"
extra=""
# systemd in a container: it reads container= to know it is one, and halts on
# SIGRTMIN+3 (SIGTERM would only make it re-execute itself).
[ "$variant" != systemd ] || extra=$'ENV container=docker\nSTOPSIGNAL SIGRTMIN+3'
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $base
COPY init.sh /lab-init.sh
LABEL pulse.lab.recipe=$top_recipe
$extra
ENTRYPOINT ["/lab-init.sh", "$variant"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q -t "$image" "$ctx" >/dev/null 2>"$work/build.log" ||
	{ cat "$work/build.log" >&2; die "docker build of $image failed (log above)"; }
# The image this one replaced, if any, is left without a tag: remove it.
docker image prune -f --filter label=pulse.lab.recipe >/dev/null
say "$image built (recipe $top_recipe, $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%d MB", $1/1e6}'))"
