# Sequence service benchmark: raw Redis INCR from Go (unpipelined and
# pipelined) against the sequence service over HTTP (single-key and batched),
# 64 clients each, measured in the same run (services/sequence/bench.go).
BENCH += bench-seq

.PHONY: bench-seq

bench-seq: build deps-up ## Sequence service vs raw Redis INCR at 64 clients: throughput, p50/p99, ratios
	@for f in $(ENV_DIR)/*.env; do [ -f "$$f" ] && source "$$f"; done; \
	./bin/imkube bench seq $(SEQ_BENCH_FLAGS)
