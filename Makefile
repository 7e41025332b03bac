# imkube — `make help` lists the targets. `make run` and `make test` are the two
# commands a newcomer needs (see README.md).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
# One version for the binary, the image tag and the chart's appVersion: the
# VERSION file (charts/imkube's tests fail when Chart.yaml disagrees).
VERSION   ?= $(shell cat VERSION)
LDFLAGS   := -s -w -X github.com/imkube/imkube/internal/buildinfo.Version=$(VERSION)
# Everything downloaded or built for tests lives here, outside the repo, so a
# second run (and CI on the same machine) reuses it.
export IMKUBE_CACHE ?= $(HOME)/.cache/imkube
# Each TEST_PREP target installs/starts a dependency and writes `export K=V`
# lines to $(ENV_DIR)/<name>.env; go tests run with all of them sourced.
export ENV_DIR := $(IMKUBE_CACHE)/env
ADDR ?= 127.0.0.1:8080
DATA ?= ./imkube-data

TEST_PREP  :=
TEST_AFTER :=
GENERATE   :=
BENCH      :=

# Area makefiles (deps, operator, web, ...) add to the lists above.
include $(sort $(wildcard hack/mk/*.mk))

.PHONY: help build run run-distributed test test-go lint generate bench clean version

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

version: ## Print the version of the binary, the image tag and the chart (the VERSION file)
	@echo $(VERSION)

build: ## Build bin/imkube
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/imkube ./cmd/imkube

run: build ## Start imkube dev on embedded defaults and print the URLs (ADDR, DATA)
	./bin/imkube dev --addr $(ADDR) --data $(DATA)

run-distributed: ## Start deps + 2 gateways, message, sequence and user services as processes on loopback
	hack/run-distributed.sh

test: lint $(TEST_PREP) test-go $(TEST_AFTER) ## Check formatting and vet, install and start what the tests need, then run them all
	@echo "make test: all suites passed"

test-go: ## Go unit and integration tests (with the env written by TEST_PREP)
	@mkdir -p $(ENV_DIR); for f in $(ENV_DIR)/*.env; do [ -f "$$f" ] && source "$$f"; done; \
	$(GO) test -count=1 -timeout 30m ./...
	@# The tests of what third_party patches (a module of its own).
	cd third_party/rocketmq-client-go && $(GO) test -count=1 -run ImkubePatch ./consumer/

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

generate: $(GENERATE) ## Regenerate code and manifests (deepcopy, CRDs, chart CRDs)

bench: build $(BENCH) ## Run the benchmarks and print ratios against their baselines

clean: ## Remove build outputs (not the dependency cache)
	rm -rf bin
