# Alerts area: the chart's alert rules (charts/imkube/alerts) are checked and
# unit-tested with promtool (Prometheus v0.316.0 from the Go module proxy,
# cached by hack/promtool.sh) by charts/imkube/alerts/alerts_test.go.

# A cold promtool build takes minutes: it starts in the background first
# thing in `make test` and test-go waits for it (hack/promtool.sh's lock)
# only when the other preparations are done.
TEST_PREP += promtool-prebuild
test-go: promtool

.PHONY: promtool promtool-prebuild test-alerts

promtool-prebuild: ## Start building the pinned promtool in the background (log: $(IMKUBE_CACHE)/promtool-prebuild.log)
	@mkdir -p $(IMKUBE_CACHE)
	@setsid nice -n 10 hack/promtool.sh install > $(IMKUBE_CACHE)/promtool-prebuild.log 2>&1 < /dev/null &

promtool: ## Install the pinned promtool (Go module proxy, cached); writes IMKUBE_PROMTOOL to ENV_DIR/promtool.env
	@mkdir -p $(ENV_DIR)
	@hack/promtool.sh env > $(ENV_DIR)/promtool.env

test-alerts: promtool ## promtool check/test rules on the chart's alerts (also part of test-go)
	@for f in $(ENV_DIR)/*.env; do [ -f "$$f" ] && source "$$f"; done; \
	$(GO) test -count=1 ./charts/imkube/alerts/
