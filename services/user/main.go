package user

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net/http"

	"golang.org/x/sync/errgroup"

	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/snowflake"
	"github.com/imkube/imkube/services/platform"
	"github.com/imkube/imkube/services/runtime"
)

// Main is `imkube user`: the user service on MySQL.
func Main(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	var node *int64
	p, err := platform.ParseFlags("user", args, stdout, "127.0.0.1:8082", platform.NeedMySQL|platform.NeedKeys, log, func(fs *flag.FlagSet) {
		node = fs.Int64("node-id", int64(config.EnvInt("IMKUBE_NODE_ID", -1)), "id generator node 0-1023, -1 random (env IMKUBE_NODE_ID)")
	})
	if err != nil {
		return err
	}
	common, deps, log := p.Common, p.Deps, p.Log
	keys, err := deps.Keys()
	if err != nil {
		return err
	}
	live, watch, err := deps.Cluster(log)
	if err != nil {
		return err
	}
	db, err := deps.Store(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	ln, err := runtime.Listen(common.Addr)
	if err != nil {
		return err
	}
	svc := New(db, keys, snowflake.New(*node), log, Options{TrustProxy: true})
	mux := http.NewServeMux()
	svc.Routes(mux)
	NewGroups(db, svc, func() int { return live.Get().Groups.MaxMembers }).Routes(mux)
	runtime.Health(mux, db.Ping)
	tel, err := platform.Telemetry(ctx, "user", config.Env("HOSTNAME", ""), log)
	if err != nil {
		return err
	}
	defer tel.Shutdown(context.WithoutCancel(ctx))
	mux.Handle("GET /metrics", tel.Handler())
	ctl, err := deps.Flow("user", tel, log)
	if err != nil {
		return err
	}
	log.Info("user service listening", "addr", ln.Addr().String())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return watch(gctx) })
	g.Go(func() error { return ctl.Run(gctx) })
	g.Go(func() error { return runtime.Serve(gctx, ln, mux, log, nil) })
	return g.Wait()
}
