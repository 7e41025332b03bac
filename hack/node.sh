#!/usr/bin/env bash
# hack/node.sh gives the local control plane of hack/cluster.sh a REAL node
# "imkube-node-0" that runs real pods: containerd + runc + CNI bridge (Debian
# packages), kubelet and kube-proxy (iptables mode) built from k8s.io/kubernetes,
# CoreDNS for cluster.local, all as host processes. Needs root (mounts, iptables,
# a bridge); no Docker, no registry, no internet beyond Debian apt and the Go
# module proxy.
#
#   hack/node.sh up                    install/build (once, cached), start the control plane
#                                      (IMKUBE_CLUSTER_NODE=1 hack/cluster.sh up) and the node
#   hack/node.sh down                  stop everything `up` started, remove pods' containers,
#                                      mounts, iptables rules and the bridge; images are kept
#   hack/node.sh status                each component, the node, the pods on it
#   hack/node.sh env                   `export` lines (KUBECONFIG, host address, broker IP)
#   hack/node.sh import-image TAR...   import image tarballs (`make image`) into the node
#   hack/node.sh expose-deps NAMESPACE [PREFIX]   Services + EndpointSlices PREFIX{redis,mysql,
#                                      rocketmq-namesrv,rocketmq-broker} (default PREFIX imkube-)
#                                      pointing at the host dependencies of hack/deps.sh
#   hack/node.sh check [IMAGE_TAR]     smoke test: a Job, a Deployment + Service, DNS from a pod
#   hack/node.sh clean                 down, delete the node's images/state and its API objects
#   hack/node.sh build                 only install the packages and build the binaries/images
#   hack/node.sh build-go              only build kubelet, kube-proxy and the policy controller
#
# Network: the bridge imkube0 holds the host address 10.245.0.1/24 ($HOST_IP), pods
# get 10.245.0.0/24 (host-local IPAM). The host address is how pods reach the host:
# kubelet (:17250), CoreDNS (:53, behind the ClusterIP Service kube-system/kube-dns
# 10.96.0.10) and TCP forwarders (socat, HOST_IP:PORT -> 127.0.0.1:PORT) for the
# API server (default/kubernetes Service) and, after expose-deps, the dependencies.
# Pods cannot reach anything beyond the host (mangle FORWARD drops it), and only
# pods and the host reach the host address (mangle INPUT). The kwok
# fake node is cordoned while the real node is up (and uncordoned by down).
#
# NetworkPolicy is enforced by kube-router v2.1.0's network policy controller as a
# host process (hack/kube-wrapper/netpol: iptables chains and ipsets per pod and
# policy; bridged pod traffic reaches them through br_netfilter; traffic from the
# node itself, e.g. kubelet probes, is allowed).
#
# Binaries: kubelet, kube-proxy via hack/kube.sh (wrapper hack/kube-wrapper/node),
# CoreDNS v1.15.0 (hack/kube-wrapper/coredns), netpol (hack/kube-wrapper/netpol), crictl v1.37.0 and the pause/probe
# images (hack/node/images) under $IMKUBE_CACHE; containerd's images and the
# kubelet's data under $IMKUBE_NODE_ROOT (default /var/lib/imkube-node); config,
# certificates, logs, pids under $IMKUBE_CACHE/node.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${IMKUBE_CACHE:-$HOME/.cache/imkube}"
GO="${GO:-go}"
CLUSTER_PKI="$CACHE/cluster/pki"
STATE="$CACHE/node"
PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
NODE_ROOT="${IMKUBE_NODE_ROOT:-/var/lib/imkube-node}"
RUN_DIR="/run/imkube-node"
SOCK="$RUN_DIR/containerd.sock"

NODE_NAME="imkube-node-0"
BRIDGE="imkube0"
POD_SUBNET="10.245.0.0/24"
HOST_IP="10.245.0.1"
SERVICE_CIDR="10.96.0.0/16"
DNS_SERVICE_IP="10.96.0.10"
CLUSTER_DOMAIN="cluster.local"
KUBELET_PORT=17250
KUBELET_HEALTHZ_PORT=17248
PROXY_HEALTHZ_PORT=17256
PROXY_METRICS_PORT=17249
COREDNS_HEALTH_PORT=17280
COREDNS_READY_PORT=17281
NETPOL_METRICS_PORT=17290

COREDNS_VERSION="v1.15.0"
CRICTL_VERSION="v1.37.0"
PAUSE_IMAGE="localhost/imkube/pause:1.0"
PROBE_IMAGE="localhost/imkube/probe:1.0"
APT_PACKAGES=(containerd runc containernetworking-plugins iptables ipset socat conntrack)
CNI_BIN_DIR="/usr/lib/cni"
# Sysctls the node (kubelet, CNI bridge plugin) may change: recorded by the first
# `up`, restored by `down`.
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables vm.overcommit_memory vm.panic_on_oom
	kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes
	net.ipv4.conf.all.route_localnet)
# Host processes in start order (down stops them in reverse; forwarders fwd-* separately).
COMPONENTS=(containerd kube-proxy netpol coredns kubelet)

log() { echo "node.sh: $(date +%T) $*" >&2; }
die() { log "error: $*"; exit 1; }

# wait_for SECONDS CMD...: run CMD every second until it succeeds.
wait_for() {
	local secs="$1" i
	shift
	for ((i = 0; i < secs; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 1
	done
	return 1
}

cluster_kubeconfig() { "$ROOT/hack/cluster.sh" kubeconfig; }
kubectl_() { kubectl --kubeconfig "$(cluster_kubeconfig)" "$@"; }
# The API server URL and port, from the control plane's kubeconfig.
api_server() { sed -n 's/^ *server: *//p' "$(cluster_kubeconfig)" | head -1; }
api_port() { api_server | sed -n 's#.*:\([0-9]*\)/*$#\1#p'; }
ctr_() { ctr --address "$SOCK" --namespace k8s.io "$@"; }
crictl_() { "$CRICTL" --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --timeout 30s "$@"; }

# ---- install and build ------------------------------------------------------------

install_packages() {
	local missing=() p
	for p in "${APT_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	log "installing ${missing[*]} (Debian packages)"
	local start=$SECONDS policy_added=0 rc=0
	mkdir -p "$STATE"
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		# Keep the packages' system services (a system containerd) from starting.
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		policy_added=1
	fi
	{
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q &&
			DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
				--no-install-recommends "${missing[@]}"
	} >"$STATE/apt.log" 2>&1 || rc=$?
	((policy_added == 0)) || rm -f /usr/sbin/policy-rc.d
	((rc == 0)) || { tail -20 "$STATE/apt.log" >&2; die "apt-get install failed (log: $STATE/apt.log)"; }
	log "installed ${missing[*]} in $((SECONDS - start))s"
}

# locked_build DIR NAME KEY CMD...: run CMD (which writes DIR/NAME) unless DIR/.NAME.key
# holds KEY; one builder at a time per binary.
locked_build() {
	local dir="$1" name="$2" key="$3"
	shift 3
	if [[ -f "$dir/$name" && "$(cat "$dir/.$name.key" 2>/dev/null)" == "$key" ]]; then return 0; fi
	mkdir -p "$dir"
	exec 8>"$dir/.$name.lock"
	flock 8
	if ! [[ -f "$dir/$name" && "$(cat "$dir/.$name.key" 2>/dev/null)" == "$key" ]]; then
		log "building $name into $dir (cold: minutes)"
		local start=$SECONDS
		"$@"
		echo "$key" >"$dir/.$name.key"
		log "built $name in $((SECONDS - start))s"
	fi
	exec 8>&-
}

COREDNS_DIR="$CACHE/tools/coredns-$COREDNS_VERSION"
COREDNS="$COREDNS_DIR/coredns"
CRICTL_DIR="$CACHE/tools/crictl-$CRICTL_VERSION"
CRICTL="$CRICTL_DIR/crictl"
NETPOL_SRC="$ROOT/hack/kube-wrapper/netpol"
netpol_key() { cat "$NETPOL_SRC/"{go.mod,go.sum,main.go} | sha256sum | cut -c1-16; }
NETPOL_DIR="$CACHE/tools/netpol"
NETPOL="$NETPOL_DIR/netpol"

build_coredns_cmd() {
	(cd "$ROOT/hack/kube-wrapper/coredns" && GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 "$GO" build -trimpath \
		-ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
		-o "$COREDNS_DIR/.coredns.tmp" .)
	mv -f "$COREDNS_DIR/.coredns.tmp" "$COREDNS"
}

build_netpol_cmd() {
	(cd "$NETPOL_SRC" && GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w" \
		-o "$NETPOL_DIR/.netpol.tmp" .)
	mv -f "$NETPOL_DIR/.netpol.tmp" "$NETPOL"
}

build_crictl_cmd() {
	(cd "$CRICTL_DIR" && GOBIN="$CRICTL_DIR" GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 "$GO" install -trimpath \
		-ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
		"sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION")
}

IMAGES_SRC="$ROOT/hack/node/images"
images_key() { cat "$IMAGES_SRC/go.mod" "$IMAGES_SRC"/*/*.go | sha256sum | cut -c1-16; }
images_dir() { echo "$CACHE/node-images/$(images_key)"; }

# crane_image ROOTFS REF ENTRYPOINT OUT: a one-layer image with the platform set
# (crane append leaves it empty and containerd then drops the image: see
# hack/image.sh), written as a docker-save tarball.
crane_image() {
	local rootfs="$1" ref="$2" entrypoint="$3" out="$4" crane work reg_pid port="" i
	crane="$("$ROOT/hack/image.sh" crane)"
	work="$(mktemp -d)"
	# shellcheck disable=SC2046 # the rootfs holds one binary
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$work/layer.tar" $(ls -A "$rootfs")
	# The log exists before the registry starts (no race with the first read); the
	# registry must not inherit the build lock (fd 8).
	: >"$work/registry.log"
	"$crane" registry serve --address 127.0.0.1:0 >"$work/registry.log" 2>&1 8>&- &
	reg_pid=$!
	for ((i = 0; i < 100; i++)); do
		port="$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$work/registry.log" | head -1)"
		[[ -n "$port" ]] && break
		sleep 0.1
	done
	if [[ -z "$port" ]]; then
		kill "$reg_pid" 2>/dev/null || true
		cat "$work/registry.log" >&2
		die "crane registry did not start"
	fi
	local rc=0
	{
		"$crane" append --insecure --oci-empty-base -f "$work/layer.tar" -t "127.0.0.1:$port/img:build" >/dev/null &&
			"$crane" mutate --insecure "127.0.0.1:$port/img:build" --set-platform linux/amd64 \
				--entrypoint "$entrypoint" -t "$ref" -o "$out.tmp" >/dev/null &&
			mv -f "$out.tmp" "$out"
	} 2>"$work/crane.log" || rc=$?
	kill "$reg_pid" 2>/dev/null || true
	wait "$reg_pid" 2>/dev/null || true
	((rc == 0)) || { cat "$work/crane.log" >&2; rm -rf "$work"; die "building image $ref failed"; }
	rm -rf "$work"
}

build_images_cmd() {
	local dir w name
	dir="$(images_dir)"
	w="$(mktemp -d)"
	for name in pause probe; do
		mkdir -p "$w/$name/rootfs"
		(cd "$IMAGES_SRC" && GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOOS=linux GOARCH=amd64 \
			"$GO" build -trimpath -ldflags "-s -w" -o "$w/$name/rootfs/$name" "./$name")
	done
	crane_image "$w/pause/rootfs" "$PAUSE_IMAGE" /pause "$dir/pause.tar"
	crane_image "$w/probe/rootfs" "$PROBE_IMAGE" /probe "$dir/probe.tar"
	rm -rf "$w"
	touch "$dir/images"
}

KUBE_BIN=""
build_all() {
	local key
	KUBE_BIN="$("$ROOT/hack/kube.sh" build kubelet kube-proxy)"
	key="$(cat "$ROOT/hack/kube-wrapper/coredns/"{go.mod,go.sum,main.go} | sha256sum | cut -c1-16)"
	locked_build "$COREDNS_DIR" coredns "$key" build_coredns_cmd
	locked_build "$CRICTL_DIR" crictl "$CRICTL_VERSION" build_crictl_cmd
	locked_build "$NETPOL_DIR" netpol "$(netpol_key)" build_netpol_cmd
	locked_build "$(images_dir)" images "$(images_key)" build_images_cmd
}

# ---- certificates and kubeconfigs ------------------------------------------------------

# sign NAME SUBJECT EXTENSIONS: a key and a certificate signed by the control plane's CA.
sign() {
	local name="$1" subj="$2" ext="$3"
	printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n%s\n' "$ext" >"$PKI/$name.ext"
	openssl req -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subj" 2>/dev/null
	openssl x509 -req -in "$PKI/$name.csr" -CA "$CLUSTER_PKI/ca.crt" -CAkey "$CLUSTER_PKI/ca.key" \
		-set_serial "0x$(openssl rand -hex 12)" -days 3650 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
	chmod 600 "$PKI/$name.key"
}

write_pki() {
	local ca_sum
	[[ -f "$CLUSTER_PKI/ca.key" ]] || die "no CA in $CLUSTER_PKI (hack/cluster.sh up first)"
	ca_sum="$(sha256sum <"$CLUSTER_PKI/ca.crt" | cut -c1-16)"
	if [[ "$(cat "$PKI/ca.sum" 2>/dev/null)" == "$ca_sum" && -f "$PKI/netpol.crt" ]]; then return 0; fi
	log "writing the node's certificates (kubelet client + serving, kube-proxy, CoreDNS)"
	rm -rf "$PKI"
	mkdir -p "$PKI"
	sign kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" "extendedKeyUsage=clientAuth"
	sign kubelet-serving "/O=system:nodes/CN=system:node:$NODE_NAME" \
		"extendedKeyUsage=serverAuth
subjectAltName=IP:$HOST_IP,DNS:$NODE_NAME"
	sign kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
	sign coredns "/CN=imkube:coredns" "extendedKeyUsage=clientAuth"
	sign netpol "/CN=imkube:netpol" "extendedKeyUsage=clientAuth"
	echo "$ca_sum" >"$PKI/ca.sum"
	CHANGED+="kubelet kube-proxy coredns netpol "
}

# write_kubeconfig NAME: $STATE/NAME.kubeconfig with the client certificate NAME.
write_kubeconfig() {
	local name="$1" server
	server="$(api_server)"
	cat >"$STATE/$name.kubeconfig.tmp" <<-EOF
		apiVersion: v1
		kind: Config
		clusters:
		- name: local
		  cluster:
		    server: $server
		    certificate-authority: $CLUSTER_PKI/ca.crt
		users:
		- name: $name
		  user:
		    client-certificate: $PKI/$name.crt
		    client-key: $PKI/$name.key
		contexts:
		- name: local
		  context: {cluster: local, user: $name}
		current-context: local
	EOF
	chmod 600 "$STATE/$name.kubeconfig.tmp"
	if cmp -s "$STATE/$name.kubeconfig.tmp" "$STATE/$name.kubeconfig"; then
		rm -f "$STATE/$name.kubeconfig.tmp"
	else
		mv -f "$STATE/$name.kubeconfig.tmp" "$STATE/$name.kubeconfig"
		CHANGED+="${name%-client} "
	fi
}

# ---- configuration files -------------------------------------------------------------

# put FILE COMPONENT: write stdin to FILE only if it differs (kube-proxy exits when
# its config file is touched) and remember COMPONENT as needing a restart.
CHANGED=" "
put() {
	local f="$1"
	cat >"$f.tmp"
	if cmp -s "$f.tmp" "$f"; then
		rm -f "$f.tmp"
	else
		mv -f "$f.tmp" "$f"
		CHANGED+="$2 "
	fi
}

write_configs() {
	mkdir -p "$STATE/cni" "$NODE_ROOT"
	put "$STATE/containerd.toml" containerd <<-EOF
		# Written by hack/node.sh; containerd 1.6 (Debian), CRI for the kubelet only.
		version = 2
		root = "$NODE_ROOT/containerd"
		state = "$RUN_DIR/containerd"
		disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
		  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
		[grpc]
		  address = "$SOCK"
		[ttrpc]
		  address = "$RUN_DIR/containerd.sock.ttrpc"
		[plugins."io.containerd.internal.v1.opt"]
		  path = "$NODE_ROOT/opt"
		[plugins."io.containerd.grpc.v1.cri"]
		  sandbox_image = "$PAUSE_IMAGE"
		  # The VM lacks CAP_SYS_RESOURCE: without this every sandbox fails with
		  # "can't get final child's PID from pipe".
		  restrict_oom_score_adj = true
		  enable_selinux = false
		  [plugins."io.containerd.grpc.v1.cri".containerd]
		    snapshotter = "overlayfs"
		    default_runtime_name = "runc"
		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		      runtime_type = "io.containerd.runc.v2"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		        SystemdCgroup = false
		  [plugins."io.containerd.grpc.v1.cri".cni]
		    bin_dir = "$CNI_BIN_DIR"
		    conf_dir = "$STATE/cni"
		    max_conf_num = 1
	EOF
	# Bridge + host-local IPAM; no ipMasq: pods talk only to the host and each other.
	put "$STATE/cni/10-imkube.conflist" cni <<-EOF
		{
		  "cniVersion": "1.0.0",
		  "name": "imkube",
		  "plugins": [
		    {
		      "type": "bridge",
		      "bridge": "$BRIDGE",
		      "isGateway": true,
		      "ipMasq": false,
		      "hairpinMode": true,
		      "ipam": {
		        "type": "host-local",
		        "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$HOST_IP"}]],
		        "routes": [{"dst": "0.0.0.0/0"}],
		        "dataDir": "$NODE_ROOT/cni/networks"
		      }
		    }
		  ]
		}
	EOF
	put "$STATE/kubelet.yaml" kubelet <<-EOF
		apiVersion: kubelet.config.k8s.io/v1beta1
		kind: KubeletConfiguration
		# cgroup v1 host without systemd (see ../shared notes): both are required.
		failCgroupV1: false
		cgroupDriver: cgroupfs
		containerRuntimeEndpoint: unix://$SOCK
		address: $HOST_IP
		port: $KUBELET_PORT
		readOnlyPort: 0
		healthzBindAddress: 127.0.0.1
		healthzPort: $KUBELET_HEALTHZ_PORT
		tlsCertFile: $PKI/kubelet-serving.crt
		tlsPrivateKeyFile: $PKI/kubelet-serving.key
		authentication:
		  anonymous: {enabled: false}
		  webhook: {enabled: true}
		  x509: {clientCAFile: $CLUSTER_PKI/ca.crt}
		authorization: {mode: Webhook}
		clusterDomain: $CLUSTER_DOMAIN
		clusterDNS: [$DNS_SERVICE_IP]
		# Pods never inherit the host's resolvers (they are not reachable from pods).
		resolvConf: ""
		podLogsDir: $NODE_ROOT/pod-logs
		staticPodPath: ""
		failSwapOn: false
		maxPods: 110
		serializeImagePulls: false
		# Images are imported, never pulled: do not garbage-collect them, do not evict on disk.
		imageGCHighThresholdPercent: 100
		imageGCLowThresholdPercent: 99
		evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
		rotateCertificates: false
		serverTLSBootstrap: false
		nodeStatusReportFrequency: 1m
	EOF
	put "$STATE/kube-proxy.yaml" kube-proxy <<-EOF
		apiVersion: kubeproxy.config.k8s.io/v1alpha1
		kind: KubeProxyConfiguration
		clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
		hostnameOverride: $NODE_NAME
		bindAddress: $HOST_IP
		mode: iptables
		clusterCIDR: $POD_SUBNET
		detectLocalMode: ClusterCIDR
		healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
		metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
		nodePortAddresses: ["$HOST_IP/32"]
		iptables: {localhostNodePorts: false, masqueradeAll: false, syncPeriod: 30s, minSyncPeriod: 1s}
		# 0: leave the host's conntrack settings alone.
		conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
	EOF
	put "$STATE/Corefile" coredns <<-EOF
		$CLUSTER_DOMAIN:53 in-addr.arpa:53 ip6.arpa:53 {
		    bind $HOST_IP
		    errors
		    health 127.0.0.1:$COREDNS_HEALTH_PORT
		    ready 127.0.0.1:$COREDNS_READY_PORT
		    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
		        kubeconfig $STATE/coredns.kubeconfig local
		        pods insecure
		        fallthrough in-addr.arpa ip6.arpa
		        ttl 5
		    }
		    cache 5
		    loadbalance
		}
	EOF
}

# ---- host network ----------------------------------------------------------------------------

record_sysctls() {
	[[ -f "$STATE/sysctl.orig" ]] && return 0
	local s v
	: >"$STATE/sysctl.orig.tmp"
	for s in "${SYSCTLS[@]}"; do
		v="$(sysctl -n "$s" 2>/dev/null)" || continue
		echo "$s=$v" >>"$STATE/sysctl.orig.tmp"
	done
	mv -f "$STATE/sysctl.orig.tmp" "$STATE/sysctl.orig"
}

restore_sysctls() {
	[[ -f "$STATE/sysctl.orig" ]] || return 0
	local line
	while IFS= read -r line; do
		[[ -n "$line" ]] && sysctl -q -w "$line" >/dev/null 2>&1 || true
	done <"$STATE/sysctl.orig"
	rm -f "$STATE/sysctl.orig"
}

# iptables_ensure TABLE CHAIN RULE...: append RULE unless it exists.
iptables_ensure() {
	local t="$1" c="$2"
	shift 2
	iptables -w 30 -t "$t" -C "$c" "$@" 2>/dev/null || iptables -w 30 -t "$t" -A "$c" "$@"
}

network_up() {
	record_sysctls
	if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
		log "creating bridge $BRIDGE ($HOST_IP/24)"
		ip link add "$BRIDGE" type bridge
	fi
	ip addr show dev "$BRIDGE" | grep -q "inet $HOST_IP/" || ip addr add "$HOST_IP/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up
	# Service addresses without endpoints stay on the bridge (never the default route).
	ip route replace "$SERVICE_CIDR" dev "$BRIDGE" src "$HOST_IP"
	sysctl -q -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 >/dev/null
	# Pods reach the host and each other only: forwarding into or out of the bridge
	# from any other interface is dropped (mangle: kube-proxy does not reorder it).
	iptables -w 30 -t mangle -N IMKUBE-NODE 2>/dev/null || true
	iptables_ensure mangle IMKUBE-NODE -i "$BRIDGE" -o "$BRIDGE" -j RETURN
	iptables_ensure mangle IMKUBE-NODE -i "$BRIDGE" -j DROP
	iptables_ensure mangle IMKUBE-NODE -o "$BRIDGE" -j DROP
	iptables -w 30 -t mangle -C FORWARD -j IMKUBE-NODE 2>/dev/null || iptables -w 30 -t mangle -I FORWARD 1 -j IMKUBE-NODE
	# The host address (kubelet, CoreDNS, the forwarders to Redis, MySQL, ...) answers
	# pods and the host itself only, not other machines that might route to it.
	iptables -w 30 -t mangle -N IMKUBE-NODE-IN 2>/dev/null || true
	iptables_ensure mangle IMKUBE-NODE-IN -i "$BRIDGE" -j RETURN
	iptables_ensure mangle IMKUBE-NODE-IN -i lo -j RETURN
	iptables_ensure mangle IMKUBE-NODE-IN -d "$POD_SUBNET" -j DROP
	iptables -w 30 -t mangle -C INPUT -j IMKUBE-NODE-IN 2>/dev/null || iptables -w 30 -t mangle -I INPUT 1 -j IMKUBE-NODE-IN
}

network_down() {
	if iptables -w 30 -t mangle -C FORWARD -j IMKUBE-NODE 2>/dev/null; then
		iptables -w 30 -t mangle -D FORWARD -j IMKUBE-NODE
	fi
	if iptables -w 30 -t mangle -C INPUT -j IMKUBE-NODE-IN 2>/dev/null; then
		iptables -w 30 -t mangle -D INPUT -j IMKUBE-NODE-IN
	fi
	local ch
	for ch in IMKUBE-NODE IMKUBE-NODE-IN; do
		iptables -w 30 -t mangle -F "$ch" 2>/dev/null || true
		iptables -w 30 -t mangle -X "$ch" 2>/dev/null || true
	done
	# The kubelet's chains (KUBE-FIREWALL with jumps from INPUT/OUTPUT, canaries) and
	# kube-proxy's canary (kube-proxy --cleanup removes the rest of its rules).
	local ipt t c rule
	for ipt in iptables ip6tables; do
		for t in mangle nat filter; do
			for c in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT KUBE-PROXY-CANARY; do
				{ "$ipt" -w 30 -t "$t" -S 2>/dev/null || true; } | { grep -- "-j $c\$" || true; } | while IFS= read -r rule; do
					# shellcheck disable=SC2086 # a rule as iptables -S prints it
					"$ipt" -w 30 -t "$t" ${rule/-A /-D } 2>/dev/null || true
				done
				"$ipt" -w 30 -t "$t" -F "$c" 2>/dev/null && "$ipt" -w 30 -t "$t" -X "$c" 2>/dev/null || true
			done
		done
	done
	if ip link show "$BRIDGE" >/dev/null 2>&1; then
		log "deleting bridge $BRIDGE"
		ip link del "$BRIDGE"
	fi
	restore_sysctls
}

# ---- processes -------------------------------------------------------------------------------

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }

# running NAME PATTERN: the pid file names a live process whose command line contains PATTERN.
running() {
	local pid pat="${2:-/$1 }"
	pid="$(pid_of "$1")"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pat"
}

# start NAME BINARY ARGS...: start detached (own session), log to $LOGS/NAME.log.
start() {
	local name="$1" bin="$2"
	shift 2
	if running "$name" "$bin "; then return 0; fi
	log "starting $name"
	setsid "$bin" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 7>&- 8>&- 9>&- &
	echo $! >"$PIDS/$name.pid"
}

# stop NAME [PATTERN]: TERM the process group, KILL after SECS (default 15).
stop() {
	local name="$1" pat="${2:-/$1 }" secs="${3:-15}" pid i
	pid="$(pid_of "$name")"
	if [[ -n "$pid" ]] && running "$name" "$pat"; then
		log "stopping $name (pid $pid)"
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < secs * 10; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "$name did not stop in ${secs}s; killing it"
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$PIDS/$name.pid"
}

healthy() {
	case "$1" in
	containerd) ctr_ version ;;
	kubelet) curl -fsS "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" | grep -q ok ;;
	kube-proxy) curl -fsS "http://127.0.0.1:$PROXY_HEALTHZ_PORT/livez" ;;
	coredns) curl -fsS "http://127.0.0.1:$COREDNS_READY_PORT/ready" | grep -q OK ;;
	# Its table exists once the informers synced and the rules are written.
	netpol) curl -fsS "http://127.0.0.1:$NETPOL_METRICS_PORT/healthz" | grep -q ok && "$NETPOL" --check ;;
	esac
}

wait_healthy() {
	local name="$1" secs="$2"
	if ! wait_for "$secs" healthy "$name"; then
		log "$name is not healthy after ${secs}s; last log lines:"
		tail -n 30 "$LOGS/$name.log" >&2 || true
		exit 1
	fi
}

# forward PORT: a TCP forwarder HOST_IP:PORT -> 127.0.0.1:PORT (socat), so pods and
# selector-less Services reach a host process that listens on loopback only. The
# target sees connections from 127.0.0.1 (MariaDB grants stay as they are).
forward() {
	local port="$1" name="fwd-$1"
	if running "$name" "TCP4-LISTEN:$port,bind=$HOST_IP,reuseaddr,fork,backlog=1024,nodelay"; then return 0; fi
	if running "$name" "TCP4-LISTEN:$port,"; then # an older forwarder without nodelay
		kill "$(pid_of "$name")" 2>/dev/null || true
		sleep 0.5
	fi
	log "forwarding $HOST_IP:$port -> 127.0.0.1:$port"
	# nodelay on both sides: without it socat's sockets use Nagle's algorithm, and a
	# client's split writes wait for the delayed ACK: 15 ms per round trip instead of
	# 0.3 ms (measured with Redis PINGs), ~150 ms per chat message through MySQL.
	setsid socat "TCP4-LISTEN:$port,bind=$HOST_IP,reuseaddr,fork,backlog=1024,nodelay" "TCP4:127.0.0.1:$port,nodelay" \
		</dev/null >>"$LOGS/$name.log" 2>&1 7>&- 8>&- 9>&- &
	echo $! >"$PIDS/$name.pid"
	local i
	for ((i = 0; i < 100; i++)); do
		(exec 3<>"/dev/tcp/$HOST_IP/$port") 2>/dev/null && return 0
		sleep 0.1
	done
	die "forwarder on $HOST_IP:$port does not accept (log: $LOGS/$name.log)"
}

stop_forwarders() {
	local f name pid i
	for f in "$PIDS"/fwd-*.pid; do
		[[ -e "$f" ]] || continue
		name="$(basename "$f" .pid)"
		if running "$name" "TCP4-LISTEN:${name#fwd-},"; then
			pid="$(pid_of "$name")"
			log "stopping the forwarder $HOST_IP:${name#fwd-} (pid $pid)"
			kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		fi
	done
	for f in "$PIDS"/fwd-*.pid; do
		[[ -e "$f" ]] || continue
		pid="$(cat "$f")"
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL -- "-$pid" 2>/dev/null || true
		rm -f "$f"
	done
}

# ---- API objects ---------------------------------------------------------------------------------

# apply_endpoints NAMESPACE SERVICE "PORTNAME:PORT:PROTOCOL ..." : a selector-less
# EndpointSlice of SERVICE with the host address as its only endpoint.
endpoint_slice() {
	local ns="$1" svc="$2" ports="$3" p name port proto
	cat <<-EOF
		---
		apiVersion: discovery.k8s.io/v1
		kind: EndpointSlice
		metadata:
		  name: $svc-host
		  namespace: $ns
		  labels:
		    kubernetes.io/service-name: $svc
		    endpointslice.kubernetes.io/managed-by: imkube-node
		addressType: IPv4
		endpoints:
		- addresses: ["$HOST_IP"]
		  conditions: {ready: true}
		ports:
	EOF
	for p in $ports; do
		IFS=: read -r name port proto <<<"$p"
		echo "- {name: $name, port: $port, protocol: $proto}"
	done
}

apply_cluster_objects() {
	local port
	port="$(api_port)"
	{
		cat <<-EOF
			apiVersion: rbac.authorization.k8s.io/v1
			kind: ClusterRole
			metadata: {name: "imkube-node:coredns"}
			rules:
			- apiGroups: [""]
			  resources: [endpoints, services, pods, namespaces]
			  verbs: [list, watch]
			- apiGroups: [discovery.k8s.io]
			  resources: [endpointslices]
			  verbs: [list, watch]
			---
			apiVersion: rbac.authorization.k8s.io/v1
			kind: ClusterRoleBinding
			metadata: {name: "imkube-node:coredns"}
			roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "imkube-node:coredns"}
			subjects:
			- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "imkube:coredns"}
			---
			apiVersion: rbac.authorization.k8s.io/v1
			kind: ClusterRole
			metadata: {name: "imkube-node:netpol"}
			rules:
			- apiGroups: [""]
			  resources: [pods, namespaces, nodes]
			  verbs: [get, list, watch]
			- apiGroups: [networking.k8s.io]
			  resources: [networkpolicies]
			  verbs: [list, watch]
			---
			apiVersion: rbac.authorization.k8s.io/v1
			kind: ClusterRoleBinding
			metadata: {name: "imkube-node:netpol"}
			roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "imkube-node:netpol"}
			subjects:
			- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "imkube:netpol"}
			---
			apiVersion: v1
			kind: Service
			metadata:
			  name: kube-dns
			  namespace: kube-system
			  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
			spec:
			  clusterIP: $DNS_SERVICE_IP
			  ports:
			  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
			  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
		EOF
		endpoint_slice kube-system kube-dns "dns:53:UDP dns-tcp:53:TCP"
		# The API server binds 127.0.0.1 and runs with --endpoint-reconciler-type none:
		# in-cluster clients reach it through the forwarder on the host address.
		endpoint_slice default kubernetes "https:$port:TCP"
	} | kubectl_ apply -f - >/dev/null
}

# cordon_kwok: the kwok fake nodes stay unschedulable while the real node is up.
cordon_kwok() {
	local n
	for n in $(kubectl_ get nodes -l type=kwok -o go-template='{{range .items}}{{if not .spec.unschedulable}}{{.metadata.name}} {{end}}{{end}}'); do
		log "cordoning the fake node $n (pods must run on $NODE_NAME)"
		kubectl_ cordon "$n" >/dev/null
		echo "$n" >>"$STATE/cordoned"
	done
}

uncordon_kwok() {
	[[ -f "$STATE/cordoned" ]] || return 0
	local n
	for n in $(sort -u "$STATE/cordoned"); do
		kubectl_ uncordon "$n" >/dev/null 2>&1 && log "uncordoned the fake node $n" || true
	done
	rm -f "$STATE/cordoned"
}

api_up() { kubectl_ get --raw /readyz >/dev/null 2>&1; }

# ---- up / down ---------------------------------------------------------------------------------

images_present() {
	local have
	have="$(ctr_ images ls -q 2>/dev/null)"
	grep -qxF "$PAUSE_IMAGE" <<<"$have" && grep -qxF "$PROBE_IMAGE" <<<"$have"
}

up() {
	local t0=$SECONDS tool
	[[ "$(id -u)" == 0 ]] || die "needs root (mounts, iptables, a bridge)"
	for tool in kubectl openssl curl flock setsid ip sysctl; do
		command -v "$tool" >/dev/null || die "$tool is required"
	done
	install_packages
	build_all
	IMKUBE_CLUSTER_NODE=1 "$ROOT/hack/cluster.sh" up >/dev/null
	mkdir -p "$STATE" "$LOGS" "$PIDS" "$NODE_ROOT" "$RUN_DIR"
	write_pki
	write_kubeconfig kubelet-client
	write_kubeconfig kube-proxy
	write_kubeconfig coredns
	write_kubeconfig netpol
	write_configs
	network_up
	# A running component whose configuration changed starts again with the new one.
	local c
	for c in kubelet coredns netpol kube-proxy containerd; do
		if [[ "$CHANGED" == *" $c "* ]]; then
			stop "$c" "$([[ $c == containerd ]] && echo /containerd || echo "/$c ")"
		fi
	done

	start containerd "$(command -v containerd)" --config "$STATE/containerd.toml"
	wait_healthy containerd 30
	# Imported again when hack/node/images changed (same tags, new content).
	if ! images_present || [[ "$(cat "$NODE_ROOT/images.key" 2>/dev/null)" != "$(images_key)" ]]; then
		log "importing the pause and probe images"
		ctr_ images import "$(images_dir)/pause.tar" >/dev/null
		ctr_ images import "$(images_dir)/probe.tar" >/dev/null
		images_present || die "images $PAUSE_IMAGE/$PROBE_IMAGE missing after import"
		images_key >"$NODE_ROOT/images.key"
	fi

	apply_cluster_objects
	# The API server (default/kubernetes) and the dependencies of hack/deps.sh (running
	# or not: the forwarders connect per connection) on the host address.
	local p
	for p in "$(api_port)" $(deps_ports); do forward "$p"; done
	start kube-proxy "$KUBE_BIN/kube-proxy" --config "$STATE/kube-proxy.yaml" --v=1
	start coredns "$COREDNS" -conf "$STATE/Corefile"
	start kubelet "$KUBE_BIN/kubelet" --config "$STATE/kubelet.yaml" \
		--kubeconfig "$STATE/kubelet-client.kubeconfig" \
		--hostname-override "$NODE_NAME" --node-ip "$HOST_IP" \
		--root-dir "$NODE_ROOT/kubelet" --v=1
	wait_healthy kube-proxy 60
	wait_healthy coredns 60
	wait_healthy kubelet 60
	if ! wait_for 120 kubectl_ wait --for=condition=Ready "node/$NODE_NAME" --timeout 1s; then
		kubectl_ describe node "$NODE_NAME" >&2 || true
		tail -n 30 "$LOGS/kubelet.log" >&2 || true
		die "node $NODE_NAME is not Ready after 120s (logs: $LOGS)"
	fi
	# The policy controller reads its Node object: started once the node registered.
	start netpol "$NETPOL" --kubeconfig "$STATE/netpol.kubeconfig" --hostname-override "$NODE_NAME" \
		--service-cluster-ip-range "$SERVICE_CIDR" --metrics-bind-address "127.0.0.1:$NETPOL_METRICS_PORT" --v=1
	wait_healthy netpol 60
	kubectl_ uncordon "$NODE_NAME" >/dev/null
	cordon_kwok
	log "node $NODE_NAME Ready ($((SECONDS - t0))s); host address for pods: $HOST_IP"
}

# remove_pods: stop and remove every pod sandbox through the CRI (the CNI plugins
# release the addresses and delete the veths), then whatever containerd still has.
remove_pods() {
	healthy containerd >/dev/null 2>&1 || return 0
	local pods p
	pods="$( [[ -x "$CRICTL" ]] && crictl_ pods -q 2>/dev/null || true)"
	if [[ -n "$pods" ]]; then
		log "removing the pods' sandboxes and containers"
		for p in $pods; do
			crictl_ inspectp "$p" 2>/dev/null | sed -n 's#.*"path": "\(/[^"]*netns/[^"]*\)".*#\1#p' >>"$STATE/netns" || true
		done
		crictl_ rmp -a -f >/dev/null 2>&1 || true
	fi
	local id
	for id in $(ctr_ tasks ls -q 2>/dev/null); do
		ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
		ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true
	done
	for id in $(ctr_ containers ls -q 2>/dev/null); do
		ctr_ containers delete "$id" >/dev/null 2>&1 || true
	done
}

# unmount_under DIR...: lazily unmount every mount point under DIR (deepest first).
unmount_under() {
	local d m
	for d in "$@"; do
		while IFS= read -r m; do
			[[ -n "$m" ]] || continue
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
		done < <(awk -v d="$d" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)
	done
}

down() {
	if api_up; then
		kubectl_ cordon "$NODE_NAME" >/dev/null 2>&1 || true
		uncordon_kwok
	fi
	stop kubelet
	remove_pods
	stop coredns
	stop netpol
	if [[ -x "$NETPOL" && -f "$STATE/netpol.kubeconfig" ]] && api_up; then
		"$NETPOL" --cleanup --kubeconfig "$STATE/netpol.kubeconfig" --hostname-override "$NODE_NAME" \
			--service-cluster-ip-range "$SERVICE_CIDR" >>"$LOGS/netpol.log" 2>&1 || true
	fi
	stop kube-proxy
	if [[ -f "$STATE/kube-proxy.yaml" ]]; then
		local kbin
		kbin="$("$ROOT/hack/kube.sh" dir)"
		if [[ -x "$kbin/kube-proxy" ]]; then
			"$kbin/kube-proxy" --config "$STATE/kube-proxy.yaml" --cleanup >>"$LOGS/kube-proxy.log" 2>&1 || true
		fi
	fi
	stop_forwarders
	stop containerd /containerd 30
	# Shims of this containerd (normally gone with their tasks).
	local pid
	for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $SOCK" || true); do
		kill -KILL "$pid" 2>/dev/null || true
	done
	# Network namespaces of sandboxes that could not be removed through the CRI.
	local ns
	if [[ -f "$STATE/netns" ]]; then
		for ns in $(sort -u "$STATE/netns"); do
			[[ -e "$ns" ]] || continue
			log "removing the leftover network namespace $ns"
			umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
			rm -f "$ns"
		done
		rm -f "$STATE/netns"
	fi
	unmount_under "$RUN_DIR" "$NODE_ROOT/kubelet" "$NODE_ROOT/containerd"
	network_down
	# cgroups the kubelet created (cgroupfs driver), deepest first, only if empty.
	local c
	for c in /sys/fs/cgroup/*/kubepods; do
		[[ -d "$c" ]] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	# Pod log symlinks the kubelet keeps in /var/log/containers.
	if [[ -d /var/log/containers ]]; then
		find /var/log/containers -maxdepth 1 -type l -lname "$NODE_ROOT/*" -delete 2>/dev/null || true
		rmdir /var/log/containers 2>/dev/null || true
	fi
	rm -rf --one-file-system "$RUN_DIR" "$NODE_ROOT/kubelet" "$NODE_ROOT/pod-logs" "$NODE_ROOT/cni"
}

# ---- other commands -------------------------------------------------------------------------------

status() {
	local c rc=0
	for c in "${COMPONENTS[@]}"; do
		local pat="/$c "
		[[ "$c" == containerd ]] && pat="/containerd"
		if running "$c" "$pat" && healthy "$c" >/dev/null 2>&1; then
			echo "$c: running (pid $(pid_of "$c"))"
		elif running "$c" "$pat"; then
			echo "$c: running (pid $(pid_of "$c")), not healthy"
			rc=1
		else
			echo "$c: stopped"
			rc=1
		fi
	done
	local f
	for f in "$PIDS"/fwd-*.pid; do
		[[ -e "$f" ]] || continue
		f="$(basename "$f" .pid)"
		if running "$f" "TCP4-LISTEN:${f#fwd-},"; then echo "forwarder $HOST_IP:${f#fwd-}: running"; else echo "forwarder $HOST_IP:${f#fwd-}: stopped"; rc=1; fi
	done
	if ip link show "$BRIDGE" >/dev/null 2>&1; then echo "bridge $BRIDGE: $HOST_IP"; else echo "bridge $BRIDGE: absent"; rc=1; fi
	if api_up; then
		kubectl_ get node "$NODE_NAME" -o wide 2>/dev/null || rc=1
		kubectl_ get pods -A --field-selector "spec.nodeName=$NODE_NAME" -o wide 2>/dev/null || true
	else
		echo "API server: not reachable"
		rc=1
	fi
	return $rc
}

env_lines() {
	cat <<-EOF
		export KUBECONFIG=$(cluster_kubeconfig)
		export IMKUBE_NODE_NAME=$NODE_NAME
		export IMKUBE_NODE_HOST_IP=$HOST_IP
		export IMKUBE_NODE_CONTAINERD_ADDRESS=$SOCK
		# Start hack/deps.sh with this so the RocketMQ broker advertises an address pods reach.
		export IMKUBE_DEPS_BROKER_IP=$HOST_IP
	EOF
}

import_image() {
	(($#)) || die "import-image needs image tarballs (make image: bin/imkube-image.tar)"
	healthy containerd >/dev/null 2>&1 || die "containerd is not running (hack/node.sh up)"
	local tar
	for tar in "$@"; do
		[[ -f "$tar" ]] || die "$tar not found"
		log "importing $tar"
		ctr_ images import "$tar" | sed 's/^/  /' >&2
		tar -xOf "$tar" manifest.json 2>/dev/null | grep -o '"RepoTags":\[[^]]*\]' >&2 || true
	done
}

# deps_ports: "REDIS MYSQL NAMESRV BROKER", the host ports of hack/deps.sh (it
# honours IMKUBE_DEPS_INSTANCE and IMKUBE_DEPS_*_PORT).
deps_ports() {
	local env redis mysql namesrv broker
	env="$("$ROOT/hack/deps.sh" env)"
	redis="$(sed -n "s/^export IMKUBE_REDIS_ADDR='127.0.0.1:\([0-9]*\)'/\1/p" <<<"$env")"
	mysql="$(sed -n "s/^export IMKUBE_MYSQL_DSN='.*tcp(127.0.0.1:\([0-9]*\)).*/\1/p" <<<"$env")"
	namesrv="$(sed -n "s/^export IMKUBE_ROCKETMQ_NAMESRV='127.0.0.1:\([0-9]*\)'/\1/p" <<<"$env")"
	broker="$(sed -n "s/^export IMKUBE_ROCKETMQ_BROKER='127.0.0.1:\([0-9]*\)'/\1/p" <<<"$env")"
	[[ -n "$redis" && -n "$mysql" && -n "$namesrv" && -n "$broker" ]] || die "could not read the ports from hack/deps.sh env"
	echo "$redis $mysql $namesrv $broker"
}

expose_deps() {
	local ns="${1:-}" prefix="${2-imkube-}"
	[[ -n "$ns" ]] || die "expose-deps needs a namespace"
	ip link show "$BRIDGE" >/dev/null 2>&1 || die "the node is not up (hack/node.sh up)"
	local redis mysql namesrv broker p
	read -r redis mysql namesrv broker <<<"$(deps_ports)"
	for p in "$redis" "$mysql" "$namesrv" "$broker"; do forward "$p"; done
	kubectl_ get namespace "$ns" >/dev/null 2>&1 || kubectl_ create namespace "$ns" >/dev/null
	{
		local svc port target
		for svc in "redis:6379:$redis" "mysql:3306:$mysql" "rocketmq-namesrv:9876:$namesrv" "rocketmq-broker:10911:$broker"; do
			IFS=: read -r svc port target <<<"$svc"
			cat <<-EOF
				---
				apiVersion: v1
				kind: Service
				metadata:
				  name: $prefix$svc
				  namespace: $ns
				  labels: {app.kubernetes.io/managed-by: imkube-node}
				spec:
				  ports:
				  - {name: tcp, port: $port, targetPort: $target, protocol: TCP}
			EOF
			endpoint_slice "$ns" "$prefix$svc" "tcp:$target:TCP"
		done
	} | kubectl_ apply -f - >/dev/null
	log "namespace $ns: ${prefix}redis:6379 ${prefix}mysql:3306 ${prefix}rocketmq-namesrv:9876 ${prefix}rocketmq-broker:10911 -> $HOST_IP:{$redis,$mysql,$namesrv,$broker}"
	# Clients get the broker's address from the name server: it must be one pods reach.
	local conf="$CACHE/deps/rocketmq/conf/broker.conf" ip
	[[ -z "${IMKUBE_DEPS_INSTANCE:-}" ]] || conf="$CACHE/deps/instances/$IMKUBE_DEPS_INSTANCE/rocketmq/conf/broker.conf"
	ip="$(sed -n 's/^brokerIP1=//p' "$conf" 2>/dev/null)"
	if [[ "$ip" != "$HOST_IP" ]]; then
		log "warning: the RocketMQ broker advertises '${ip:-?}', not $HOST_IP: pods get that address from the" \
			"name server; start it with IMKUBE_DEPS_BROKER_IP=$HOST_IP hack/deps.sh up rocketmq"
	fi
}

# ---- check ---------------------------------------------------------------------------------------

CHECK_NS="imkube-node-check"

# check [IMAGE_TAR]: a smoke test of the node with the image of `make image`.
check() {
	local tar="${1:-$ROOT/bin/imkube-image.tar}" ref t0=$SECONDS i
	[[ -f "$tar" ]] || die "$tar not found (make image)"
	ref="$(tar -xOf "$tar" manifest.json | sed -n 's/.*"RepoTags":\["\([^"]*\)".*/\1/p')"
	[[ -n "$ref" ]] || die "no RepoTags in $tar"
	import_image "$tar"
	kubectl_ delete namespace "$CHECK_NS" --ignore-not-found --wait=true --timeout 120s >/dev/null
	kubectl_ create namespace "$CHECK_NS" >/dev/null
	wait_for 60 kubectl_ -n "$CHECK_NS" get serviceaccount default || die "no default ServiceAccount in $CHECK_NS"
	local k=(kubectl --kubeconfig "$(cluster_kubeconfig)" -n "$CHECK_NS")

	log "check 1/4: a Job running '$ref version' completes"
	"${k[@]}" apply -f - >/dev/null <<-EOF
		apiVersion: batch/v1
		kind: Job
		metadata: {name: version}
		spec:
		  backoffLimit: 0
		  template:
		    spec:
		      restartPolicy: Never
		      containers:
		      - {name: imkube, image: "$ref", imagePullPolicy: Never, args: [version]}
	EOF
	if ! "${k[@]}" wait --for=condition=Complete job/version --timeout 120s >/dev/null; then
		"${k[@]}" describe job,pod >&2 || true
		die "check 1: the Job did not complete"
	fi
	echo "check 1 ok: kubectl logs job/version: $("${k[@]}" logs job/version)"

	log "check 2/4: a Deployment (imkube dev) + Service becomes Ready (readiness probe /readyz)"
	"${k[@]}" apply -f - >/dev/null <<-EOF
		apiVersion: apps/v1
		kind: Deployment
		metadata: {name: dev}
		spec:
		  replicas: 1
		  selector: {matchLabels: {app: dev}}
		  template:
		    metadata: {labels: {app: dev}}
		    spec:
		      containers:
		      - name: imkube
		        image: "$ref"
		        imagePullPolicy: Never
		        args: [dev, --addr, "0.0.0.0:8080", --data, /tmp/x]
		        ports: [{name: http, containerPort: 8080}]
		        readinessProbe:
		          httpGet: {path: /readyz, port: http}
		          periodSeconds: 2
		        securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, runAsNonRoot: true}
		        volumeMounts: [{name: tmp, mountPath: /tmp}]
		      volumes: [{name: tmp, emptyDir: {}}]
		---
		apiVersion: v1
		kind: Service
		metadata: {name: dev}
		spec:
		  selector: {app: dev}
		  ports: [{name: http, port: 8080, targetPort: http}]
	EOF
	if ! "${k[@]}" rollout status deployment/dev --timeout 180s >/dev/null; then
		"${k[@]}" describe pod -l app=dev >&2 || true
		"${k[@]}" logs -l app=dev --tail 30 >&2 || true
		die "check 2: the Deployment did not become Ready"
	fi
	local cip
	cip="$("${k[@]}" get service dev -o jsonpath='{.spec.clusterIP}')"
	echo "check 2 ok: pod $("${k[@]}" get pod -l app=dev -o jsonpath='{.items[0].metadata.name} {.items[0].status.podIP}') Ready; Service dev $cip:8080"

	log "check 3/4: from the host, GET http://$cip:8080/readyz (ClusterIP through kube-proxy)"
	local body=""
	for ((i = 0; i < 30; i++)); do
		body="$(curl -fsS --max-time 5 "http://$cip:8080/readyz" 2>/dev/null)" && break
		sleep 1
	done
	[[ -n "$body" ]] || die "check 3: http://$cip:8080/readyz did not answer from the host"
	echo "check 3 ok: host -> $cip:8080/readyz: $body"

	log "check 4/4: a pod resolves the Service by name and gets /readyz; DNS of kubernetes.default, the API through its Service"
	local args=("dns:dev.$CHECK_NS.svc.$CLUSTER_DOMAIN" "http://dev:8080/readyz" "dns:kubernetes.default"
		"https://kubernetes.default/readyz")
	# With expose-deps done in this namespace: the host dependencies too.
	if [[ -n "${IMKUBE_NODE_CHECK_DEPS:-}" ]]; then
		expose_deps "$CHECK_NS"
		args+=("redis:imkube-redis:6379" "mysql:imkube-mysql:3306" "rocketmq:imkube-rocketmq-namesrv:9876" "tcp:imkube-rocketmq-broker:10911")
	fi
	local a yaml_args=""
	for a in "${args[@]}" "sleep:1h"; do yaml_args+="\"$a\", "; done
	"${k[@]}" apply -f - >/dev/null <<-EOF
		apiVersion: v1
		kind: Pod
		metadata: {name: probe}
		spec:
		  restartPolicy: Never
		  containers:
		  - {name: probe, image: "$PROBE_IMAGE", imagePullPolicy: Never, args: [${yaml_args%, }]}
	EOF
	for ((i = 0; i < 90; i++)); do
		"${k[@]}" logs probe 2>/dev/null | grep -q -e "^FAIL" -e "^ok ${args[-1]} " && break
		[[ "$("${k[@]}" get pod probe -o jsonpath='{.status.phase}' 2>/dev/null)" == Failed ]] && break
		sleep 1
	done
	"${k[@]}" logs probe | sed 's/^/  /'
	"${k[@]}" logs probe | grep -qF "ok ${args[-1]} " || die "check 4: the probe pod failed (above)"
	echo "check 4 ok"
	echo "kubectl exec probe -- /probe dns:dev: $("${k[@]}" exec probe -- /probe dns:dev)"
	"${k[@]}" delete pod probe --grace-period 1 --wait=false >/dev/null
	log "all checks passed in $((SECONDS - t0))s (namespace $CHECK_NS kept; kubectl delete namespace $CHECK_NS)"
}

clean() {
	down
	if api_up; then
		kubectl_ delete node "$NODE_NAME" --ignore-not-found >/dev/null 2>&1 || true
		kubectl_ -n kube-system delete service kube-dns --ignore-not-found >/dev/null 2>&1 || true
		kubectl_ -n kube-system delete endpointslice kube-dns-host --ignore-not-found >/dev/null 2>&1 || true
		kubectl_ -n default delete endpointslice kubernetes-host --ignore-not-found >/dev/null 2>&1 || true
		kubectl_ delete clusterrolebinding,clusterrole imkube-node:coredns imkube-node:netpol --ignore-not-found >/dev/null 2>&1 || true
	fi
	unmount_under "$NODE_ROOT"
	rm -rf --one-file-system "$NODE_ROOT" "$STATE"
}

cmd="${1:-}"
shift || true
case "$cmd" in
up | down | clean)
	[[ "$(id -u)" == 0 ]] || die "needs root"
	mkdir -p "$CACHE" "$STATE" "$LOGS" "$PIDS"
	exec 7>"$CACHE/.node.lock"
	flock -w 900 7 || die "another hack/node.sh up/down holds $CACHE/.node.lock"
	"$cmd"
	;;
status) status ;;
build)
	install_packages
	build_all
	echo "$KUBE_BIN $COREDNS $CRICTL $(images_dir)"
	;;
build-go)
	# The Go builds only (no apt): `make test` starts it in the background early
	# (hack/mk/pods.mk), so the real-pod suite finds them cached; a build still
	# running then is waited for (locked_build).
	KUBE_BIN="$("$ROOT/hack/kube.sh" build kubelet kube-proxy)"
	locked_build "$NETPOL_DIR" netpol "$(netpol_key)" build_netpol_cmd
	;;
env) env_lines ;;
import-image) import_image "$@" ;;
expose-deps) expose_deps "$@" ;;
check) check "$@" ;;
*)
	sed -n '2,22s/^# \{0,1\}//p' "$0" >&2
	exit 2
	;;
esac
