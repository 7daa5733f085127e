#!/usr/bin/env bash
# make up: this machine becomes a one-node Pulse: swarm, pulsed (which runs
# HAProxy, the gateway), Netdata with Pulse's collector and alarms, the CLI's
# configuration, and the example functions.
# Idempotent: run it again after a rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
STATE=${PULSE_STATE_DIR:-/var/lib/pulse}
RUN=/run/pulse
LOG=/var/log/pulse
GATEWAY_PORT=${PULSE_GATEWAY_PORT:-8080}

docker info >/dev/null 2>&1 || { echo "Docker Engine not reachable: install docker.io and start dockerd (see README)"; exit 1; }
# dockerd's host ports apart from client ports, no userland proxy (restarts dockerd only when needed).
scripts/docker-host.sh
[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ] || docker swarm init --advertise-addr 127.0.0.1 >/dev/null
command -v haproxy >/dev/null || { echo "HAProxy missing: apt-get install haproxy"; exit 1; }

# The gateway as a replica sees it: the node's swarm address, or, on a
# loopback-only single node, the default bridge's gateway (the host).
node_addr=$(docker info --format '{{.Swarm.NodeAddr}}')
if [ -z "$node_addr" ] || [ "${node_addr#127.}" != "$node_addr" ]; then
	node_addr=$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}' 2>/dev/null || true)
	[ -n "$node_addr" ] || node_addr=$(ip -4 -o addr show docker0 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -1)
	[ -n "$node_addr" ] || node_addr=172.17.0.1
fi
mkdir -p "$STATE" "$RUN" "$LOG" /etc/pulse
[ -f /etc/pulse/pulsed.yaml ] || cat > /etc/pulse/pulsed.yaml <<YAML
# pulsed configuration (keys: see README). Environment PULSE_<KEY> overrides.
state_dir: $STATE
gateway_listen: 0.0.0.0:$GATEWAY_PORT
api_listen: 127.0.0.1:8090
admin_listen: 127.0.0.1:8404
YAML

# The alarm webhook's token, before pulsed reads it.
scripts/alarm-token.sh

# pulsed: systemd where there is one, else a pid file.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	install -m 0755 "$BIN/pulsed" /usr/local/bin/pulsed
	install -m 0644 scripts/pulsed.service /etc/systemd/system/pulsed.service
	systemctl daemon-reload
	systemctl restart pulsed
else
	if [ -f "$RUN/pulsed.pid" ] && kill -0 "$(cat "$RUN/pulsed.pid")" 2>/dev/null; then
		kill "$(cat "$RUN/pulsed.pid")"
		for _ in $(seq 1 50); do kill -0 "$(cat "$RUN/pulsed.pid")" 2>/dev/null || break; sleep 0.1; done
	fi
	nohup "$BIN/pulsed" --config /etc/pulse/pulsed.yaml >>"$LOG/pulsed.log" 2>&1 &
	echo $! > "$RUN/pulsed.pid"
fi
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:8090/healthz >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf http://127.0.0.1:8090/healthz >/dev/null || { echo "pulsed did not start; see $LOG/pulsed.log"; exit 1; }

# Netdata, its collector reading pulsed's catalog, the alarms and their hook.
scripts/install-netdata.sh

# The CLI goes through the gateway and tells replicas where it is.
cfg=${XDG_CONFIG_HOME:-$HOME/.config}/pulse/config.yaml
if [ ! -f "$cfg" ]; then
	mkdir -p "$(dirname "$cfg")"
	printf 'gateway: http://127.0.0.1:%s\nreplica_gateway: http://%s:%s\n' "$GATEWAY_PORT" "$node_addr" "$GATEWAY_PORT" > "$cfg"
fi

"$BIN/pulse" deploy -f examples/functions.yml
for fn in hello echo greet; do
	for _ in $(seq 1 50); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' -d x "http://127.0.0.1:$GATEWAY_PORT/function/$fn")" = 200 ] && break
		sleep 0.1
	done
done
cat <<TXT

Pulse is up: gateway http://127.0.0.1:$GATEWAY_PORT, pulsed http://127.0.0.1:8090 (log $LOG/pulsed.log),
Netdata http://127.0.0.1:19999 (menu "Pulse functions").
  $BIN/pulse invoke hello -d Pulse                       # through the gateway
  curl http://127.0.0.1:$GATEWAY_PORT/function/greet -d Pulse  # a function calling a function
  $BIN/pulse invoke echo -d hi -H X-Test=1 --query a=b
  curl -s http://127.0.0.1:8090/v1/replicas              # the replica catalog
  $BIN/pulse ls; $BIN/pulse doctor
  curl -s 'http://127.0.0.1:19999/api/v1/alarms?all'     # the scaling alarms
TXT
