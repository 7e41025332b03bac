# The imkube container image without a Docker engine (hack/image.sh: crane from
# the Go module proxy onto an empty base, platform set). `docker build .` with
# the Dockerfile gives the same image for users with Docker.

IMAGE_REPO ?= ghcr.io/imkube/imkube
IMAGE_TAR  ?= bin/imkube-image.tar
# The image the tests check: built like `make image` but from a binary built
# with the test build's flags (shares the Go build cache with test-go).
IMAGE_TEST_DIR := $(IMKUBE_CACHE)/image-test

TEST_PREP += image-test-prep

.PHONY: image image-test-prep

image: ## Build the OCI image into bin/imkube-image.tar without Docker (VERSION, IMAGE_REPO, GOARCH)
	VERSION=$(VERSION) IMAGE_REPO=$(IMAGE_REPO) hack/image.sh $(IMAGE_TAR)

image-test-prep: ## Build a test image (IMKUBE_IMAGE_TAR in ENV_DIR/image.env) for the image config test
	@mkdir -p $(ENV_DIR) $(IMAGE_TEST_DIR)
	CGO_ENABLED=0 $(GO) build -o $(IMAGE_TEST_DIR)/imkube ./cmd/imkube
	BINARY=$(IMAGE_TEST_DIR)/imkube VERSION=test IMAGE_REPO=$(IMAGE_REPO) hack/image.sh $(IMAGE_TEST_DIR)/imkube-image.tar
	@echo "export IMKUBE_IMAGE_TAR=$(IMAGE_TEST_DIR)/imkube-image.tar" > $(ENV_DIR)/image.env
