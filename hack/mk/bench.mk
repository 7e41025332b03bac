# Group fan-out across two in-process gateways (internal/bench/gateways.go):
# write diffusion (a group at the read-diffusion threshold) against read
# diffusion (a 10,000-member group), 2,000 members online, the publish rate
# doubled until p99 delivery latency passes 200 ms; rows written and bytes
# allocated per delivery.
BENCH += bench-fanout-gateways

# Side by side with Centrifugo (internal/bench/versus.go, fanout.go, issue 21):
# imkube dev and the Centrifugo peer (hack/centrifugo.sh, built once with go
# install and cached) each as a process pinned to CPU 0, the generator on
# CPU 1; every table prints imkube's ratio to the peer measured in the same run.
BENCH += bench-conns bench-p2p bench-fanout
# A tiny run of each scenario, imkube only (no peer build in CI): keeps them
# working; it measures nothing.
TEST_AFTER += test-bench

# 1:1 through imkube distributed (internal/bench/pipeline.go): user, sequence,
# message and two gateways as processes on the deps of hack/deps.sh, with the
# per-hop latency read from the services' traces, side by side with Centrifugo.
BENCH += bench-pipeline

.PHONY: bench-fanout-gateways bench-conns bench-conns-100k bench-p2p bench-fanout bench-pipeline centrifugo test-bench

bench-fanout-gateways: build ## Group fan-out across two in-process gateways: deliveries/s, p50/p99, rows and bytes per delivery
	./bin/imkube bench fanout-gateways $(FANOUT_GATEWAYS_BENCH_FLAGS)

centrifugo: ## Install the Centrifugo peer of the side-by-side benchmarks (go install, cached by version)
	bash hack/centrifugo.sh install >/dev/null

bench-conns: build centrifugo ## Idle connections: RSS per connection and before any, time and CPU to connect, imkube dev vs Centrifugo
	./bin/imkube bench conns $(CONNS_BENCH_FLAGS)

bench-conns-100k: build centrifugo ## 100,000 idle connections on one gateway process (needs RLIMIT_NOFILE >= 101,024: root or ulimit -Hn; see docs/performance.md)
	./bin/imkube bench conns -conns 100000 -settle 10s $(CONNS_BENCH_FLAGS)

bench-p2p: build centrifugo ## 1:1 at 1,000 msg/s, 20 pairs: deliveries per CPU-second, p50/p99, lost/dup/reordered vs Centrifugo
	./bin/imkube bench p2p $(P2P_BENCH_FLAGS)

bench-fanout: build centrifugo ## Group fan-out, 200, 2,000 and 10,000 members all online, write and read diffusion: deliveries per CPU-second, p99 vs Centrifugo
	./bin/imkube bench fanout $(FANOUT_BENCH_FLAGS)

bench-pipeline: build centrifugo deps-up ## 1:1 distributed (2 gateways, RocketMQ, MariaDB), 2,000 msg/s, 20 pairs: per-hop latency, deliveries per CPU-second vs Centrifugo
	source $(ENV_DIR)/deps.env && ./bin/imkube bench pipeline $(PIPELINE_BENCH_FLAGS)

test-bench: build ## Tiny run of every bench scenario but seq (imkube only, -strict where it counts messages): the scenarios still work
	./bin/imkube bench conns -strict -peer=false -conns 20 -settle 100ms -per-addr 8
	./bin/imkube bench p2p -strict -peer=false -pairs 2 -idle 2 -rate 20 -warmup 200ms -duration 1s
	./bin/imkube bench fanout -strict -peer=false -members 5,10 -rate 10 -warmup 200ms -duration 1s
	./bin/imkube bench group -strict -peer=false -members 5 -rate 10 -warmup 200ms -duration 1s -read-diffusion
	./bin/imkube bench fanout-gateways -members 20 -write-members 10 -online 4 -stage 300ms -max-rate 5
	source $(ENV_DIR)/deps.env && ./bin/imkube bench pipeline -strict -peer=false -pairs 2 -rate 20 -warmup 200ms -duration 1s -trace-sample 1
