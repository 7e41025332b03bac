# End-to-end Kubernetes suite (test/e2e/k8s, build tag e2e; docs/e2e.md):
# helm install of charts/imkube, the crds/samples applied with kubectl, owned
# objects and day-2 operations, on the node-less control plane of
# hack/cluster.sh (etcd, kube-apiserver, controller-manager, scheduler, kwok)
# or on kind (`make e2e-kind`, needs Docker; not run in CI).
#
# The local cluster is left running after `make e2e` so the next run starts in
# seconds; `make cluster-down` stops it. KUBECONFIG is deliberately not written
# to ENV_DIR: the other Go tests must not see a cluster.

# Passed twice in a row on the local cluster: part of `make test`.
TEST_AFTER += e2e

E2E_TIMEOUT ?= 30m
E2E_RUN     ?= .
KIND_IMAGE_TAR ?= $(IMAGE_TAR)
# One suite at a time per machine: runs share the cluster and the fixed
# namespace imkube-e2e (a second run would delete the first one's objects).
E2E_LOCK := $(IMKUBE_CACHE)/.e2e.lock

.PHONY: e2e e2e-kind cluster-up cluster-down cluster-status

cluster-up: ## Start the local control plane + kwok fake node (hack/cluster.sh up; builds once, cached)
	hack/cluster.sh up

cluster-down: ## Stop the local control plane started by cluster-up
	hack/cluster.sh down

cluster-status: ## Show the local control plane's components and node
	hack/cluster.sh status

# helm and deps-up are TEST_PREP targets too: inside `make test` they have run already.
e2e: helm deps-up cluster-up ## Kubernetes end-to-end suite on the local control plane (operator as a host process)
	@for f in $(ENV_DIR)/*.env; do [ -f "$$f" ] && source "$$f"; done; \
	export KUBECONFIG="$$(hack/cluster.sh kubeconfig)" IMKUBE_E2E_OPERATOR=process; \
	flock -w 1800 $(E2E_LOCK) $(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -run '$(E2E_RUN)' -v ./test/e2e/k8s/

e2e-kind: helm image ## The same suite on a kind cluster with the operator in its pod (needs Docker; not run in CI)
	@kc="$$(hack/cluster.sh kind-up $(KIND_IMAGE_TAR))"; \
	source $(ENV_DIR)/helm.env; \
	export KUBECONFIG="$$kc" IMKUBE_E2E_OPERATOR=in-cluster IMKUBE_E2E_IMAGE="$(IMAGE_REPO):$(VERSION)"; \
	flock -w 1800 $(E2E_LOCK) $(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -run '$(E2E_RUN)' -v ./test/e2e/k8s/
