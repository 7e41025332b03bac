#!/usr/bin/env bash
# hack/metrics.sh runs the autoscaling metrics path of docs/operator.md
# ("Autoscaling") next to the real node of hack/node.sh, as host processes:
# Prometheus v0.316.0 (what kube-prometheus-stack runs) and KEDA v2.21.0 (its
# operator and its metrics API server, registered through an APIService), so the
# operator's ScaledObjects drive real HPAs of the local control plane.
#
#   hack/metrics.sh build    build (once, cached by version under $IMKUBE_CACHE/tools)
#                            Prometheus and KEDA's operator + adapter; print their paths
#   hack/metrics.sh up       (the node must be up) KEDA's CRDs, namespace keda, the
#                            APIService v1beta1.external.metrics.k8s.io -> the adapter on
#                            the host address, then Prometheus, keda-operator, keda-adapter
#   hack/metrics.sh down     stop them; delete ScaledObjects, KEDA's CRDs, namespace keda and
#                            the APIService (the shared control plane is as before `up`)
#   hack/metrics.sh status   each process and the APIService
#   hack/metrics.sh env      `export` lines: IMKUBE_PROMETHEUS_URL (the address for an
#                            IMCluster's spec.autoscaling.prometheusAddress)
#
# Prometheus discovers targets through the API server (kubernetes_sd, role endpoints)
# and keeps what the operator's ServiceMonitor and the chart's operator ServiceMonitor
# select: port `internal` of the imkube Services (labels namespace, service, pod and
# imcluster, relabelled as the ServiceMonitor does) and port `http-metrics` of the
# operator's Service (imkube_broker_consumer_lag). Pod IPs are reachable from the host
# (the node's bridge). It listens on the node's host address ($HOST_IP:$PROM_PORT), so
# KEDA (a host process here, a pod elsewhere) reaches it under one URL.
#
# KEDA's processes use the control plane's admin kubeconfig; their TLS (the adapter's
# serving certificate, the operator <-> adapter gRPC) is one certificate signed by the
# control plane's CA. The aggregation layer needs the API server's front-proxy flags,
# which hack/cluster.sh sets in its real-node variant (IMKUBE_CLUSTER_NODE=1).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${IMKUBE_CACHE:-$HOME/.cache/imkube}"
GO="${GO:-go}"
CLUSTER_PKI="$CACHE/cluster/pki"
STATE="$CACHE/metrics"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
HOST_IP="10.245.0.1" # hack/node.sh's host address
PROM_PORT=19090
KEDA_METRICS_PORT=17260 # keda-operator /metrics
KEDA_PROBE_PORT=17261
KEDA_GRPC_PORT=17266   # operator <-> adapter
ADAPTER_PORT=17263     # external.metrics.k8s.io (on $HOST_IP)
ADAPTER_HTTP_PORT=17264

PROMETHEUS_VERSION="v0.316.0"
KEDA_VERSION="v2.21.0"
PROM_DIR="$CACHE/tools/prometheus-$PROMETHEUS_VERSION"
PROMETHEUS="$PROM_DIR/prometheus"
KEDA_SRC="$ROOT/hack/kube-wrapper/keda"
KEDA_DIR="$CACHE/tools/keda-$KEDA_VERSION"

log() { echo "metrics.sh: $(date +%T) $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

kubeconfig() { "$ROOT/hack/cluster.sh" kubeconfig; }
kubectl_() { kubectl --kubeconfig "$(kubeconfig)" "$@"; }

# locked_build DIR NAME KEY CMD...: as in hack/node.sh (one builder per binary; a
# build under way elsewhere, e.g. the background prebuild, is waited for).
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

build_prometheus_cmd() {
	# The flags of hack/promtool.sh's build (-trimpath, CGO off), so the packages
	# promtool shares with the server come from the build cache.
	GOBIN="$PROM_DIR" GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
		"$GO" install -trimpath "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
}

# The scaler sources kept in the trimmed KEDA build (see build_keda_cmd).
KEDA_SCALERS_KEPT="scaler.go prometheus_scaler.go cpu_memory_scaler.go cron_scaler.go external_scaler.go kubernetes_workload_scaler.go"

keda_key() {
	{
		cat "$KEDA_SRC/go.mod" "$KEDA_SRC/go.sum" "$KEDA_SRC"/trim/*.txt
		echo "$KEDA_SCALERS_KEPT"
	} | sha256sum | cut -c1-16
}

# KEDA's operator and adapter from the wrapper module (KEDA's go.mod has a replace
# directive, so `go install ...@version` is refused), trimmed to the scalers
# imkube uses: KEDA's source (v2.21.0 from the module proxy) is copied to
# $KEDA_DIR/src, its scaler package keeps only $KEDA_SCALERS_KEPT, buildScaler
# is hack/kube-wrapper/keda/trim/build_scaler.go.txt, and a copy of the wrapper
# module replaces KEDA with that copy. Everything else (controllers, the
# ScaledObject -> HPA logic, the metrics API server, the Prometheus scaler) is
# KEDA's own code. The full build is about 3,700 packages and 18 CPU-minutes
# cold. The marker file "keda" holds both builds' key.
build_keda_cmd() {
	local mod src="$KEDA_DIR/src" wrap="$KEDA_DIR/wrapper"
	mod="$(keda_module_dir)"
	[[ -d "$mod/pkg/scalers" ]] || die "KEDA $KEDA_VERSION's module not found (go mod download)"
	rm -rf "$src" "$wrap"
	cp -r "$mod" "$src"
	chmod -R u+w "$src"
	local f
	for f in "$src"/pkg/scalers/*.go; do
		case " $KEDA_SCALERS_KEPT " in
		*" $(basename "$f") "*) ;;
		*) rm -f "$f" ;;
		esac
	done
	local builder="$src/pkg/scaling/scalers_builder.go"
	grep -q '^// buildScaler builds' "$builder" || die "KEDA's scalers_builder.go changed: update the trim in hack/metrics.sh"
	sed -i '/^\/\/ buildScaler builds/,$d' "$builder"
	cat "$KEDA_SRC/trim/build_scaler.go.txt" >>"$builder"
	cp "$KEDA_SRC/trim/scalers_shared.go.txt" "$src/pkg/scalers/imkube_trim_shared.go"
	mkdir -p "$wrap"
	cp "$KEDA_SRC/go.mod" "$KEDA_SRC/go.sum" "$wrap/"
	(cd "$wrap" && GOWORK=off "$GO" mod edit -replace "github.com/kedacore/keda/v2=$src" &&
		GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 "$GO" build -trimpath \
			-ldflags "-s -w -X github.com/kedacore/keda/v2/version.Version=${KEDA_VERSION#v}" \
			-o "$KEDA_DIR/" github.com/kedacore/keda/v2/cmd/operator github.com/kedacore/keda/v2/cmd/adapter)
	mv -f "$KEDA_DIR/operator" "$KEDA_DIR/keda-operator"
	mv -f "$KEDA_DIR/adapter" "$KEDA_DIR/keda-adapter"
	touch "$KEDA_DIR/keda"
}

build() {
	locked_build "$PROM_DIR" prometheus "$PROMETHEUS_VERSION" build_prometheus_cmd
	locked_build "$KEDA_DIR" keda "$(keda_key)" build_keda_cmd
}

# keda_module_dir: KEDA's module in the module cache (its config/crd).
keda_module_dir() {
	(cd "$KEDA_SRC" && GOWORK=off GOFLAGS=-mod=mod "$GO" mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" |
		sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
}

# ---- processes (as in hack/node.sh) ----------------------------------------------------

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }

running() {
	local pid pat="$2"
	pid="$(pid_of "$1")"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pat"
}

# start NAME BINARY ARGS...: detached (own session), log to $LOGS/NAME.log.
start() {
	local name="$1" bin="$2"
	shift 2
	if running "$name" "$bin "; then return 0; fi
	log "starting $name"
	setsid "$bin" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 7>&- 8>&- 9>&- &
	echo $! >"$PIDS/$name.pid"
}

stop() {
	local name="$1" pat="$2" pid i
	pid="$(pid_of "$name")"
	if [[ -n "$pid" ]] && running "$name" "$pat"; then
		log "stopping $name (pid $pid)"
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 150; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL -- "-$pid" 2>/dev/null || true
	fi
	rm -f "$PIDS/$name.pid"
}

wait_for() {
	local secs="$1" i
	shift
	for ((i = 0; i < secs; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 1
	done
	return 1
}

healthy() {
	case "$1" in
	prometheus) curl -fsS "http://$HOST_IP:$PROM_PORT/-/ready" ;;
	keda-operator) curl -fsS "http://127.0.0.1:$KEDA_PROBE_PORT/readyz" ;;
	keda-adapter) kubectl_ get --raw /apis/external.metrics.k8s.io/v1beta1 ;;
	esac
}

wait_healthy() {
	if ! wait_for "$2" healthy "$1"; then
		log "$1 is not healthy after ${2}s; last log lines:"
		tail -n 30 "$LOGS/$1.log" >&2 || true
		exit 1
	fi
}

# ---- configuration ---------------------------------------------------------------------

write_prometheus_config() {
	cat >"$STATE/prometheus.yml" <<-EOF
		global:
		  scrape_interval: 5s
		  scrape_timeout: 4s
		  evaluation_interval: 5s
		scrape_configs:
		  # What the IMCluster's ServiceMonitor selects: port internal of every imkube
		  # Service of the operator, labelled as kube-prometheus-stack labels it.
		  - job_name: imkube
		    kubernetes_sd_configs:
		      - role: endpoints
		        kubeconfig_file: $(kubeconfig)
		    relabel_configs:
		      - source_labels: [__meta_kubernetes_service_label_app_kubernetes_io_name, __meta_kubernetes_service_label_app_kubernetes_io_managed_by, __meta_kubernetes_endpoint_port_name]
		        regex: imkube;imkube-operator;internal
		        action: keep
		      - {source_labels: [__meta_kubernetes_namespace], target_label: namespace}
		      - {source_labels: [__meta_kubernetes_service_name], target_label: service}
		      - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}
		      - {source_labels: [__meta_kubernetes_service_label_app_kubernetes_io_instance], target_label: imcluster}
		  # What the chart's operator ServiceMonitor selects (imkube_broker_consumer_lag).
		  - job_name: imkube-operator
		    kubernetes_sd_configs:
		      - role: endpoints
		        kubeconfig_file: $(kubeconfig)
		    relabel_configs:
		      - source_labels: [__meta_kubernetes_service_label_app_kubernetes_io_component, __meta_kubernetes_endpoint_port_name]
		        regex: operator;http-metrics
		        action: keep
		      - {source_labels: [__meta_kubernetes_namespace], target_label: namespace}
		      - {source_labels: [__meta_kubernetes_service_name], target_label: service}
		      - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}
	EOF
}

# The adapter's serving certificate, also the operator <-> adapter gRPC's (mutual TLS
# with ca.crt), signed by the control plane's CA.
write_pki() {
	local pki="$STATE/certs" ca_sum
	ca_sum="$(sha256sum <"$CLUSTER_PKI/ca.crt" | cut -c1-16)"
	if [[ "$(cat "$pki/ca.sum" 2>/dev/null)" == "$ca_sum" && -f "$pki/tls.crt" ]]; then return 0; fi
	log "writing KEDA's certificate"
	rm -rf "$pki"
	mkdir -p "$pki"
	printf '%s\n' 'basicConstraints=CA:FALSE' 'keyUsage=digitalSignature,keyEncipherment' \
		'extendedKeyUsage=serverAuth,clientAuth' \
		"subjectAltName=IP:127.0.0.1,IP:$HOST_IP,DNS:localhost,DNS:keda-operator.keda.svc,DNS:keda-operator.keda.svc.cluster.local,DNS:keda-metrics-apiserver.keda.svc" \
		>"$pki/tls.ext"
	openssl req -newkey rsa:2048 -nodes -keyout "$pki/tls.key" -out "$pki/tls.csr" -subj "/CN=keda-operator" 2>/dev/null
	openssl x509 -req -in "$pki/tls.csr" -CA "$CLUSTER_PKI/ca.crt" -CAkey "$CLUSTER_PKI/ca.key" \
		-set_serial "0x$(openssl rand -hex 12)" -days 3650 -extfile "$pki/tls.ext" -out "$pki/tls.crt" 2>/dev/null
	cp "$CLUSTER_PKI/ca.crt" "$pki/ca.crt"
	chmod 600 "$pki/tls.key"
	echo "$ca_sum" >"$pki/ca.sum"
}

# KEDA's CRDs (from the module), its namespace, and the APIService of the external
# metrics API pointing (selector-less Service + EndpointSlice) at the adapter on the
# host address.
apply_cluster_objects() {
	local dir
	dir="$(keda_module_dir)"
	[[ -d "$dir/config/crd/bases" ]] || die "KEDA's module has no config/crd/bases ($dir)"
	kubectl_ apply --server-side --force-conflicts -f "$dir/config/crd/bases" >/dev/null
	# kubectl wait fails at once ("accessor error") while a new CRD has no
	# status.conditions yet: poll with short waits instead.
	wait_for 60 kubectl_ wait --for=condition=Established crd/scaledobjects.keda.sh --timeout 1s ||
		die "KEDA's CRD scaledobjects.keda.sh not Established within 60s"
	kubectl_ apply -f - >/dev/null <<-EOF
		apiVersion: v1
		kind: Namespace
		metadata: {name: keda, labels: {app.kubernetes.io/managed-by: imkube-metrics}}
		---
		apiVersion: v1
		kind: Service
		metadata: {name: keda-metrics-apiserver, namespace: keda, labels: {app.kubernetes.io/managed-by: imkube-metrics}}
		spec:
		  ports: [{name: https, port: 443, targetPort: $ADAPTER_PORT, protocol: TCP}]
		---
		apiVersion: discovery.k8s.io/v1
		kind: EndpointSlice
		metadata:
		  name: keda-metrics-apiserver
		  namespace: keda
		  labels: {kubernetes.io/service-name: keda-metrics-apiserver, app.kubernetes.io/managed-by: imkube-metrics}
		addressType: IPv4
		ports: [{name: https, port: $ADAPTER_PORT, protocol: TCP}]
		endpoints: [{addresses: ["$HOST_IP"], conditions: {ready: true}}]
		---
		apiVersion: apiregistration.k8s.io/v1
		kind: APIService
		metadata: {name: v1beta1.external.metrics.k8s.io, labels: {app.kubernetes.io/managed-by: imkube-metrics}}
		spec:
		  group: external.metrics.k8s.io
		  version: v1beta1
		  groupPriorityMinimum: 100
		  versionPriority: 100
		  service: {name: keda-metrics-apiserver, namespace: keda, port: 443}
		  caBundle: $(base64 -w0 <"$CLUSTER_PKI/ca.crt")
	EOF
}

up() {
	local t0=$SECONDS
	ip link show imkube0 >/dev/null 2>&1 || die "the node is not up (hack/node.sh up)"
	kubectl_ get --raw /readyz >/dev/null || die "the control plane does not answer"
	build
	mkdir -p "$STATE" "$LOGS" "$PIDS"
	write_prometheus_config
	write_pki
	apply_cluster_objects
	start prometheus "$PROMETHEUS" --config.file "$STATE/prometheus.yml" \
		--storage.tsdb.path "$STATE/prometheus-data" --storage.tsdb.retention.time 2h \
		--web.listen-address "$HOST_IP:$PROM_PORT" --log.level warn
	# KEDA reads its cluster and namespaces from the environment.
	KUBECONFIG="$(kubeconfig)" WATCH_NAMESPACE="" POD_NAMESPACE=keda KEDA_CLUSTER_OBJECT_NAMESPACE=keda OPERATOR_NAME=keda-operator
	export KUBECONFIG WATCH_NAMESPACE POD_NAMESPACE KEDA_CLUSTER_OBJECT_NAMESPACE OPERATOR_NAME
	start keda-operator "$KEDA_DIR/keda-operator" --leader-elect=false \
		--metrics-bind-address "127.0.0.1:$KEDA_METRICS_PORT" --health-probe-bind-address "127.0.0.1:$KEDA_PROBE_PORT" \
		--metrics-service-bind-address "127.0.0.1:$KEDA_GRPC_PORT" --cert-dir "$STATE/certs" \
		--enable-cert-rotation=false --enable-webhook-patching=false --enable-apiservice-patching=false \
		--zap-log-level=info
	start keda-adapter "$KEDA_DIR/keda-adapter" \
		--secure-port "$ADAPTER_PORT" --bind-address "$HOST_IP" --cert-dir "$STATE/certs" \
		--tls-cert-file "$STATE/certs/tls.crt" --tls-private-key-file "$STATE/certs/tls.key" \
		--metrics-service-address "127.0.0.1:$KEDA_GRPC_PORT" --port "$ADAPTER_HTTP_PORT" \
		--authentication-kubeconfig "$(kubeconfig)" --authorization-kubeconfig "$(kubeconfig)" \
		--lister-kubeconfig "$(kubeconfig)" --v=2
	wait_healthy prometheus 60
	wait_healthy keda-operator 90
	wait_healthy keda-adapter 90
	log "Prometheus http://$HOST_IP:$PROM_PORT, KEDA and external.metrics.k8s.io up ($((SECONDS - t0))s)"
}

down() {
	local api=0 so crd
	kubectl_ get --raw /readyz >/dev/null 2>&1 && api=1
	if ((api)) && kubectl_ get crd scaledobjects.keda.sh >/dev/null 2>&1; then
		# While KEDA still runs, it removes its finalizers and HPAs itself.
		kubectl_ delete scaledobjects.keda.sh --all -A --wait=false >/dev/null 2>&1 || true
		kubectl_ wait --for=delete scaledobjects.keda.sh --all -A --timeout 30s >/dev/null 2>&1 || true
	fi
	stop keda-adapter "/keda-adapter "
	stop keda-operator "/keda-operator "
	stop prometheus "/prometheus "
	rm -rf "$STATE/prometheus-data"
	if ((api)); then
		# The shared control plane goes back to how it was (the kwok suite
		# expects no KEDA): finalizers KEDA did not get to, its CRDs, its
		# namespace and the APIService, whose absence of a backend would
		# otherwise keep namespaces from being deleted.
		for so in $(kubectl_ get scaledobjects.keda.sh -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}{" "}{end}' 2>/dev/null); do
			kubectl_ -n "${so%%/*}" patch scaledobject "${so#*/}" --type=merge -p '{"metadata":{"finalizers":[]}}' >/dev/null 2>&1 || true
		done
		kubectl_ delete apiservice v1beta1.external.metrics.k8s.io --ignore-not-found >/dev/null 2>&1 || true
		for crd in $(kubectl_ get crd -o name 2>/dev/null | grep -E '\.keda\.sh$'); do
			kubectl_ delete "$crd" --ignore-not-found --timeout 60s >/dev/null 2>&1 || true
		done
		kubectl_ delete namespace keda --ignore-not-found --wait=false >/dev/null 2>&1 || true
	fi
}

status() {
	local c
	for c in prometheus keda-operator keda-adapter; do
		if running "$c" "/$c "; then echo "$c: running (pid $(pid_of "$c"))"; else echo "$c: stopped"; fi
	done
	kubectl_ get apiservice v1beta1.external.metrics.k8s.io 2>/dev/null || echo "APIService: absent"
}

cmd="${1:-}"
shift || true
mkdir -p "$STATE" "$LOGS" "$PIDS"
case "$cmd" in
build)
	build
	echo "$PROMETHEUS $KEDA_DIR/keda-operator $KEDA_DIR/keda-adapter"
	;;
up | down)
	[[ "$(id -u)" == 0 ]] || die "needs root (like hack/node.sh)"
	exec 7>"$CACHE/.metrics.lock"
	flock -w 600 7 || die "another hack/metrics.sh up/down holds $CACHE/.metrics.lock"
	"$cmd"
	;;
status) status ;;
env) echo "export IMKUBE_PROMETHEUS_URL='http://$HOST_IP:$PROM_PORT'" ;;
*)
	sed -n '2,30s/^# \{0,1\}//p' "$0" >&2
	exit 2
	;;
esac
