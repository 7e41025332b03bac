# Local dependencies of the integration tests: Redis, MariaDB, RocketMQ
# (hack/deps.sh; data, logs and jars under $(IMKUBE_CACHE)/deps).
TEST_PREP += deps-up

.PHONY: deps-up deps-down deps-status

deps-up: ## Start Redis, MariaDB and RocketMQ for tests
	hack/deps.sh up
	@mkdir -p $(ENV_DIR)
	hack/deps.sh env > $(ENV_DIR)/deps.env

deps-down: ## Stop Redis, MariaDB and RocketMQ started by deps-up
	hack/deps.sh down

deps-status: ## Show whether Redis, MariaDB and RocketMQ run
	hack/deps.sh status
