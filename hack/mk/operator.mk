# Operator area: CRD code generation (controller-gen, pinned) and the
# kube-apiserver + etcd that the envtest suites in operator/ run against.

CONTROLLER_TOOLS_VERSION := v0.23.0
CONTROLLER_GEN := $(IMKUBE_CACHE)/tools/controller-gen-$(CONTROLLER_TOOLS_VERSION)/controller-gen
# Directories whose content `make generate` owns for the operator.
OPERATOR_GENERATED := api/v1alpha1 crds operator/rbac

TEST_PREP += kube-assets verify-generate
GENERATE  += generate-operator

.PHONY: kube-assets generate-operator verify-generate controller-gen

$(CONTROLLER_GEN):
	GOBIN=$(dir $@) GOFLAGS=-buildvcs=false $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

controller-gen: $(CONTROLLER_GEN) ## Install the pinned controller-gen into IMKUBE_CACHE

generate-operator: $(CONTROLLER_GEN) ## Regenerate deepcopy, CRDs (crds/) and operator RBAC (operator/rbac/)
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd:crdVersions=v1 paths=./api/... output:crd:dir=crds
	$(CONTROLLER_GEN) rbac:roleName=imkube-operator paths=./operator/... output:rbac:dir=operator/rbac

verify-generate: $(CONTROLLER_GEN) ## Fail if `make generate-operator` would change checked-in files
	@sum() { find $(OPERATOR_GENERATED) -type f -not -path '*/testdata/*' | sort | xargs sha256sum | sha256sum; }; \
	before=$$(sum); $(MAKE) --no-print-directory generate-operator >/dev/null; after=$$(sum); \
	if [ "$$before" != "$$after" ]; then \
		echo "verify-generate: regenerating changed files in $(OPERATOR_GENERATED); run 'make generate' and commit:"; \
		git status --short -- $(OPERATOR_GENERATED); exit 1; fi

kube-assets: ## Build (once, cached) etcd + kube-apiserver for envtest; writes KUBEBUILDER_ASSETS to ENV_DIR/kube.env
	@mkdir -p $(ENV_DIR)
	@dir=$$(hack/kube.sh assets) && echo "export KUBEBUILDER_ASSETS=$$dir" > $(ENV_DIR)/kube.env
