# Group fan-out benchmark (internal/bench/fanout.go): write diffusion (a group at
# the read-diffusion threshold) against read diffusion (a 10,000-member group),
# 2,000 members online across two in-process gateways, the publish rate
# doubled until p99 delivery latency passes 200 ms.
BENCH += bench-fanout

# Side by side with Centrifugo (internal/bench/versus.go, issue 21): imkube dev
# and the Centrifugo peer (hack/centrifugo.sh, built once with go install and
# cached) each as a process pinned to CPU 0, the generator on CPU 1; every
# table prints imkube's ratio to the peer measured in the same run.
BENCH += bench-conns bench-p2p bench-group
# A tiny run of each side-by-side scenario, imkube only (no peer build in CI):
# keeps them working; it measures nothing.
TEST_AFTER += test-bench

.PHONY: bench-fanout bench-conns bench-p2p bench-group centrifugo test-bench

bench-fanout: build ## Group fan-out: deliveries/s, p50/p99, rows and bytes per delivery, write vs read diffusion
	./bin/imkube bench fanout $(FANOUT_BENCH_FLAGS)

centrifugo: ## Install the Centrifugo peer of the side-by-side benchmarks (go install, cached by version)
	bash hack/centrifugo.sh install >/dev/null

bench-conns: build centrifugo ## Idle connections: RSS per connection and before any, imkube dev vs Centrifugo
	./bin/imkube bench conns $(CONNS_BENCH_FLAGS)

bench-p2p: build centrifugo ## 1:1 at 1,000 msg/s, 20 pairs: deliveries per CPU-second, p50/p99, lost/dup/reordered vs Centrifugo
	./bin/imkube bench p2p $(P2P_BENCH_FLAGS)

bench-group: build centrifugo ## 200-member group, 199 online: deliveries per CPU-second, p50/p99 vs Centrifugo
	./bin/imkube bench group $(GROUP_BENCH_FLAGS)

test-bench: build ## Tiny run of bench conns, p2p and group, write and read diffusion (imkube only): the scenarios still work
	./bin/imkube bench conns -peer=false -conns 20 -settle 100ms
	./bin/imkube bench p2p -strict -peer=false -pairs 2 -idle 2 -rate 20 -warmup 200ms -duration 1s
	./bin/imkube bench group -strict -peer=false -members 5 -rate 10 -warmup 200ms -duration 1s
	./bin/imkube bench group -strict -peer=false -members 5 -rate 10 -warmup 200ms -duration 1s -read-diffusion
