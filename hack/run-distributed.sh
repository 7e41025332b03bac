#!/usr/bin/env bash
# hack/run-distributed.sh — imkube in distributed mode on this machine: the
# dependencies of hack/deps.sh (Redis, MariaDB, RocketMQ) plus one user, one
# sequence, one message service and two gateways, each its own process on
# loopback. Prints the gateway URLs; Ctrl-C stops the services (the
# dependencies keep running; `hack/deps.sh down` stops them).
#
#   hack/run-distributed.sh            (make run-distributed)
#
# Ports: gateways 8080 and 8090 (IMKUBE_GW1_PORT, IMKUBE_GW2_PORT), message
# 8081, user 8082, sequence 8083. Logs go to $IMKUBE_CACHE/distributed/*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${IMKUBE_CACHE:-$HOME/.cache/imkube}"
DIR="$CACHE/distributed"
mkdir -p "$DIR"

hack/deps.sh up
eval "$(hack/deps.sh env)"
make --no-print-directory build >/dev/null
BIN="$PWD/bin/imkube"

KEY="$DIR/jwt.key"
[ -s "$KEY" ] || { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$KEY"; echo >>"$KEY"; chmod 600 "$KEY"; }

GW1="${IMKUBE_GW1_PORT:-8080}" GW2="${IMKUBE_GW2_PORT:-8090}"
export IMKUBE_JWT_KEY_FILE="$KEY"
export IMKUBE_USER_URL=http://127.0.0.1:8082
export IMKUBE_MESSAGE_URL=http://127.0.0.1:8081
export IMKUBE_SEQUENCE_URL=http://127.0.0.1:8083
export IMKUBE_SENTINEL_LOG_DIR="$DIR/sentinel"

pids=()
cleanup() {
	trap - INT TERM EXIT
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	echo "stopped imkube services (dependencies keep running: hack/deps.sh down)"
}
trap cleanup INT TERM EXIT

start() { # name args...
	local name=$1; shift
	"$BIN" "$@" >>"$DIR/$name.log" 2>&1 &
	pids+=($!)
}
wait_ready() { # name url
	for _ in $(seq 1 300); do
		curl -fsS "$2/readyz" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	echo "$1 did not become ready; see $DIR/$1.log" >&2
	tail -20 "$DIR/$1.log" >&2
	exit 1
}

start user user --addr 127.0.0.1:8082 && wait_ready user http://127.0.0.1:8082
start sequence sequence --addr 127.0.0.1:8083 && wait_ready sequence http://127.0.0.1:8083
start message message --addr 127.0.0.1:8081 && wait_ready message http://127.0.0.1:8081
IMKUBE_GATEWAY_ID=gw1 start gateway1 gateway --addr "127.0.0.1:$GW1" && wait_ready gateway1 "http://127.0.0.1:$GW1"
IMKUBE_GATEWAY_ID=gw2 start gateway2 gateway --addr "127.0.0.1:$GW2" && wait_ready gateway2 "http://127.0.0.1:$GW2"

cat <<MSG
imkube (distributed) is running:
  gateway 1:  http://127.0.0.1:$GW1/   (WebSocket ws://127.0.0.1:$GW1/ws, REST http://127.0.0.1:$GW1/api/v1)
  gateway 2:  http://127.0.0.1:$GW2/   (WebSocket ws://127.0.0.1:$GW2/ws, REST http://127.0.0.1:$GW2/api/v1)
  services:   message :8081, user :8082, sequence :8083 (each with /healthz /readyz /metrics)
  logs:       $DIR/*.log
Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "a service exited; see $DIR/*.log" >&2
