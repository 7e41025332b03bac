# Distributed-mode suite: every service its own process on the real Redis,
# MariaDB and RocketMQ of hack/deps.sh, with injected faults. It stops and
# restarts the shared dependencies, so it runs after the other Go tests.
TEST_AFTER += test-dataplane

.PHONY: test-dataplane

test-dataplane: ## Distributed mode across processes with faults (gateway/message kill -9, Redis/RocketMQ/MySQL outages)
	@for f in $(ENV_DIR)/*.env; do [ -f "$$f" ] && source "$$f"; done; \
	$(GO) test -tags dataplane -count=1 -timeout 40m ./test/e2e/dataplane/
