#!/usr/bin/env bash
# hack/image.sh builds the imkube OCI image WITHOUT a Docker engine: the same
# static binary, entrypoint, user and platform as the Dockerfile, written as a
# `docker save`-style tarball (loadable by `docker load`, `kind load
# image-archive`, `ctr images import`).
#
#   hack/image.sh [OUT]         build into OUT (default bin/imkube-image.tar)
#   hack/image.sh crane         install the pinned crane, print its path
#   hack/image.sh version       print the version it tags (VERSION, else the VERSION file)
#
# Env: VERSION (image tag and binary version, default: the VERSION file, which
# is also the chart's appVersion, so the chart pulls what this builds), IMAGE_REPO
# (default ghcr.io/imkube/imkube), GOARCH (default amd64), BINARY (use this
# already built linux binary instead of building ./cmd/imkube).
#
# How: `crane append` puts the binary layer on an empty base, which leaves the
# config's os/architecture empty (containerd then drops the image silently), so
# the image is pushed to a throwaway `crane registry serve` on 127.0.0.1 and
# `crane mutate --set-platform` writes the final tarball.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CRANE_VERSION="v0.22.1"
CACHE="${IMKUBE_CACHE:-$HOME/.cache/imkube}"
BIN_DIR="$CACHE/bin"
CRANE="$BIN_DIR/crane"
GO="${GO:-go}"
VERSION="${VERSION:-$(cat "$ROOT/VERSION")}"
IMAGE_REPO="${IMAGE_REPO:-ghcr.io/imkube/imkube}"
ARCH="${GOARCH:-amd64}"

log() { echo "image.sh: $*" >&2; }

install_crane() {
	if [[ "$("$CRANE" version 2>/dev/null || true)" == "$CRANE_VERSION" ]]; then
		return 0
	fi
	log "installing crane $CRANE_VERSION from the Go module proxy into $BIN_DIR"
	mkdir -p "$BIN_DIR"
	GOBIN="$BIN_DIR" GOFLAGS=-buildvcs=false CGO_ENABLED=0 "$GO" install \
		"github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
}

if [[ "${1:-}" == "version" ]]; then
	echo "$VERSION"
	exit 0
fi
if [[ "${1:-}" == "crane" ]]; then
	install_crane
	echo "$CRANE"
	exit 0
fi

OUT="${1:-$ROOT/bin/imkube-image.tar}"
install_crane

work="$(mktemp -d)"
reg_pid=""
cleanup() {
	if [[ -n "$reg_pid" ]]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

# The root filesystem: the binary, a passwd/group naming uid 65532 (as
# distroless nonroot does), /tmp, and the CA bundle for TLS to dependencies.
root="$work/root"
mkdir -p "$root/etc/ssl/certs" "$root/tmp"
chmod 1777 "$root/tmp"
if [[ -n "${BINARY:-}" ]]; then
	install -m 0755 "$BINARY" "$root/imkube"
else
	log "building linux/$ARCH binary (version $VERSION)"
	(cd "$ROOT" && CGO_ENABLED=0 GOOS=linux GOARCH="$ARCH" GOFLAGS=-buildvcs=false "$GO" build -trimpath \
		-ldflags "-s -w -X github.com/imkube/imkube/internal/buildinfo.Version=$VERSION" \
		-o "$root/imkube" ./cmd/imkube)
fi
chmod 0755 "$root/imkube"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
	cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
# A reproducible layer: fixed owner and mtime, sorted entries, no "./" prefix.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf "$work/layer.tar" etc imkube tmp

"$CRANE" registry serve --address 127.0.0.1:0 >"$work/registry.log" 2>&1 &
reg_pid=$!
port=""
for _ in $(seq 1 100); do
	port="$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$work/registry.log" | head -1)"
	[[ -n "$port" ]] && break
	kill -0 "$reg_pid" 2>/dev/null || { cat "$work/registry.log" >&2; log "crane registry exited"; exit 1; }
	sleep 0.1
done
[[ -n "$port" ]] || { cat "$work/registry.log" >&2; log "crane registry did not start"; exit 1; }

tmp_ref="127.0.0.1:$port/imkube:build"
"$CRANE" append --insecure --oci-empty-base -f "$work/layer.tar" -t "$tmp_ref" >/dev/null 2>"$work/append.log" ||
	{ cat "$work/append.log" >&2; log "crane append failed"; exit 1; }
mkdir -p "$(dirname "$OUT")"
"$CRANE" mutate --insecure "$tmp_ref" \
	--set-platform "linux/$ARCH" \
	--entrypoint /imkube \
	--user 65532:65532 \
	--workdir / \
	--exposed-ports 8080/tcp \
	-l org.opencontainers.image.title=imkube \
	-l org.opencontainers.image.source=https://github.com/imkube/imkube \
	-l "org.opencontainers.image.version=$VERSION" \
	-t "$IMAGE_REPO:$VERSION" -o "$OUT" >/dev/null
log "wrote $OUT ($IMAGE_REPO:$VERSION, linux/$ARCH)"
# What to run next: load the tarball into the cluster's runtime, then install
# the chart with exactly this image (the tag is the chart's appVersion unless
# VERSION was overridden; --set makes it explicit either way).
cat >&2 <<EOF
image.sh: load it (docker load -i / kind load image-archive / ctr -n k8s.io images import) and install:
  helm install imkube charts/imkube --namespace imkube-system --create-namespace --set image.repository=$IMAGE_REPO --set image.tag=$VERSION
EOF
