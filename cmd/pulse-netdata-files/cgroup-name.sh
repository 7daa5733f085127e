#!/usr/bin/env bash
# Pulse: Netdata's "script to get cgroup names" on a Pulse node, written by
# pulse-netdata-files and named in netdata.conf's Pulse block. Netdata runs it
# as user netdata, with the cgroup's path and its name, for every new cgroup.
#
# Docker containers (on a Pulse node: function replicas) cannot be named here:
# the stock script asks the Docker socket, which user netdata must not reach
# (that is root on the host), so each container showed as a menu section named
# by its hex ID. Pulse's own charts already show every function by name, so the
# containers are kept out: the script answers PULSE_HIDDEN_PREFIX + the ID's
# first 12 digits, which the block's "enable by default cgroups names matching"
# excludes, and exits 3, Netdata's code for "disable this cgroup".
# Every other cgroup gets the stock script's answer.
set -u
STOCK=${PULSE_STOCK_CGROUP_NAME:-/usr/lib/netdata/plugins.d/cgroup-name.sh}
PULSE_HIDDEN_PREFIX=pulse_hidden_container_
name=${2:-${1:-}}

# The stock script's test for a Docker container's cgroup, with at least 12
# hex digits: /docker/<id>, system.slice/docker-<id>.scope, ..._docker-<id>.
if [[ $name =~ docker[-_/.]([0-9a-fA-F]{12,})([-_.]|$) ]]; then
	id=${BASH_REMATCH[1]}
	echo "${PULSE_HIDDEN_PREFIX}${id:0:12}"
	exit 3
fi
exec "$STOCK" "$@"
