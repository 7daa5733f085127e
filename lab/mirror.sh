# shellcheck shell=bash
# Sourced by node-image.sh and lab.sh: the Debian mirrors this host's apt
# uses (deb822 .sources or a sources.list line), which the node images are
# built from and name, and which the host's apt-cacher-ng fetches from for
# bare nodes. PULSE_LAB_MIRROR and PULSE_LAB_SECURITY_MIRROR override them.
mirror_of() { # $1: suffix after the archive name ("" or "-security")
	local want=$1 u
	for u in $(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null) \
		$(awk '$1 == "deb" {print $2}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null); do
		case $u in
		*/debian-security | */debian-security/) [ "$want" = -security ] && { echo "${u%/}"; return; } ;;
		*/debian | */debian/) [ -z "$want" ] && { echo "${u%/}"; return; } ;;
		esac
	done
}
mirror=${PULSE_LAB_MIRROR:-$(mirror_of "")}
security=${PULSE_LAB_SECURITY_MIRROR:-$(mirror_of -security)}
