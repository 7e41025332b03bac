#!/usr/bin/env bash
# hack/helm.sh installs the pinned helm from the Go module proxy (no get.helm.sh)
# into $IMKUBE_CACHE/bin and prints its path. A second run only checks the
# version (~0.1 s); a cold install takes ~1-2 min on 2 cores.
#
#   hack/helm.sh          install if needed, print the helm path
#   hack/helm.sh env      install if needed, print `export IMKUBE_HELM=<path>`
set -euo pipefail

HELM_VERSION="v3.22.0"
# The Kubernetes version helm assumes without a cluster (`helm template`,
# `helm lint`): the version of its k8s.io/client-go, as helm's own Makefile sets it.
KUBE_MINOR="37"
CACHE="${IMKUBE_CACHE:-$HOME/.cache/imkube}"
BIN_DIR="$CACHE/bin"
HELM="$BIN_DIR/helm"
GO="${GO:-go}"

log() { echo "helm.sh: $*" >&2; }

STAMP="$BIN_DIR/.helm.stamp"
WANT="$HELM_VERSION k8s=1.$KUBE_MINOR"

installed_version() {
	if [[ -x "$HELM" && "$(cat "$STAMP" 2>/dev/null)" == "$WANT" ]]; then
		"$HELM" version --template '{{.Version}}' 2>/dev/null || true
	fi
}

if [[ "$(installed_version)" != "$HELM_VERSION" ]]; then
	log "installing helm $HELM_VERSION from the Go module proxy into $BIN_DIR"
	mkdir -p "$BIN_DIR"
	# A lock, so concurrent callers (the chart tests, the e2e scripts) build once.
	exec 9>"$BIN_DIR/.helm.lock"
	flock 9
	if [[ "$(installed_version)" != "$HELM_VERSION" ]]; then
		GOBIN="$BIN_DIR" GOFLAGS=-buildvcs=false CGO_ENABLED=0 "$GO" install -trimpath \
			-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION
				-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$KUBE_MINOR
				-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$KUBE_MINOR" \
			"helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
		echo "$WANT" >"$STAMP"
	fi
	got="$(installed_version)"
	if [[ "$got" != "$HELM_VERSION" ]]; then
		log "installed helm reports version '$got', want $HELM_VERSION"
		exit 1
	fi
fi

case "${1:-path}" in
path) echo "$HELM" ;;
env) echo "export IMKUBE_HELM=$HELM" ;;
*) log "usage: hack/helm.sh [path|env]"; exit 2 ;;
esac
