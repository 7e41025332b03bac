# The S3-compatible object store of the media tests: versitygw (hack/s3.sh;
# binary under $(IMKUBE_CACHE)/tools, data under $(IMKUBE_CACHE)/s3).
TEST_PREP += s3-up

.PHONY: s3-up s3-down s3-status

s3-up: ## Start the S3-compatible store (versitygw) for the media tests
	hack/s3.sh up
	@mkdir -p $(ENV_DIR)
	hack/s3.sh env > $(ENV_DIR)/s3.env

s3-down: ## Stop the S3-compatible store started by s3-up
	hack/s3.sh down

s3-status: ## Show whether the S3-compatible store runs
	hack/s3.sh status
