#!/usr/bin/env bash
# make up: this machine becomes a one-node Pulse: swarm, pulsed (which runs
# HAProxy, the gateway), Netdata with Pulse's collector and alarms, the CLI's
# configuration, and the example functions.
# Idempotent: run it again after a rebuild.
#   PULSE_TLS=self-signed  generate /etc/pulse/tls.pem (once; openssl) and set
#                          pulsed's tls_cert: the gateway and pulsed's API serve
#                          HTTPS. Unset: whatever pulsed.yaml says.
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
# pulsed configuration (keys: README "pulsed configuration", or pulsed --print-config).
# Environment PULSE_<KEY> overrides.
state_dir: $STATE
gateway_listen: 0.0.0.0:$GATEWAY_PORT
api_listen: 127.0.0.1:8090
admin_listen: 127.0.0.1:8404
YAML
# An older file: renamed keys get their new names (a .bak keeps the old file).
"$BIN/pulsed" --migrate-config /etc/pulse/pulsed.yaml

# The alarm webhook's token and the management API's, before pulsed reads
# them (pulsed creates the replica credential itself).
scripts/alarm-token.sh
PULSE_TOKEN_KIND=api scripts/alarm-token.sh

# TLS: a self-signed certificate when asked.
TLS_CERT=
if [ "${PULSE_TLS:-}" = self-signed ]; then
	TLS_CERT=/etc/pulse/tls.pem
	if [ ! -s "$TLS_CERT" ]; then
		command -v openssl >/dev/null || { apt-get install -y -q openssl >/dev/null || { echo "openssl missing: apt-get install openssl"; exit 1; }; }
		tmp=$(mktemp -d)
		san="DNS:localhost,IP:127.0.0.1,DNS:$(hostname)"
		[ -z "$node_addr" ] || san="$san,IP:$node_addr"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 730 \
			-subj "/CN=pulse $(hostname)" -addext "subjectAltName=$san" \
			-keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
		(umask 077; cat "$tmp/cert.pem" "$tmp/key.pem" > "$TLS_CERT.tmp")
		mv -f "$TLS_CERT.tmp" "$TLS_CERT"
		rm -rf "$tmp"
		echo "TLS: created $TLS_CERT (self-signed, 2 years): $(openssl x509 -in "$TLS_CERT" -noout -fingerprint -sha256)"
	fi
	chown root:root "$TLS_CERT"
	chmod 0600 "$TLS_CERT"
	if grep -qE '^tls_cert:' /etc/pulse/pulsed.yaml; then
		grep -qE "^tls_cert: *$TLS_CERT *\$" /etc/pulse/pulsed.yaml || echo "TLS: /etc/pulse/pulsed.yaml already names another tls_cert; left as it is"
	else
		printf 'tls_cert: %s\n' "$TLS_CERT" >> /etc/pulse/pulsed.yaml
	fi
fi
"$BIN/pulsed" --config /etc/pulse/pulsed.yaml --check-config || { echo "fix /etc/pulse/pulsed.yaml (see above), then run make up again"; exit 1; }
TLS_CERT=$(sed -n 's/^tls_cert: *\([^ #]*\).*/\1/p' /etc/pulse/pulsed.yaml | tr -d '"')
scheme=http
curl_tls=()
if [ -n "$TLS_CERT" ]; then
	scheme=https
	openssl x509 -in "$TLS_CERT" -out /etc/pulse/tls-ca.pem # the certificate alone: clients' CA file
	chmod 0644 /etc/pulse/tls-ca.pem
	curl_tls=(--cacert /etc/pulse/tls-ca.pem)
fi

# pulsed: systemd where there is one, else a pid file.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	install -m 0755 "$BIN/pulsed" /usr/local/bin/pulsed
	install -m 0644 scripts/pulsed.service /etc/systemd/system/pulsed.service
	if [ "$STATE" != /var/lib/pulse ]; then # ProtectSystem=strict: the state dir must be writable
		mkdir -p /etc/systemd/system/pulsed.service.d
		printf '[Service]\nReadWritePaths=%s\n' "$STATE" > /etc/systemd/system/pulsed.service.d/state-dir.conf
	else
		rm -f /etc/systemd/system/pulsed.service.d/state-dir.conf
	fi
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
for _ in $(seq 1 100); do curl -sf "${curl_tls[@]}" "$scheme://127.0.0.1:8090/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "${curl_tls[@]}" "$scheme://127.0.0.1:8090/healthz" >/dev/null || { echo "pulsed did not start; see $LOG/pulsed.log"; exit 1; }

# Netdata, its collector reading pulsed's catalog, the alarms and their hook.
scripts/install-netdata.sh

# The CLI goes through the gateway, reads pulsed's API and tells replicas
# where the gateway is; with TLS it verifies both against the CA file. The
# keys make up owns are rewritten every run (TLS on or off); any other key
# the user set stays.
cfg=${XDG_CONFIG_HOME:-$HOME/.config}/pulse/config.yaml
mkdir -p "$(dirname "$cfg")"
touch "$cfg"
owned='^(gateway|replica_gateway|api|ca_file):'
{
	grep -Ev "$owned" "$cfg" | grep -v '^# managed by make up' || true
	echo "# managed by make up (gateway, replica_gateway, api, ca_file): rewritten on every run"
	printf 'gateway: %s://127.0.0.1:%s\n' "$scheme" "$GATEWAY_PORT"
	printf 'replica_gateway: %s://%s:%s\n' "$scheme" "$node_addr" "$GATEWAY_PORT"
	printf 'api: %s://127.0.0.1:8090\n' "$scheme"
	[ -z "$TLS_CERT" ] || printf 'ca_file: /etc/pulse/tls-ca.pem\n'
} > "$cfg.tmp"
mv -f "$cfg.tmp" "$cfg"

"$BIN/pulse" deploy -f examples/functions.yml
for fn in hello echo greet; do
	for _ in $(seq 1 50); do
		[ "$(curl -s "${curl_tls[@]}" -o /dev/null -w '%{http_code}' -d x "$scheme://127.0.0.1:$GATEWAY_PORT/function/$fn")" = 200 ] && break
		sleep 0.1
	done
done
cat <<TXT

Pulse is up: gateway $scheme://127.0.0.1:$GATEWAY_PORT, pulsed $scheme://127.0.0.1:8090 (log $LOG/pulsed.log),
Netdata http://127.0.0.1:19999 (menu "Pulse functions").
  $BIN/pulse invoke hello -d Pulse                       # through the gateway
  curl ${curl_tls[*]} $scheme://127.0.0.1:$GATEWAY_PORT/function/greet -d Pulse  # a function calling a function
  $BIN/pulse invoke echo -d hi -H X-Test=1 --query a=b
  curl -s ${curl_tls[*]} $scheme://127.0.0.1:8090/v1/replicas              # the replica catalog
  curl -s ${curl_tls[*]} -H "Authorization: Bearer \$(cat /etc/pulse/api-token)" $scheme://127.0.0.1:8090/v1/keys/  # invoke keys
  $BIN/pulse ls; $BIN/pulse doctor
  curl -s 'http://127.0.0.1:19999/api/v1/alarms?all'     # the scaling alarms
TXT
