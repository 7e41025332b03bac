# JavaScript SDK, demo page and browser test (services/web).
WEB_DIR := services/web

TEST_AFTER += test-web check-web test-browser

.PHONY: test-web check-web test-browser web-deps

test-web: ## Node unit tests of the JavaScript SDK (fake server with dropped, duplicated, reordered frames)
	node --test $(WEB_DIR)/test/

web-deps: ## Install Debian chromium and the pinned npm packages of services/web (idempotent)
	bash hack/browser.sh deps

check-web: web-deps ## Type-check the SDK's JSDoc with the pinned TypeScript (no output files)
	cd $(WEB_DIR) && node_modules/.bin/tsc -p tsconfig.json

test-browser: build ## Drive the demo page in headless Chromium against a fresh bin/imkube dev
	bash hack/browser.sh test
