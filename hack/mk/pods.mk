# Real-pod suite (test/e2e/pods, build tag pods; docs/e2e.md "The real-pod
# suite"): the chart and the samples of docs/install.md's quick start on the
# real node of hack/node.sh (real containers, kube-proxy, CoreDNS), the image
# of `make image` imported without a registry, chat through the gateway
# Service, pods deleted mid-burst, a version rollout, a wrong MySQL password.
# hack/pods.sh builds (cached by version and sources), starts, runs and tears
# down everything, even on failure. Needs root.

# Last in `make test` after the kwok suite (e2e.mk), which shares the control plane.
TEST_AFTER += e2e-pods
# The node's Go binaries (kubelet, kube-proxy, the NetworkPolicy controller) are
# built in the background while the other suites run (cold: minutes; cached after).
TEST_PREP += node-prebuild
# Prometheus and KEDA of step 8 (hack/metrics.sh, cached by version): built in
# the background too, after promtool (hack/promtool.sh, whose packages the
# Prometheus server shares through the build cache), so the two do not compile
# the same packages at once.
TEST_PREP += metrics-prebuild

PODS_TIMEOUT ?= 20m
PODS_RUN     ?= .

.PHONY: e2e-pods node-prebuild metrics-prebuild

node-prebuild: ## Start building the real node's Go binaries in the background (log: $(IMKUBE_CACHE)/node-prebuild.log)
	@mkdir -p $(IMKUBE_CACHE)
	@echo "building the real node's Go binaries in the background (log: $(IMKUBE_CACHE)/node-prebuild.log)"
	@setsid nice -n 10 hack/node.sh build-go > $(IMKUBE_CACHE)/node-prebuild.log 2>&1 < /dev/null &

metrics-prebuild: ## Start building Prometheus and KEDA of hack/metrics.sh in the background (log: $(IMKUBE_CACHE)/metrics-prebuild.log)
	@mkdir -p $(IMKUBE_CACHE)
	@echo "building Prometheus and KEDA in the background (log: $(IMKUBE_CACHE)/metrics-prebuild.log)"
	@setsid nice -n 15 bash -c 'hack/promtool.sh install && hack/metrics.sh build' > $(IMKUBE_CACHE)/metrics-prebuild.log 2>&1 < /dev/null &

# helm and deps-up are TEST_PREP targets too: inside `make test` they have run already.
e2e-pods: helm deps-up ## Real-pod suite on the real node (hack/pods.sh: images, node up, suite, node down)
	VERSION=$(VERSION) IMAGE_REPO=$(IMAGE_REPO) PODS_TIMEOUT=$(PODS_TIMEOUT) PODS_RUN='$(PODS_RUN)' hack/pods.sh
