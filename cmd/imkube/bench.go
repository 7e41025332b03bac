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
	"conns":  {"idle connections: RSS per connection, imkube dev vs Centrifugo (hack/centrifugo.sh)", bench.BenchConns},
	"p2p":    {"1:1 pairs: deliveries per CPU-second, p50/p99, lost/dup/reordered, imkube dev vs Centrifugo", bench.BenchP2P},
	"group":  {"group fan-out (one process per server, pinned): deliveries per CPU-second, p99, imkube dev vs Centrifugo", bench.BenchGroup},
	"fanout": {"group fan-out across two gateways: deliveries/s, p50/p99, rows and bytes per delivery", bench.BenchFanout},
	"seq":    {"sequence allocation vs raw Redis INCR at 64 clients (needs IMKUBE_REDIS_ADDR, IMKUBE_MYSQL_DSN)", sequence.BenchMain},
}

func benchMain(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	if len(args) == 0 {
		fmt.Fprintln(stdout, "Usage: imkube bench <name> [flags]\n\nBenchmarks:")
		for n, b := range benches {
			fmt.Fprintf(stdout, "  %-8s %s\n", n, b.summary)
		}
		return nil
	}
	b, ok := benches[args[0]]
	if !ok {
		return fmt.Errorf("unknown benchmark %q", args[0])
	}
	return b.run(ctx, args[1:], stdout, log)
}
