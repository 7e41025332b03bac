package message

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/flow"
	"github.com/imkube/imkube/internal/snowflake"
	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/services/platform"
	"github.com/imkube/imkube/services/runtime"
	"github.com/imkube/imkube/services/sequence"
)

// Main is `imkube message`: the message service on RocketMQ, Redis, MySQL
// and the sequence service.
func Main(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	var seqURL *string
	var node *int64
	p, err := platform.ParseFlags("message", args, stdout, "127.0.0.1:8081",
		platform.NeedMySQL|platform.NeedRedis|platform.NeedRocketMQ|platform.NeedKeys, log, func(fs *flag.FlagSet) {
			seqURL = fs.String("sequence-url", config.Env("IMKUBE_SEQUENCE_URL", ""), "base URL of the sequence service (env IMKUBE_SEQUENCE_URL)")
			node = fs.Int64("node-id", int64(config.EnvInt("IMKUBE_NODE_ID", -1)), "message id generator node 0-1023, -1 random (env IMKUBE_NODE_ID)")
		})
	if err != nil {
		return err
	}
	if *seqURL == "" {
		return errors.New("config: sequence-url (IMKUBE_SEQUENCE_URL) is required")
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
	rdb, err := deps.Redis(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	tel, err := platform.Telemetry(ctx, "message", config.Env("HOSTNAME", ""), log)
	if err != nil {
		return err
	}
	defer tel.Shutdown(context.WithoutCancel(ctx))
	ctl, err := deps.Flow("message", tel, log)
	if err != nil {
		return err
	}
	seq, err := sequence.NewClient(sequence.ClientConfig{URL: *seqURL, BreakerResource: flow.ResSequence}, sequence.ClientDeps{})
	if err != nil {
		return err
	}
	defer seq.Close()
	b, err := deps.MessageBus(ctx, log)
	if err != nil {
		return err
	}
	defer b.Close()
	metrics, err := telemetry.NewMessage(tel.MeterProvider())
	if err != nil {
		return err
	}
	svc := New(db, seq, platform.Sessions(rdb), b, snowflake.New(*node), log, Options{
		ReadDiffusionThreshold: func() int { return live.Get().Groups.ReadDiffusionThreshold },
		Metrics:                metrics, Tracer: tel.Tracer("imkube/message"),
		StoreGuard: func(fn func() error) error { return ctl.Guard(flow.ResMySQL, fn) },
	})
	ln, err := runtime.Listen(common.Addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	svc.Routes(mux, keys)
	runtime.Health(mux, db.Ping)
	mux.Handle("GET /metrics", tel.Handler())
	log.Info("message service listening", "addr", ln.Addr().String())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return watch(gctx) })
	g.Go(func() error { return ctl.Run(gctx) })
	g.Go(func() error { return svc.Run(gctx, b) })
	if l, ok := b.(interface{ UpstreamLag() (int64, bool) }); ok {
		g.Go(func() error { return reportLag(gctx, l.UpstreamLag, metrics) })
	}
	g.Go(func() error { return runtime.Serve(gctx, ln, mux, log, nil) })
	return g.Wait()
}

func closeIf(v any) {
	if c, ok := v.(io.Closer); ok {
		c.Close()
	}
}

// reportLag publishes the consumer lag (imkube_message_consumer_lag, the
// message service HPA's metric) every 10 s.
func reportLag(ctx context.Context, lag func() (int64, bool), m *telemetry.Message) error {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		if n, ok := lag(); ok {
			m.SetConsumerLag(n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
