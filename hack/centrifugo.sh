#!/usr/bin/env bash
# hack/centrifugo.sh installs the Centrifugo server that `imkube bench` compares imkube with
# (the peer of issue 21), with `go install` from the Go module proxy, cached by version.
#
#   hack/centrifugo.sh install   build it once (several minutes cold on 2 cores); print the binary path
#   hack/centrifugo.sh path      print the binary path if it is installed, exit 1 if not
#
# The binary lives in $IMKUBE_CACHE/tools/centrifugo-<version>/centrifugo (default
# ~/.cache/imkube); IMKUBE_CENTRIFUGO_VERSION overrides the version. `imkube bench` looks
# for it there (or in $IMKUBE_CENTRIFUGO) and runs the imkube side only when it is missing.
set -euo pipefail

CACHE="${IMKUBE_CACHE:-$HOME/.cache/imkube}"
GO="${GO:-go}"
VERSION="${IMKUBE_CENTRIFUGO_VERSION:-v6.9.1}"
DIR="$CACHE/tools/centrifugo-$VERSION"
BIN="$DIR/centrifugo"

log() { echo "centrifugo.sh: $*" >&2; }

install() {
	if [[ ! -x "$BIN" ]]; then
		mkdir -p "$DIR"
		exec 8>"$DIR/.lock"
		flock 8
		if [[ ! -x "$BIN" ]]; then
			log "installing github.com/centrifugal/centrifugo/v6@$VERSION from the Go module proxy (several minutes cold)"
			local start=$SECONDS
			(cd "$DIR" && GOBIN="$DIR" GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
				"$GO" install -trimpath -ldflags "-s -w" "github.com/centrifugal/centrifugo/v6@$VERSION")
			log "installed centrifugo in $((SECONDS - start))s"
		fi
		exec 8>&-
	fi
	echo "$BIN"
}

case "${1:-install}" in
install) install ;;
path) [[ -x "$BIN" ]] && echo "$BIN" || { log "not installed: run hack/centrifugo.sh install"; exit 1; } ;;
*) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
