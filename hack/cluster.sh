#!/usr/bin/env bash
# hack/cluster.sh runs a node-less local Kubernetes control plane for the
# end-to-end suite (test/e2e/k8s): etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok (fake node "kwok-node-0": pods scheduled to it become
# Running/Ready without containers). Everything binds 127.0.0.1; nothing needs
# Docker, root or dl.k8s.io.
#
#   hack/cluster.sh up          build (once, cached) and start what is not running; print the kubeconfig path
#   hack/cluster.sh down        stop exactly the processes `up` started (pid files)
#   hack/cluster.sh kubeconfig  print the kubeconfig path
#   hack/cluster.sh env         print `export KUBECONFIG=...` (for $ENV_DIR/*.env)
#   hack/cluster.sh status      show each component and the fake node
#   hack/cluster.sh clean       down, then delete the state (certs, etcd data, logs)
#   hack/cluster.sh kind-up [IMAGE_TAR]   create the kind cluster "imkube-e2e" (Docker needed),
#                               load IMAGE_TAR (`make image`), print its kubeconfig path
#   hack/cluster.sh kind-down   delete the kind cluster
#
# Binaries: kube-* and etcd from hack/kube.sh ($IMKUBE_CACHE/kube/<version>/bin),
# kwok v0.8.0 via `go install` into $IMKUBE_CACHE/tools/kwok-v0.8.0. State
# (certs, tokens, etcd data, logs, pids, kubeconfig) lives in $IMKUBE_CACHE/cluster;
# the cluster's objects survive down/up, `clean` starts from scratch.
#
# Ports (chosen not to clash with hack/deps.sh, envtest's random ports or a
# real cluster's defaults): etcd 12379/12380, kube-apiserver 16443,
# controller-manager 17257, scheduler 17259, kwok 17247.
# IMKUBE_CLUSTER_PORT_OFFSET=N adds N to all of them (a second control plane
# next to the first one, with its own IMKUBE_CACHE).
#
# IMKUBE_CLUSTER_NODE=1 (set by hack/node.sh, the real node): the API server also
# gets a kubelet client certificate (O=system:masters) and prefers the nodes'
# InternalIP, so `kubectl logs/exec/port-forward` reach a real kubelet, and the
# aggregation layer's front-proxy flags (KEDA's metrics server, hack/metrics.sh). A running
# API server started without those flags is restarted once with them; without the
# variable nothing changes (the kwok path ignores the extra flags either way).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${IMKUBE_CACHE:-$HOME/.cache/imkube}"
STATE="$CACHE/cluster"
PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
KUBECONFIG_FILE="$STATE/kubeconfig"
GO="${GO:-go}"
KWOK_VERSION="v0.8.0"
KWOK_DIR="$CACHE/tools/kwok-$KWOK_VERSION"
KWOK="$KWOK_DIR/kwok"
NODE_NAME="kwok-node-0"
KIND_VERSION="v0.33.0"
KIND_DIR="$CACHE/tools/kind-$KIND_VERSION"
KIND="$KIND_DIR/kind"
KIND_CLUSTER="imkube-e2e"
KIND_KUBECONFIG="$STATE/kind.kubeconfig"

PORT_OFFSET="${IMKUBE_CLUSTER_PORT_OFFSET:-0}"
[[ "$PORT_OFFSET" =~ ^[0-9]+$ ]] || { echo "cluster.sh: IMKUBE_CLUSTER_PORT_OFFSET must be a number" >&2; exit 2; }
ETCD_PORT=$((12379 + PORT_OFFSET))
ETCD_PEER_PORT=$((12380 + PORT_OFFSET))
APISERVER_PORT=$((16443 + PORT_OFFSET))
KCM_PORT=$((17257 + PORT_OFFSET))
SCHED_PORT=$((17259 + PORT_OFFSET))
KWOK_PORT=$((17247 + PORT_OFFSET))
NODE_VARIANT="${IMKUBE_CLUSTER_NODE:-0}"
SERVICE_CIDR="10.96.0.0/16"
# Components in start order (down stops them in reverse).
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { echo "cluster.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# wait_for DESC SECONDS CMD...: run CMD every second until it succeeds.
wait_for() {
	local desc="$1" secs="$2"
	shift 2
	local i
	for ((i = 0; i < secs; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 1
	done
	return 1
}

kubectl_() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# ---- binaries ---------------------------------------------------------------

build_kwok() {
	[[ -x "$KWOK" ]] && return 0
	mkdir -p "$KWOK_DIR"
	exec 8>"$KWOK_DIR/.lock"
	flock 8
	if [[ ! -x "$KWOK" ]]; then
		log "installing kwok $KWOK_VERSION from the Go module proxy (~2 min cold)"
		local start=$SECONDS
		(cd "$KWOK_DIR" && GOBIN="$KWOK_DIR" GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
			"$GO" install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
		log "installed kwok in $((SECONDS - start))s"
	fi
	exec 8>&-
}

# kwok's stages ship in its module (kustomize/stage); kwok exits with "no stages
# found" without them. Same set as kustomize/stage/fast: node initialise,
# heartbeat with a Lease, pod ready / complete / delete. The heartbeat stage
# touches the node status only every ~10 minutes and relies on the node Lease,
# which kwok renews only with --node-lease-duration-seconds (its default of 40
# applies to a KwokConfiguration file, not to a stages-only --config): without
# it the node lifecycle controller marks the node NotReady every ~50 s and
# flips every pod to not ready.
write_stages() {
	local mod
	mod="$(cd "$KWOK_DIR" && GOWORK=off GOFLAGS=-mod=mod "$GO" mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	[[ -d "$mod/kustomize/stage" ]] || die "kwok module source not found (got '$mod')"
	local f out="$STATE/kwok-stages.yaml"
	: >"$out.tmp"
	for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
		pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
		{ echo "---"; cat "$mod/kustomize/stage/$f"; } >>"$out.tmp"
	done
	mv -f "$out.tmp" "$out"
}

# ---- certificates and credentials ------------------------------------------

write_pki() {
	mkdir -p "$PKI"
	[[ -f "$PKI/done" ]] && return 0
	log "writing CA, serving certificate, service-account keys and admin token"
	(
		cd "$PKI"
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
			-subj "/CN=imkube-e2e-ca" 2>/dev/null
		cat >server.ext <<-EOF
			basicConstraints=CA:FALSE
			keyUsage=digitalSignature,keyEncipherment
			extendedKeyUsage=serverAuth,clientAuth
			subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
		EOF
		openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=kube-apiserver" 2>/dev/null
		openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
			-days 3650 -extfile server.ext 2>/dev/null
		openssl genrsa -out sa.key 2048 2>/dev/null
		openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
		# token,user,uid,"group1,group2"
		echo "$(openssl rand -hex 24),admin,admin,\"system:masters\"" >tokens.csv
		chmod 600 ./*.key tokens.csv
		touch done
	)
}

# The API server's client certificate for kubelets (logs, exec, port-forward):
# O=system:masters, so a kubelet with Webhook authorization allows it. Only
# written for the real-node variant (IMKUBE_CLUSTER_NODE=1); idempotent.
write_kubelet_client_pki() {
	[[ -f "$PKI/kubelet-client.crt" ]] && return 0
	log "writing the API server's kubelet client certificate"
	(
		cd "$PKI"
		printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >kubelet-client.ext
		openssl req -newkey rsa:2048 -nodes -keyout kubelet-client.key -out kubelet-client.csr \
			-subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
		openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
			-out kubelet-client.crt.tmp -days 3650 -extfile kubelet-client.ext 2>/dev/null
		chmod 600 kubelet-client.key
		mv -f kubelet-client.crt.tmp kubelet-client.crt
	)
}

# The API server's front-proxy client certificate (CN front-proxy-client): how it
# authenticates to aggregated API servers (KEDA's external metrics server of
# hack/metrics.sh), which trust the identity headers it sets. Real-node variant
# only; idempotent.
write_front_proxy_pki() {
	[[ -f "$PKI/front-proxy-client.crt" ]] && return 0
	log "writing the API server's front-proxy client certificate"
	(
		cd "$PKI"
		printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >front-proxy-client.ext
		openssl req -newkey rsa:2048 -nodes -keyout front-proxy-client.key -out front-proxy-client.csr \
			-subj "/CN=front-proxy-client" 2>/dev/null
		openssl x509 -req -in front-proxy-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
			-out front-proxy-client.crt.tmp -days 3650 -extfile front-proxy-client.ext 2>/dev/null
		chmod 600 front-proxy-client.key
		mv -f front-proxy-client.crt.tmp front-proxy-client.crt
	)
}

# apiserver_node_args: the extra kube-apiserver flags of the real-node variant: the
# kubelet client, and the aggregation layer (front proxy; requests to an aggregated
# API go straight to its endpoints, which are host processes or pods of the node).
apiserver_node_args() {
	[[ "$NODE_VARIANT" == 1 ]] || return 0
	printf '%s\n' --kubelet-client-certificate "$PKI/kubelet-client.crt" \
		--kubelet-client-key "$PKI/kubelet-client.key" \
		--kubelet-certificate-authority "$PKI/ca.crt" \
		--kubelet-preferred-address-types InternalIP,Hostname \
		--requestheader-client-ca-file "$PKI/ca.crt" \
		--requestheader-allowed-names front-proxy-client \
		--requestheader-username-headers X-Remote-User \
		--requestheader-group-headers X-Remote-Group \
		--requestheader-extra-headers-prefix X-Remote-Extra- \
		--proxy-client-cert-file "$PKI/front-proxy-client.crt" \
		--proxy-client-key-file "$PKI/front-proxy-client.key" \
		--enable-aggregator-routing=true
}

write_kubeconfig() {
	local token
	token="$(cut -d, -f1 "$PKI/tokens.csv")"
	umask 077
	cat >"$KUBECONFIG_FILE.tmp" <<-EOF
		apiVersion: v1
		kind: Config
		clusters:
		- name: imkube-e2e
		  cluster:
		    server: https://127.0.0.1:$APISERVER_PORT
		    certificate-authority: $PKI/ca.crt
		users:
		- name: admin
		  user:
		    token: $token
		contexts:
		- name: imkube-e2e
		  context:
		    cluster: imkube-e2e
		    user: admin
		    namespace: default
		current-context: imkube-e2e
	EOF
	mv -f "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

# ---- processes ----------------------------------------------------------------

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }

# running NAME: the pid file names a live process running NAME's binary.
running() {
	local pid
	pid="$(pid_of "$1")"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "/$1 "
}

# start NAME BINARY ARGS...: start detached (own session), log to $LOGS/NAME.log.
start() {
	local name="$1" bin="$2"
	shift 2
	if running "$name"; then return 0; fi
	log "starting $name"
	# Close the lock descriptors: a daemon holding the `up` lock would block the next `up`.
	setsid "$bin" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 7>&- 8>&- 9>&- &
	echo $! >"$PIDS/$name.pid"
}

stop() {
	local name="$1" pid i
	pid="$(pid_of "$name")"
	if running "$name"; then
		log "stopping $name (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "$name did not stop in 10 s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$PIDS/$name.pid"
}

healthy() {
	case "$1" in
	etcd) curl -fsS "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"' ;;
	kube-apiserver) curl -fsS --cacert "$PKI/ca.crt" "https://127.0.0.1:$APISERVER_PORT/readyz" | grep -q ok ;;
	kube-controller-manager) curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz" | grep -q ok ;;
	kube-scheduler) curl -fsSk "https://127.0.0.1:$SCHED_PORT/healthz" | grep -q ok ;;
	kwok) curl -fsS "http://127.0.0.1:$KWOK_PORT/healthz" | grep -q ok ;;
	esac
}

wait_healthy() {
	local name="$1" secs="${2:-60}"
	if ! wait_for "$name" "$secs" healthy "$name"; then
		log "$name is not healthy after ${secs}s; last log lines:"
		tail -n 30 "$LOGS/$name.log" >&2 || true
		exit 1
	fi
}

start_all() {
	local bin tool
	for tool in kubectl openssl curl flock setsid; do
		command -v "$tool" >/dev/null || die "$tool is required (kubectl: the machine's, any version within skew of 1.37)"
	done
	bin="$("$ROOT/hack/kube.sh" build etcd kube-apiserver kube-controller-manager kube-scheduler)"
	build_kwok
	mkdir -p "$STATE" "$LOGS" "$PIDS" "$STATE/etcd"
	write_pki
	write_kubeconfig
	write_stages
	local node_args=()
	if [[ "$NODE_VARIANT" == 1 ]]; then
		write_kubelet_client_pki
		write_front_proxy_pki
		mapfile -t node_args < <(apiserver_node_args)
		# An API server started without the kubelet client or front-proxy flags
		# cannot reach a real kubelet or an aggregated API: restart it once with
		# them (clients reconnect).
		if running kube-apiserver && ! tr '\0' ' ' <"/proc/$(pid_of kube-apiserver)/cmdline" | grep -q -- --proxy-client-cert-file; then
			log "restarting kube-apiserver with the kubelet client and front-proxy flags (IMKUBE_CLUSTER_NODE=1)"
			stop kube-apiserver
		fi
	fi

	start etcd "$bin/etcd" --name default --data-dir "$STATE/etcd" --unsafe-no-fsync \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" --log-level warn
	wait_healthy etcd 30

	start kube-apiserver "$bin/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" --advertise-address 127.0.0.1 \
		--endpoint-reconciler-type none \
		--tls-cert-file "$PKI/server.crt" --tls-private-key-file "$PKI/server.key" \
		--client-ca-file "$PKI/ca.crt" \
		--token-auth-file "$PKI/tokens.csv" \
		--authorization-mode Node,RBAC \
		--service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--allow-privileged=true \
		${node_args[@]+"${node_args[@]}"}
	wait_healthy kube-apiserver 120

	start kube-controller-manager "$bin/kube-controller-manager" \
		--kubeconfig "$KUBECONFIG_FILE" \
		--authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
		--bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
		--leader-elect=false \
		--service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
		--cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--use-service-account-credentials=false \
		--controllers '*'
	start kube-scheduler "$bin/kube-scheduler" \
		--kubeconfig "$KUBECONFIG_FILE" \
		--authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
		--bind-address 127.0.0.1 --secure-port "$SCHED_PORT" \
		--leader-elect=false
	start kwok "$KWOK" \
		--kubeconfig "$KUBECONFIG_FILE" \
		--config "$STATE/kwok-stages.yaml" \
		--manage-all-nodes=false \
		--manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
		--node-lease-duration-seconds 40 \
		--server-address "127.0.0.1:$KWOK_PORT" \
		--node-ip 127.0.0.1 --cidr 10.244.0.0/16
	wait_healthy kube-controller-manager 120
	wait_healthy kube-scheduler 60
	wait_healthy kwok 60

	apply_node
	if ! wait_for node 60 kubectl_ wait --for=condition=Ready "node/$NODE_NAME" --timeout 1s; then
		kubectl_ get node "$NODE_NAME" -o yaml >&2 || true
		die "node $NODE_NAME is not Ready after 60s (see $LOGS/kwok.log)"
	fi
	wait_for "node Lease" 60 kubectl_ -n kube-node-lease get lease "$NODE_NAME" ||
		die "kwok does not renew the Lease of $NODE_NAME (see $LOGS/kwok.log)"
	# The serviceaccount controller creates "default" in every namespace; pods
	# need it (ServiceAccount admission), so wait for it as the controller-manager's readiness.
	wait_for "default ServiceAccount" 60 kubectl_ -n default get serviceaccount default ||
		die "the controller-manager did not create the default ServiceAccount in 60s"
}

# A fake node managed by kwok (annotation kwok.x-k8s.io/node=fake), with room
# for a few hundred pods.
apply_node() {
	kubectl_ apply -f - >/dev/null <<-EOF
		apiVersion: v1
		kind: Node
		metadata:
		  name: $NODE_NAME
		  annotations:
		    kwok.x-k8s.io/node: fake
		    node.alpha.kubernetes.io/ttl: "0"
		  labels:
		    kubernetes.io/hostname: $NODE_NAME
		    kubernetes.io/os: linux
		    kubernetes.io/arch: amd64
		    kubernetes.io/role: agent
		    node-role.kubernetes.io/agent: ""
		    type: kwok
		spec: {}
		status:
		  allocatable: {cpu: "32", memory: 256Gi, ephemeral-storage: 1Ti, pods: "500"}
		  capacity: {cpu: "32", memory: 256Gi, ephemeral-storage: 1Ti, pods: "500"}
		  nodeInfo: {architecture: amd64, kubeletVersion: fake, operatingSystem: linux}
	EOF
	# apply sets the status only when it creates the node: a node of an older
	# run (without ephemeral-storage, which pods now request) gets it here.
	kubectl_ patch node "$NODE_NAME" --subresource=status --type merge -p \
		'{"status":{"allocatable":{"cpu":"32","memory":"256Gi","ephemeral-storage":"1Ti","pods":"500"},"capacity":{"cpu":"32","memory":"256Gi","ephemeral-storage":"1Ti","pods":"500"}}}' >/dev/null
}

# ---- kind (for users with Docker; not run in CI here) ----------------------------

build_kind() {
	[[ -x "$KIND" ]] && return 0
	mkdir -p "$KIND_DIR"
	log "installing kind $KIND_VERSION from the Go module proxy"
	GOBIN="$KIND_DIR" GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
		"$GO" install -trimpath "sigs.k8s.io/kind@$KIND_VERSION"
}

kind_up() {
	local tar="${1:-}"
	build_kind
	mkdir -p "$STATE"
	if ! "$KIND" get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
		"$KIND" create cluster --name "$KIND_CLUSTER" --kubeconfig "$KIND_KUBECONFIG" --wait 3m >&2
	else
		"$KIND" export kubeconfig --name "$KIND_CLUSTER" --kubeconfig "$KIND_KUBECONFIG" >&2
	fi
	if [[ -n "$tar" ]]; then
		[[ -f "$tar" ]] || die "image archive $tar not found (run make image)"
		"$KIND" load image-archive "$tar" --name "$KIND_CLUSTER" >&2
	fi
	echo "$KIND_KUBECONFIG"
}

status() {
	local c rc=0
	for c in "${COMPONENTS[@]}"; do
		if running "$c" && healthy "$c"; then
			echo "$c: running (pid $(pid_of "$c"))"
		elif running "$c"; then
			echo "$c: running (pid $(pid_of "$c")), not healthy"
			rc=1
		else
			echo "$c: stopped"
			rc=1
		fi
	done
	if [[ $rc == 0 ]]; then
		kubectl_ get nodes 2>/dev/null || rc=1
	fi
	echo "kubeconfig: $KUBECONFIG_FILE"
	return $rc
}

cmd="${1:-}"
case "$cmd" in
up)
	mkdir -p "$CACHE"
	exec 7>"$CACHE/.cluster.lock"
	flock 7
	start_all
	log "cluster up: KUBECONFIG=$KUBECONFIG_FILE"
	echo "$KUBECONFIG_FILE"
	;;
down)
	for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop "${COMPONENTS[$i]}"; done
	;;
clean)
	for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop "${COMPONENTS[$i]}"; done
	rm -rf "$STATE"
	;;
kind-up) kind_up "${2:-}" ;;
kind-down)
	build_kind
	"$KIND" delete cluster --name "$KIND_CLUSTER" >&2
	rm -f "$KIND_KUBECONFIG"
	;;
kubeconfig) echo "$KUBECONFIG_FILE" ;;
env) echo "export KUBECONFIG=$KUBECONFIG_FILE" ;;
status) status ;;
*)
	sed -n '2,16s/^# \{0,1\}//p' "$0" >&2
	exit 2
	;;
esac
