package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/buildinfo"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/operator"
)

func commands() map[string]command {
	return map[string]command{
		"dev":      {"run every service in one process on embedded defaults, with the demo page", role(config.RoleDev)},
		"version":  {"print the version", versionMain},
		"bench":    {"run a benchmark (fanout, seq) and print ratios against its baseline", atInfo(benchMain)},
		"user":     {"run the user service (accounts, login, groups) on MySQL", role(config.RoleUser)},
		"message":  {"run the message service (consume, dedup, store, fan out) on RocketMQ, Redis, MySQL", role(config.RoleMessage)},
		"gateway":  {"run a WebSocket gateway (and the REST proxy) on RocketMQ and Redis", role(config.RoleGateway)},
		"sequence": {"run the sequence service (per-key strictly increasing numbers) on Redis and MySQL", role(config.RoleSequence)},
		"operator": {"run the Kubernetes operator (IMCluster, GatewayPool)", atInfo(operator.Main)},
	}
}

// role runs one role through the composition root (internal/app).
func role(r config.Role) func(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	return func(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
		return app.Run(ctx, r, args, stdout, log)
	}
}

func versionMain(_ context.Context, _ []string, stdout io.Writer, _ *slog.Logger) error {
	fmt.Fprintf(stdout, "imkube %s (%s, %s/%s)\n", buildinfo.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

type runFunc = func(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error

// atInfo runs fn with the base logger limited to info and above (the roles
// filter by their own --log-level instead).
func atInfo(fn runFunc) runFunc {
	return func(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
		return fn(ctx, args, stdout, slog.New(infoHandler{log.Handler()}))
	}
}

type infoHandler struct{ slog.Handler }

func (h infoHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo && h.Handler.Enabled(ctx, l)
}
func (h infoHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return infoHandler{h.Handler.WithAttrs(as)}
}
func (h infoHandler) WithGroup(n string) slog.Handler { return infoHandler{h.Handler.WithGroup(n)} }
