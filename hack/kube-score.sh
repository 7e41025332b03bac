#!/usr/bin/env bash
# hack/kube-score.sh installs the pinned kube-score from the Go module proxy
# into $IMKUBE_CACHE/tools/kube-score-<version>/ (a new version gets a new
# directory) and prints its path. A second run only checks that the binary
# is there; a cold install takes ~1 min on 2 cores.
#
#   hack/kube-score.sh          install if needed, print the kube-score path
#   hack/kube-score.sh env      install if needed, print `export IMKUBE_KUBE_SCORE=<path>`
set -euo pipefail

KUBE_SCORE_VERSION="v1.20.0"
CACHE="${IMKUBE_CACHE:-$HOME/.cache/imkube}"
DIR="$CACHE/tools/kube-score-$KUBE_SCORE_VERSION"
BIN="$DIR/kube-score"
GO="${GO:-go}"

if [[ ! -x "$BIN" ]]; then
	mkdir -p "$DIR"
	# A lock, so concurrent callers build once.
	exec 9>"$DIR/.lock"
	flock 9
	if [[ ! -x "$BIN" ]]; then
		echo "kube-score.sh: installing kube-score $KUBE_SCORE_VERSION from the Go module proxy into $DIR" >&2
		GOBIN="$DIR" GOFLAGS=-buildvcs=false CGO_ENABLED=0 "$GO" install -trimpath \
			"github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
	fi
fi

case "${1:-}" in
env) echo "export IMKUBE_KUBE_SCORE=$BIN" ;;
"") echo "$BIN" ;;
*)
	echo "usage: hack/kube-score.sh [env]" >&2
	exit 2
	;;
esac
