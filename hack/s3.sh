#!/usr/bin/env bash
# hack/s3.sh — a real S3-compatible object store for imkube's media tests:
# versitygw (Apache-2.0, github.com/versity/versitygw) on its POSIX backend, on
# loopback, single-account mode. Installed with `go install` on first use into
# $IMKUBE_CACHE/tools/versitygw-<version>; data, log and pid under
# $IMKUBE_CACHE/s3. (The MinIO server is AGPL and is not used; SeaweedFS refuses
# `go install`.)
#
#   hack/s3.sh up       install when missing, start, create the bucket, wait until ready
#   hack/s3.sh down     stop what `up` started
#   hack/s3.sh status   whether it runs
#   hack/s3.sh env      `export` lines for the tests (IMKUBE_TEST_S3_*)
#
# `up` is idempotent and returns in well under a second when the server already
# runs. The port moves with IMKUBE_S3_PORT (default 17070).
set -euo pipefail

CACHE="${IMKUBE_CACHE:-$HOME/.cache/imkube}"
GO="${GO:-go}"
VERSITYGW_VERSION="v1.8.0"
BIN_DIR="$CACHE/tools/versitygw-$VERSITYGW_VERSION"
BIN="$BIN_DIR/versitygw"
STATE="$CACHE/s3"
PORT="${IMKUBE_S3_PORT:-17070}"
ACCESS="imkube-test"
SECRET="imkube-test-secret"
BUCKET="imkube-media"
REGION="us-east-1"

log() { printf 's3: %s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running() {
	[[ -s "$STATE/versitygw.pid" ]] || return 1
	local pid
	pid="$(<"$STATE/versitygw.pid")"
	[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "versitygw" &&
		port_open "$PORT"
}

install() {
	[[ -x "$BIN" ]] && return 0
	log "installing versitygw $VERSITYGW_VERSION (go install, a few minutes the first time)"
	mkdir -p "$BIN_DIR"
	GOBIN="$BIN_DIR" GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
		"$GO" install -trimpath -ldflags "-s -w" "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
	[[ -x "$BIN" ]] || die "go install did not produce $BIN"
}

up() {
	if running; then return 0; fi
	install
	mkdir -p "$STATE/data/$BUCKET"
	# The POSIX backend maps buckets to directories: the bucket exists once its
	# directory does.
	log "starting versitygw on 127.0.0.1:$PORT"
	setsid "$BIN" --access "$ACCESS" --secret "$SECRET" --region "$REGION" --port "127.0.0.1:$PORT" \
		posix "$STATE/data" >"$STATE/versitygw.log" 2>&1 </dev/null &
	echo $! >"$STATE/versitygw.pid"
	local i
	for ((i = 0; i < 150; i++)); do
		if running; then
			log "versitygw ready"
			return 0
		fi
		sleep 0.2
	done
	tail -20 "$STATE/versitygw.log" >&2 || true
	die "versitygw not ready after 30s (log: $STATE/versitygw.log)"
}

down() {
	[[ -s "$STATE/versitygw.pid" ]] || return 0
	local pid
	pid="$(<"$STATE/versitygw.pid")"
	if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "versitygw"; then
		log "stopping versitygw (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -f "$STATE/versitygw.pid"
}

env_lines() {
	cat <<EOT
export IMKUBE_TEST_S3_ENDPOINT='http://127.0.0.1:$PORT'
export IMKUBE_TEST_S3_BUCKET='$BUCKET'
export IMKUBE_TEST_S3_REGION='$REGION'
export IMKUBE_TEST_S3_ACCESS_KEY='$ACCESS'
export IMKUBE_TEST_S3_SECRET_KEY='$SECRET'
EOT
}

case "${1:-}" in
up) up ;;
down) down ;;
status) if running; then echo "versitygw: running on 127.0.0.1:$PORT"; else echo "versitygw: stopped"; fi ;;
env) env_lines ;;
*) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
