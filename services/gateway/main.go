package gateway

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/flow"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/services/platform"
	"github.com/imkube/imkube/services/runtime"
	"github.com/imkube/imkube/services/web"
)

// Main is `imkube gateway`: the WebSocket edge on RocketMQ and Redis, with
// the REST API proxied to the user and message services.
func Main(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	host, _ := os.Hostname()
	var cfg Config
	var drain *time.Duration
	var origins, userURL, messageURL, tlsCert, tlsKey *string
	p, err := platform.ParseFlags("gateway", args, stdout, "127.0.0.1:8080", platform.NeedRedis|platform.NeedRocketMQ|platform.NeedKeys, log, func(fs *flag.FlagSet) {
		fs.StringVar(&cfg.ID, "gateway-id", config.Env("IMKUBE_GATEWAY_ID", host), "gateway id, unique per process; the pod name (env IMKUBE_GATEWAY_ID)")
		fs.IntVar(&cfg.MaxConnections, "max-connections", config.EnvInt("IMKUBE_MAX_CONNECTIONS", 100000), "connections per gateway before 503 (env IMKUBE_MAX_CONNECTIONS)")
		fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", config.EnvDuration("IMKUBE_HEARTBEAT_INTERVAL", 10*time.Second), "session heartbeat (env IMKUBE_HEARTBEAT_INTERVAL)")
		fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", config.EnvDuration("IMKUBE_IDLE_TIMEOUT", 60*time.Second), "close connections idle this long (env IMKUBE_IDLE_TIMEOUT)")
		drain = fs.Duration("drain-timeout", config.EnvDuration("IMKUBE_DRAIN_TIMEOUT", 30*time.Second), "how long shutdown waits for connections to move (env IMKUBE_DRAIN_TIMEOUT)")
		origins = fs.String("allowed-origins", config.Env("IMKUBE_ALLOWED_ORIGINS", ""), "comma-separated browser origins allowed besides the gateway's own host; scheme://host:* for any port, * for any (env IMKUBE_ALLOWED_ORIGINS)")
		userURL = fs.String("user-url", config.Env("IMKUBE_USER_URL", ""), "base URL of the user service (env IMKUBE_USER_URL)")
		messageURL = fs.String("message-url", config.Env("IMKUBE_MESSAGE_URL", ""), "base URL of the message service (env IMKUBE_MESSAGE_URL)")
		tlsCert = fs.String("tls-cert-file", config.Env("IMKUBE_TLS_CERT_FILE", ""), "serve TLS (wss://, https://) with this PEM certificate (env IMKUBE_TLS_CERT_FILE)")
		tlsKey = fs.String("tls-key-file", config.Env("IMKUBE_TLS_KEY_FILE", ""), "PEM key of --tls-cert-file (env IMKUBE_TLS_KEY_FILE)")
	})
	if err != nil {
		return err
	}
	if *userURL == "" || *messageURL == "" {
		return errors.New("config: user-url (IMKUBE_USER_URL) and message-url (IMKUBE_MESSAGE_URL) are required")
	}
	if *origins != "" {
		cfg.AllowedOrigins = strings.Split(*origins, ",")
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
	cfg.MaxBodyBytes = func() int { return live.Get().Limits.MaxMessageBytes }
	rdb, err := deps.Redis(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	b, err := deps.GatewayBus(ctx, cfg.ID, log)
	if err != nil {
		return err
	}
	defer b.Close()
	tel, err := platform.Telemetry(ctx, "gateway", cfg.ID, log)
	if err != nil {
		return err
	}
	defer tel.Shutdown(context.WithoutCancel(ctx))
	metrics, err := telemetry.NewGateway(tel.MeterProvider())
	if err != nil {
		return err
	}
	ctl, err := deps.Flow("gateway", tel, log, func() config.Limits { return live.Get().Limits })
	if err != nil {
		return err
	}
	node, err := New(cfg, Deps{
		Tokens: keys, Upstream: b, Push: b, Pushes: b, Backend: messageapi.NewClient(*messageURL, keys.InternalToken(), ctl.Transport(flow.ResMessage, nil)),
		Sessions: platform.Sessions(rdb), Log: log,
		Limiter: ctl, Connects: ctl, PublishGuard: func(fn func() error) error { return ctl.Guard(flow.ResPublish, fn) },
		Metrics: metrics, Tracer: tel.Tracer("imkube/gateway"),
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", node)
	if err := ProxyRoutes(mux, *userURL, *messageURL, log, ctl.Transport); err != nil {
		return err
	}
	runtime.Health(mux, func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
	mux.Handle("GET /metrics", tel.Handler())
	mux.Handle("/", web.Handler()) // GET only; other methods are refused by the handler
	var ln net.Listener
	if *tlsCert != "" || *tlsKey != "" {
		ln, err = runtime.ListenTLS(common.Addr, *tlsCert, *tlsKey)
	} else {
		ln, err = runtime.Listen(common.Addr)
	}
	if err != nil {
		return err
	}
	log.Info("gateway listening", "addr", ln.Addr().String(), "id", cfg.ID)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return watch(gctx) })
	g.Go(func() error { return ctl.Run(gctx) })
	g.Go(func() error { return node.Run(gctx) })
	g.Go(func() error {
		return runtime.Serve(gctx, ln, mux, log, func(sctx context.Context) {
			dctx, cancel := context.WithTimeout(sctx, *drain)
			defer cancel()
			done := make(chan struct{})
			go func() { node.Drain(); close(done) }()
			select {
			case <-done:
			case <-dctx.Done():
			}
		})
	})
	return g.Wait()
}
