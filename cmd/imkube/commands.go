package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"

	"github.com/imkube/imkube/internal/version"
	"github.com/imkube/imkube/operator"
	"github.com/imkube/imkube/services/dev"
	"github.com/imkube/imkube/services/gateway"
	"github.com/imkube/imkube/services/message"
	"github.com/imkube/imkube/services/sequence"
	"github.com/imkube/imkube/services/user"
)

func commands() map[string]command {
	return map[string]command{
		"dev":      {"run every service in one process on embedded defaults, with the demo page", dev.Main},
		"version":  {"print the version", versionMain},
		"bench":    {"run a benchmark (fanout, seq) and print ratios against its baseline", benchMain},
		"user":     {"run the user service (accounts, login, groups) on MySQL", user.Main},
		"message":  {"run the message service (consume, dedup, store, fan out) on RocketMQ, Redis, MySQL", message.Main},
		"gateway":  {"run a WebSocket gateway (and the REST proxy) on RocketMQ and Redis", gateway.Main},
		"sequence": {"run the sequence service (per-key strictly increasing numbers) on Redis and MySQL", sequence.Main},
		"operator": {"run the Kubernetes operator (IMCluster, GatewayPool)", operator.Main},
	}
}

func versionMain(_ context.Context, _ []string, stdout io.Writer, _ *slog.Logger) error {
	fmt.Fprintf(stdout, "imkube %s (%s, %s/%s)\n", version.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
