# The imkube container image without a Docker engine (hack/image.sh: crane from
# the Go module proxy onto an empty base, platform set). `docker build .` with
# the Dockerfile gives the same image for users with Docker.

IMAGE_REPO ?= ghcr.io/imkube/imkube
IMAGE_TAR  ?= bin/imkube-image.tar
# The image the tests check is built by the same script around a tiny static
# stand-in binary, so `make test` checks the packaging (platform, user,
# entrypoint, layout) in seconds; a cold static build of ./cmd/imkube would
# add minutes. `make image` packages the real binary.
IMAGE_TEST_DIR := $(IMKUBE_CACHE)/image-test

TEST_PREP += image-test-prep

.PHONY: image image-test-prep

image: ## Build the OCI image into bin/imkube-image.tar without Docker (VERSION, IMAGE_REPO, GOARCH)
	VERSION=$(VERSION) IMAGE_REPO=$(IMAGE_REPO) hack/image.sh $(IMAGE_TAR)

image-test-prep: ## Build a test image around a stand-in binary (IMKUBE_IMAGE_TAR in ENV_DIR/image.env)
	@mkdir -p $(ENV_DIR) $(IMAGE_TEST_DIR)/stub
	@printf 'module stub\n\ngo 1.26\n' > $(IMAGE_TEST_DIR)/stub/go.mod
	@printf 'package main\n\nfunc main() { println("imkube image stand-in") }\n' > $(IMAGE_TEST_DIR)/stub/main.go
	cd $(IMAGE_TEST_DIR)/stub && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOFLAGS=-buildvcs=false $(GO) build -trimpath -o ../imkube .
	BINARY=$(IMAGE_TEST_DIR)/imkube VERSION=test IMAGE_REPO=$(IMAGE_REPO) hack/image.sh $(IMAGE_TEST_DIR)/imkube-image.tar
	@echo "export IMKUBE_IMAGE_TAR=$(IMAGE_TEST_DIR)/imkube-image.tar" > $(ENV_DIR)/image.env
