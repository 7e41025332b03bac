# Packaging area: the Helm chart (charts/imkube), its tests with a pinned helm
# from the Go module proxy, and the Docker-free image (image.mk).

CHART_DIR := charts/imkube

TEST_PREP += helm
GENERATE  += sync-chart-crds render-chart

.PHONY: helm sync-chart-crds render-chart test-chart

helm: ## Install the pinned helm (Go module proxy, cached); writes IMKUBE_HELM to ENV_DIR/helm.env
	@mkdir -p $(ENV_DIR)
	@hack/helm.sh env > $(ENV_DIR)/helm.env

# Runs after the operator's generators (chart.mk sorts before operator.mk, so
# the order is explicit): the chart's CRDs and ClusterRole rules are copies.
sync-chart-crds: generate-operator ## Copy crds/*.yaml and operator/rbac/role.yaml into the chart
	@rm -f $(CHART_DIR)/crds/*.yaml
	cp crds/*.yaml $(CHART_DIR)/crds/
	@if [ -f operator/rbac/role.yaml ]; then cp operator/rbac/role.yaml $(CHART_DIR)/files/operator-role.yaml; fi

# The chart rendered with the default values into namespace imkube-system is
# the kubectl install path; the full values render is the second golden file.
render-chart: helm sync-chart-crds ## Render the chart's golden files (manifests/imkube-operator.yaml, testdata/full.golden.yaml)
	@h=$$(hack/helm.sh); \
	$$h template imkube $(CHART_DIR) --namespace imkube-system > $(CHART_DIR)/manifests/imkube-operator.yaml && \
	$$h template imkube $(CHART_DIR) --namespace imkube-system -f $(CHART_DIR)/ci/full-values.yaml > $(CHART_DIR)/testdata/full.golden.yaml

test-chart: helm deps-up ## Lint and render the chart and check its dashboards against the assembled roles (also part of test-go)
	@for f in $(ENV_DIR)/*.env; do [ -f "$$f" ] && source "$$f"; done; \
	$(GO) test -count=1 ./$(CHART_DIR)/...
