#!/usr/bin/env bash
# hack/promtool.sh installs the pinned promtool (Prometheus v0.316.0, the
# same module the autoscaling path runs) from the Go module proxy into
# $IMKUBE_CACHE/tools/promtool-<version>/ (a new version gets a new
# directory) and prints its path. A second run only checks that the binary
# is there; a cold install takes a few minutes on 2 cores.
#
#   hack/promtool.sh            install if needed, print the promtool path
#   hack/promtool.sh install    same
#   hack/promtool.sh env        install if needed, print `export IMKUBE_PROMTOOL=<path>`
set -euo pipefail

PROMETHEUS_VERSION="v0.316.0"
CACHE="${IMKUBE_CACHE:-$HOME/.cache/imkube}"
DIR="$CACHE/tools/promtool-$PROMETHEUS_VERSION"
BIN="$DIR/promtool"
GO="${GO:-go}"

case "${1:-}" in
"" | install | env) ;;
*)
	echo "usage: hack/promtool.sh [install|env]" >&2
	exit 2
	;;
esac

if [[ ! -x "$BIN" ]]; then
	mkdir -p "$DIR"
	# A lock, so concurrent callers (the background prebuild and the env
	# target) build once.
	exec 9>"$DIR/.lock"
	flock 9
	if [[ ! -x "$BIN" ]]; then
		echo "promtool.sh: installing promtool $PROMETHEUS_VERSION from the Go module proxy into $DIR" >&2
		GOBIN="$DIR" GOFLAGS=-buildvcs=false CGO_ENABLED=0 "$GO" install -trimpath \
			"github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
	fi
fi

case "${1:-}" in
env) echo "export IMKUBE_PROMTOOL=$BIN" ;;
*) echo "$BIN" ;;
esac
