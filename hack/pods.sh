#!/usr/bin/env bash
# hack/pods.sh runs the real-pod suite (test/e2e/pods, `make e2e-pods`; docs/e2e.md
# "The real-pod suite") from start to end and tears everything down, even on failure:
#
#   1. the images: the imkube image at VERSION and at VERSION-next (the same binary with
#      another version, for the spec.version rollout), built by hack/image.sh and cached
#      under $IMKUBE_CACHE/pods keyed by the sources, so a second run builds nothing;
#   2. the real node (hack/node.sh up: control plane + containerd, kubelet, kube-proxy,
#      CoreDNS; the kwok node is cordoned), both images imported;
#   3. the dependencies of hack/deps.sh with the RocketMQ broker advertising the node's
#      host address (IMKUBE_DEPS_BROKER_IP, pods cannot use 127.0.0.1);
#   4. go test -tags pods ./test/e2e/pods/ (it installs the chart, the samples, and cleans
#      its namespace);
#   5. always: hack/node.sh down (the kwok node uncordoned) and the broker restored to
#      advertise 127.0.0.1 for the other suites.
#
# Holds the e2e lock ($IMKUBE_CACHE/.e2e.lock) throughout: the kwok suite shares the
# control plane. Env: IMKUBE_CACHE, IMKUBE_CLUSTER_PORT_OFFSET, IMKUBE_DEPS_INSTANCE
# (a separate control plane/deps set), PODS_TIMEOUT (go test, default 20m), PODS_RUN,
# IMKUBE_PODS_KEEP=1 (leave the node up after the run).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CACHE="${IMKUBE_CACHE:-$HOME/.cache/imkube}"
GO="${GO:-go}"
VERSION="${VERSION:-$(cat VERSION)}"
NEXT="$VERSION-next"
IMAGE_REPO="${IMAGE_REPO:-ghcr.io/imkube/imkube}"
DIR="$CACHE/pods"
HOST_IP=10.245.0.1

log() { printf 'pods.sh: %s %s\n' "$(date +%T)" "$*" >&2; }

mkdir -p "$DIR"
exec 9>"$CACHE/.e2e.lock"
flock -w 1800 9 || { log "could not get the e2e lock $CACHE/.e2e.lock in 30 min"; exit 1; }

t0=$SECONDS
# ---- images, cached by version and sources
key="$(git ls-files -co --exclude-standard -- go.mod go.sum VERSION Dockerfile hack/image.sh cmd internal services api operator third_party |
	grep -v '_test\.go$' | sort | xargs -d '\n' sha256sum 2>/dev/null | sha256sum | cut -c1-16)"
tars=()
for v in "$VERSION" "$NEXT"; do
	tar="$DIR/imkube-$v-$key.tar"
	if [[ ! -s "$tar" ]]; then
		find "$DIR" -name "imkube-$v-*.tar" ! -name "imkube-$v-$key.tar" -delete
		log "building the image $IMAGE_REPO:$v"
		VERSION="$v" IMAGE_REPO="$IMAGE_REPO" hack/image.sh "$tar.tmp" && mv "$tar.tmp" "$tar"
	fi
	tars+=("$tar")
done
log "images ready ($((SECONDS - t0))s)"

cleanup() {
	local rc=$?
	set +e
	# Seen once: pods.sh got INT/TERM while the teardown restarted the broker, and
	# `exit 130` replaced the suite's result. The teardown must finish and keep it.
	trap '' INT TERM
	if [[ -z "${IMKUBE_PODS_KEEP:-}" ]]; then
		log "tearing down: node down, broker back to 127.0.0.1"
		# Prometheus + KEDA of the autoscaling step (8), if it left them.
		[[ -z "$(ls "$CACHE/metrics/pids" 2>/dev/null)" ]] || hack/metrics.sh down
		hack/node.sh down
		IMKUBE_DEPS_BROKER_IP=127.0.0.1 hack/deps.sh up rocketmq
	fi
	log "done in $((SECONDS - t0))s, rc=$rc"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t1=$SECONDS
hack/node.sh up
log "node up ($((SECONDS - t1))s)"
t1=$SECONDS
IMKUBE_DEPS_BROKER_IP=$HOST_IP hack/deps.sh up
log "deps up, broker advertises $HOST_IP ($((SECONDS - t1))s)"
hack/node.sh import-image "${tars[@]}"

eval "$(hack/node.sh env)"
helm_env="$CACHE/env/helm.env"
[[ -f "$helm_env" ]] && source "$helm_env"
[[ -n "${IMKUBE_HELM:-}" ]] || { [[ -x "$CACHE/bin/helm" ]] && IMKUBE_HELM="$CACHE/bin/helm"; } || IMKUBE_HELM="$(command -v helm || true)"
[[ -n "$IMKUBE_HELM" ]] || { log "no helm: run make helm"; exit 1; }
export KUBECONFIG IMKUBE_HELM
export IMKUBE_NODE_SH="$ROOT/hack/node.sh" IMKUBE_PODS_IMAGE="$IMAGE_REPO:$VERSION" IMKUBE_PODS_NEXT_TAG="$NEXT"
export IMKUBE_PODS_ARTIFACTS="${IMKUBE_PODS_ARTIFACTS:-$CACHE/pods/artifacts}"
rm -rf "$IMKUBE_PODS_ARTIFACTS"
log "running the suite (artifacts: $IMKUBE_PODS_ARTIFACTS)"
"$GO" test -tags pods -count=1 -timeout "${PODS_TIMEOUT:-20m}" -run "${PODS_RUN:-.}" -v ./test/e2e/pods/
