# Group fan-out benchmark (internal/bench/fanout.go): write diffusion (a group at
# the read-diffusion threshold) against read diffusion (a 10,000-member group),
# 2,000 members online across two in-process gateways, the publish rate
# doubled until p99 delivery latency passes 200 ms.
BENCH += bench-fanout

.PHONY: bench-fanout

bench-fanout: build ## Group fan-out: deliveries/s, p50/p99, rows and bytes per delivery, write vs read diffusion
	./bin/imkube bench fanout $(FANOUT_BENCH_FLAGS)
