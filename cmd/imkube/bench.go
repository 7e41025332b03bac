package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/imkube/imkube/internal/bench"
	"github.com/imkube/imkube/services/sequence"
)

var benches = map[string]command{
	"conns":           {"idle connections (up to 100,000, source addresses across 127.0.0.0/8): RSS per connection, time and CPU to connect, imkube dev vs Centrifugo (hack/centrifugo.sh)", bench.BenchConns},
	"p2p":             {"1:1 pairs: deliveries per CPU-second, p50/p99, lost/dup/reordered, imkube dev vs Centrifugo", bench.BenchP2P},
	"fanout":          {"group fan-out at 200/2,000/10,000 online, write and read diffusion: deliveries per CPU-second, p99, imkube dev vs Centrifugo", bench.BenchFanout},
	"group":           {"fan-out at one size under the earlier flags (-members, -read-diffusion): an alias of fanout", bench.BenchGroup},
	"fanout-gateways": {"group fan-out across two in-process gateways: deliveries/s, p50/p99, rows and bytes per delivery", bench.BenchFanoutGateways},
	"seq":             {"sequence allocation vs raw Redis INCR at 64 clients (needs IMKUBE_REDIS_ADDR, IMKUBE_MYSQL_DSN)", sequence.BenchMain},
	"pipeline":        {"1:1 pairs through imkube distributed (2 gateways, RocketMQ, MariaDB; make deps-up): per-hop latency, deliveries per CPU-second vs Centrifugo", bench.BenchPipeline},
}

func benchMain(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	if len(args) == 0 {
		fmt.Fprintln(stdout, "Usage: imkube bench <name> [flags]\n\nBenchmarks:")
		for n, b := range benches {
			fmt.Fprintf(stdout, "  %-16s %s\n", n, b.summary)
		}
		return nil
	}
	b, ok := benches[args[0]]
	if !ok {
		return fmt.Errorf("unknown benchmark %q", args[0])
	}
	return b.run(ctx, args[1:], stdout, log)
}
