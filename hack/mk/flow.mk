# Flow-control and hardening area: short fuzzing runs of the decoders that
# face untrusted input (WebSocket frames, conversation ids, REST JSON bodies,
# tokens). The seed corpora in testdata/fuzz/<Fuzz...>/ (and the f.Add seeds)
# also run as plain tests in test-go.
#
# Budgets are execution counts, not durations: a duration -fuzztime races
# the fuzz coordinator's deadline on a loaded machine and fails with a bare
# "context deadline exceeded" (golang/go#75804, not fixed in Go 1.26). The
# counts below take roughly 5-10 s each on two busy cores. A crasher is
# written to the package's testdata/fuzz/ and fails the run.
FUZZ_SCALE ?= 1
FUZZ_TARGETS := \
	./api/protocol:FuzzDecode:30000 \
	./api/protocol:FuzzConv:20000 \
	./internal/rest:FuzzDecodeJSON:20000 \
	./internal/auth:FuzzVerify:50000 \
	./internal/username:FuzzKey:30000

TEST_AFTER += test-fuzz

.PHONY: test-fuzz

test-fuzz: ## Fuzz frame decoding, REST JSON decoding and token verification briefly (FUZZ_SCALE multiplies the budgets)
	@for t in $(FUZZ_TARGETS); do \
		IFS=: read -r pkg name count <<< "$$t"; \
		n=$$(( count * $(FUZZ_SCALE) )); \
		echo "test-fuzz: $$name ($$pkg), $$n executions"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime "$${n}x" -timeout 10m "$$pkg" || exit 1; \
	done
