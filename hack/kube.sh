#!/usr/bin/env bash
# hack/kube.sh builds Kubernetes control-plane binaries from the Go module proxy
# (no dl.k8s.io, no Docker) and caches them under $IMKUBE_CACHE/kube/<version>/bin.
#
#   hack/kube.sh assets            build etcd + kube-apiserver (what envtest needs), print the dir
#   hack/kube.sh build NAME...     build any of: etcd kube-apiserver kube-controller-manager kube-scheduler
#                                  kubelet kube-proxy
#   hack/kube.sh dir               print the bin dir (no build)
#
# kube-* come from module k8s.io/kubernetes through hack/kube-wrapper/kubernetes
# (a wrapper module with one replace line per staging module), etcd from
# go.etcd.io/etcd/server/v3 through hack/kube-wrapper/etcd, kubelet and kube-proxy
# (hack/node.sh) through hack/kube-wrapper/node (own go.sum, own cache key). A binary is rebuilt
# only when its wrapper's go.sum changes, so a second run returns at once.
# A cold kube-apiserver build takes ~5 min on 2 cores.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KUBE_VERSION="v1.37.2"
ETCD_VERSION="v3.6.16"
CACHE="${IMKUBE_CACHE:-$HOME/.cache/imkube}"
BIN_DIR="$CACHE/kube/$KUBE_VERSION/bin"
GO="${GO:-go}"

log() { echo "kube.sh: $*" >&2; }

wrapper_for() {
	case "$1" in
	etcd) echo "$ROOT/hack/kube-wrapper/etcd" ;;
	kube-apiserver | kube-controller-manager | kube-scheduler) echo "$ROOT/hack/kube-wrapper/kubernetes" ;;
	kubelet | kube-proxy) echo "$ROOT/hack/kube-wrapper/node" ;;
	*) log "unknown binary $1 (want etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet or kube-proxy)"; return 1 ;;
	esac
}

# build_one NAME: build NAME into $BIN_DIR unless an up-to-date copy exists.
build_one() {
	local name="$1" wrapper key stamp pkg ldflags
	wrapper="$(wrapper_for "$name")"
	key="$(cat "$wrapper/go.mod" "$wrapper/go.sum" | sha256sum | cut -c1-16)"
	stamp="$BIN_DIR/.$name.key"
	if [[ -x "$BIN_DIR/$name" && "$(cat "$stamp" 2>/dev/null)" == "$key" ]]; then
		return 0
	fi
	mkdir -p "$BIN_DIR"
	# One builder per binary at a time (other agents/CI steps may ask concurrently).
	exec 9>"$BIN_DIR/.$name.lock"
	flock 9
	if [[ -x "$BIN_DIR/$name" && "$(cat "$stamp" 2>/dev/null)" == "$key" ]]; then
		exec 9>&-
		return 0
	fi
	if [[ "$name" == etcd ]]; then
		pkg="go.etcd.io/etcd/server/v3"
		ldflags="-s -w"
	else
		pkg="k8s.io/kubernetes/cmd/$name"
		local minor="${KUBE_VERSION#v1.}"
		minor="${minor%%.*}"
		ldflags="-s -w"
		ldflags+=" -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
		ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
		ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor"
		ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
		ldflags+=" -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
	fi
	log "building $name ($pkg) into $BIN_DIR (cold: minutes)"
	local start=$SECONDS
	(cd "$wrapper" && GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
		"$GO" build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/.$name.tmp" "$pkg")
	mv -f "$BIN_DIR/.$name.tmp" "$BIN_DIR/$name"
	echo "$key" >"$stamp"
	log "built $name in $((SECONDS - start))s"
	exec 9>&-
}

cmd="${1:-assets}"
shift || true
case "$cmd" in
assets)
	build_one etcd
	build_one kube-apiserver
	echo "$BIN_DIR"
	;;
build)
	[[ $# -gt 0 ]] || { log "build needs binary names"; exit 2; }
	for b in "$@"; do build_one "$b"; done
	echo "$BIN_DIR"
	;;
dir)
	echo "$BIN_DIR"
	;;
*)
	sed -n '2,9s/^# \{0,1\}//p' "$0" >&2
	exit 2
	;;
esac
