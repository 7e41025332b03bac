package app

import (
	"context"
	"errors"
	"fmt"
	"github.com/imkube/imkube/internal/rest"
	"log/slog"
	"net/http"
	"time"

	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/flow"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/internal/snowflake"
	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/services/gateway"
	"github.com/imkube/imkube/services/message"
	"github.com/imkube/imkube/services/sequence"
	"github.com/imkube/imkube/services/user"
	"github.com/imkube/imkube/services/web"
)

// Component is what one role contributes to a process: routes on the HTTP
// port, long-lived loops, a readiness check and, for gateways, a drain.
type Component struct {
	Name string
	// Mount adds the role's routes (nil: none).
	Mount func(mux *http.ServeMux) error
	// Run are the role's loops; each returns when ctx ends.
	Run []func(ctx context.Context) error
	// Ready reports whether the role can serve (nil: always); the error
	// says which dependency is not ready and why.
	Ready func(ctx context.Context) error
	// Shutdown drains the role before its loops stop (nil: nothing to drain).
	Shutdown func(ctx context.Context) error
	// Deps are reachability checks of the external dependencies the role
	// uses, by name (telemetry.DependencyMySQL, ...); the process publishes
	// them as imkube_dependency_up (nil: none, e.g. in dev).
	Deps map[string]func(ctx context.Context) error
}

// builder builds one role's component in process p.
type builder func(ctx context.Context, p *Process) (*Component, error)

// builders in start order: a role may use what an earlier one put into the
// process (in dev, the gateway calls the message service in-process).
var builders = []struct {
	role  config.Role
	build builder
}{
	{config.RoleSequence, buildSequence},
	{config.RoleUser, buildUser},
	{config.RoleMessage, buildMessage},
	{config.RoleGateway, buildGateway},
}

func buildSequence(ctx context.Context, p *Process) (*Component, error) {
	m, err := telemetry.NewSequence(p.Tel.MeterProvider())
	if err != nil {
		return nil, err
	}
	p.instruments = append(p.instruments, m)
	p.seqMetrics = m
	if p.embedded {
		return &Component{Name: "sequence"}, nil // the message service allocates in-process
	}
	keys, err := p.Adapters.Keys()
	if err != nil {
		return nil, err
	}
	a, err := p.Adapters.SequenceBackend(ctx, m)
	if err != nil {
		return nil, err
	}
	c := &Component{Name: "sequence", Mount: func(mux *http.ServeMux) error {
		mux.Handle("POST /v1/seq", sequence.NewHandler(a, keys, p.Log, m))
		return nil
	}}
	if r, ok := a.(sequence.Readier); ok {
		c.Ready = named("sequence allocator", r.Ready)
	}
	if d, ok := p.Adapters.(*Distributed); ok {
		db, err := d.SQL(ctx)
		if err != nil {
			return nil, err
		}
		rdb, err := d.Redis(ctx)
		if err != nil {
			return nil, err
		}
		c.Deps = map[string]func(context.Context) error{
			telemetry.DependencyMySQL: db.PingContext,
			telemetry.DependencyRedis: func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		}
	}
	p.Log.Info("sequence service ready", "sections", p.Config.Sequence.Sections, "step", p.Config.Sequence.Step, "redisMode", p.Config.Redis.Mode)
	return c, nil
}

func buildUser(ctx context.Context, p *Process) (*Component, error) {
	db, err := p.Adapters.Store(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := p.Adapters.Keys()
	if err != nil {
		return nil, err
	}
	log := p.Log.With("svc", "user")
	uc, lifetime := p.Config.User, p.Config.Auth.SessionLifetime
	if p.opts.SessionLifetime > 0 {
		lifetime = p.opts.SessionLifetime
	}
	svc, err := user.New(user.Config{TrustProxy: !p.embedded, BcryptCost: p.opts.BcryptCost, SessionLifetime: lifetime,
		SignupBurst: uc.SignupBurst, SignupRefill: uc.SignupRefill, HashConcurrency: uc.HashConcurrency, HashQueueWait: uc.HashQueueWait,
		ReservedUsernames: uc.ReservedUsernames, DefaultDMPolicy: func() string { return p.Live.Get().Users.DefaultDMPolicy }},
		user.Deps{Store: db, Keys: keys, IDs: snowflake.New(p.Config.User.NodeID), Log: log})
	if err != nil {
		return nil, err
	}
	runs := p.revocations(ctx, keys, db)
	runs = append(runs, func(ctx context.Context) error { return pruneRevoked(ctx, db, log) })
	groups, err := user.NewGroups(user.GroupsConfig{MaxMembers: func() int { return p.Live.Get().Groups.MaxMembers }},
		user.GroupsDeps{Store: db, Users: svc})
	if err != nil {
		return nil, err
	}
	social, err := user.NewSocial(user.SocialConfig{}, db, svc)
	if err != nil {
		return nil, err
	}
	return &Component{Name: "user",
		Mount: func(mux *http.ServeMux) error {
			svc.Routes(mux)
			groups.Routes(mux)
			social.Routes(mux)
			mux.Handle("GET "+auth.RevocationsPath, auth.RevocationsHandler(keys, db))
			return nil
		},
		Run:   runs,
		Ready: named("mysql", db.Ping),
		Deps:  p.distributedDeps(map[string]func(context.Context) error{telemetry.DependencyMySQL: db.Ping}),
	}, nil
}

// revocations makes keys refuse revoked tokens, fed from src, and returns
// the loop that polls it, unless another role of this build attempt already
// did (in dev all roles share the keys). A retried build reuses the set.
func (p *Process) revocations(ctx context.Context, keys *auth.Keys, src auth.RevocationSource) []func(context.Context) error {
	if p.revocationsRun {
		return nil
	}
	p.revocationsRun = true
	r := keys.Revocations()
	if r == nil {
		r = auth.NewRevocations(src, 0, p.Log)
		if err := r.Sync(ctx); err != nil {
			p.Log.Warn("token revocations: first poll failed; retrying in the background", "err", err)
		}
		keys.SetRevocations(r)
	}
	return []func(context.Context) error{r.Run}
}

// pruneRevoked deletes revocations of expired tokens, ended login sessions
// and friend requests answered over 30 days ago, every 10 minutes.
func pruneRevoked(ctx context.Context, db *store.DB, log *slog.Logger) error {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := db.PruneRevoked(ctx, time.Now().Add(-time.Hour)); err != nil && ctx.Err() == nil {
			log.Warn("prune token revocations", "err", err)
		}
		if _, err := db.PruneSessions(ctx, time.Now().Add(-time.Hour)); err != nil && ctx.Err() == nil {
			log.Warn("prune ended login sessions", "err", err)
		}
	}
}

func buildMessage(ctx context.Context, p *Process) (*Component, error) {
	db, err := p.Adapters.Store(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := p.Adapters.Keys()
	if err != nil {
		return nil, err
	}
	seq, err := p.Adapters.Sequence(ctx, p.seqMetrics)
	if err != nil {
		return nil, err
	}
	sess, err := p.Adapters.Sessions(ctx)
	if err != nil {
		return nil, err
	}
	b, err := p.Adapters.Bus(ctx, "message")
	if err != nil {
		return nil, err
	}
	metrics, err := telemetry.NewMessage(p.Tel.MeterProvider())
	if err != nil {
		return nil, err
	}
	p.instruments = append(p.instruments, metrics)
	var mayRead func(ctx context.Context, user, conv string) error
	mp, err := p.buildMedia(db, &mayRead)
	if err != nil {
		return nil, err
	}
	var md message.Media
	if mp != nil {
		md = mp.svc
	}
	ig, err := p.buildIntegrations(db, sess)
	if err != nil {
		return nil, err
	}
	svc, err := message.New(message.Config{ReadDiffusionThreshold: func() int { return p.Live.Get().Groups.ReadDiffusionThreshold },
		RecallWindow: p.Config.Message.RecallWindow, EditWindow: p.Config.Message.EditWindow,
		DefaultDMPolicy: func() string { return p.Live.Get().Users.DefaultDMPolicy }},
		message.Deps{Store: db, Sequence: seq, Sessions: sess, Push: b, IDs: snowflake.New(p.Config.Message.NodeID),
			Log: p.Log.With("svc", "message"), Metrics: metrics, Tracer: p.tracer("imkube/message"),
			StoreGuard: func(fn func() error) error { return p.Flow.Guard(flow.ResMySQL, fn) }, Accounts: p.Accounts(db), Media: md, Clock: p.opts.Clock,
			Hooks: ig.hooks, Offline: ig.pusher, Admin: db, Revoke: func(rv auth.Revoked) {
				if r := keys.Revocations(); r != nil {
					r.AddReason(rv.TokenID, time.UnixMilli(rv.ExpiresAt), rv.Reason)
				}
			}})
	if err != nil {
		return nil, err
	}
	mayRead = svc.MayRead
	p.backend = svc
	c := &Component{Name: "message",
		Mount: func(mux *http.ServeMux) error {
			svc.Routes(mux, keys)
			svc.PushTokenRoutes(mux, keys)
			mountMediaOff(mux)
			return nil
		},
		Run: append([]func(context.Context) error{func(ctx context.Context) error { return svc.Run(ctx, b) },
			func(ctx context.Context) error { return svc.RunGroupEvents(ctx, db) }, svc.RunSocialEvents}, p.revocations(ctx, keys, db)...),
		Ready: named("mysql", db.Ping),
		Deps: p.distributedDeps(map[string]func(context.Context) error{
			telemetry.DependencyMySQL: db.Ping, telemetry.DependencyRocketMQ: p.rocketMQCheck(b)}),
	}
	c.Run = append(c.Run, ig.outbox.Run, ig.pusher.Run)
	if run, err := p.adminServer(svc); err != nil {
		return nil, err
	} else if run != nil {
		c.Run = append(c.Run, run)
	}
	if mp != nil {
		c.Mount = func(mux *http.ServeMux) error {
			svc.Routes(mux, keys)
			svc.PushTokenRoutes(mux, keys)
			mp.mount(mux, keys)
			return nil
		}
		c.Run = append(c.Run, mp.svc.Run)
		c.Ready = func(ctx context.Context) error {
			return errors.Join(named("mysql", db.Ping)(ctx), mp.objects.Ready(ctx))
		}
	}
	if l, ok := b.(interface{ UpstreamLag() (int64, bool) }); ok {
		c.Run = append(c.Run, func(ctx context.Context) error { return reportLag(ctx, l.UpstreamLag, metrics) })
	}
	return c, nil
}

// reportLag publishes this pod's own view of the consumer lag
// (imkube_message_consumer_lag, from its last pulls) every 10 s. The
// autoscalers use the broker-side imkube_broker_consumer_lag of the operator,
// which also grows while this consumer is stalled.
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

func buildGateway(ctx context.Context, p *Process) (*Component, error) {
	keys, err := p.Adapters.Keys()
	if err != nil {
		return nil, err
	}
	sess, err := p.Adapters.Sessions(ctx)
	if err != nil {
		return nil, err
	}
	cfg := p.gatewayConfig()
	b, err := p.Adapters.Bus(ctx, "gateway-"+cfg.ID)
	if err != nil {
		return nil, err
	}
	metrics, err := telemetry.NewGateway(p.Tel.MeterProvider())
	if err != nil {
		return nil, err
	}
	p.instruments = append(p.instruments, metrics)
	backend := p.backend
	gc := p.Config.Gateway
	if backend == nil {
		backend = messageapi.NewClient(gc.MessageURL, keys.InternalToken(), p.Flow.Transport(flow.ResMessage, nil))
	}
	deps := gateway.Deps{
		Tokens: keys, Upstream: b, Push: b, Pushes: b, Backend: backend, Sessions: sess, Log: p.Log.With("svc", "gateway"),
		Limiter: p.Flow, Connects: p.Flow, PublishGuard: func(fn func() error) error { return p.Flow.Guard(flow.ResPublish, fn) },
		Metrics: metrics, Tracer: p.tracer("imkube/gateway"),
	}
	node, err := gateway.New(cfg, deps)
	if err != nil {
		return nil, err
	}
	p.gateway, p.gatewayCfg, p.gatewayDeps = node, cfg, deps
	// Without the user or message role in this process: ask the user service.
	revRuns := p.revocations(ctx, keys, auth.NewRevocationsClient(gc.UserURL, keys.InternalToken(), p.Flow.Transport(flow.ResUser, nil)))
	c := &Component{Name: "gateway",
		Run: append([]func(context.Context) error{node.Run}, revRuns...),
		Shutdown: func(ctx context.Context) error {
			window := ShutdownTimeout // dev: clients are local
			if !p.embedded {
				window = gc.DrainTimeout
			}
			ctx, cancel := context.WithTimeout(ctx, window)
			defer cancel()
			err := node.Shutdown(ctx)
			if errors.Is(err, context.DeadlineExceeded) {
				return nil // the drain window ended; the remaining clients reconnect on their own
			}
			return err
		},
	}
	c.Mount = func(mux *http.ServeMux) error {
		mux.Handle("GET /ws", node)
		if !p.embedded {
			if err := gateway.ProxyRoutes(mux, gc.UserURL, gc.MessageURL, cfg.TrustedProxies, p.Log, p.Flow.Transport); err != nil {
				return err
			}
		}
		if p.embedded {
			mux.Handle("GET /", web.Handler()) // demo page and SDK
		} else {
			mux.Handle("/", web.Handler()) // GET only; other methods are refused by the handler
		}
		return nil
	}
	if !p.embedded {
		rdb, err := p.Adapters.(*Distributed).Redis(ctx)
		if err != nil {
			return nil, err
		}
		c.Ready = named("redis", func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
		c.Deps = p.distributedDeps(map[string]func(context.Context) error{
			telemetry.DependencyRedis:    func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
			telemetry.DependencyRocketMQ: p.rocketMQCheck(b)})
	}
	return c, nil
}

// gatewayConfig is the gateway's config from the process config, with the
// options' overrides (tests shorten timeouts and add hooks).
func (p *Process) gatewayConfig() gateway.Config {
	cfg := p.opts.Gateway
	gc := p.Config.Gateway
	if cfg.ID == "" {
		cfg.ID = gc.ID
		if p.embedded {
			cfg.ID = "dev"
		}
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = gc.MaxConnections
	}
	if cfg.HeartbeatInterval == 0 && !p.embedded {
		cfg.HeartbeatInterval = gc.HeartbeatInterval
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = gc.IdleTimeout
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = gc.PingInterval
	}
	if cfg.PresenceGrace == 0 {
		cfg.PresenceGrace = gc.PresenceGrace
	}
	if cfg.DrainRate == 0 {
		cfg.DrainRate = gc.DrainRate
	}
	if cfg.NotifyInterval == 0 {
		cfg.NotifyInterval = gc.NotifyInterval
		if cfg.NotifyInterval <= 0 {
			cfg.NotifyInterval = -1 // off
		}
	}
	if cfg.TrustedProxies == nil {
		cfg.TrustedProxies, _ = rest.ParseTrustedProxies(gc.TrustedProxies) // config.Validate checked them
	}
	if cfg.AllowedOrigins == nil {
		cfg.AllowedOrigins = gc.AllowedOrigins
		if p.embedded && cfg.AllowedOrigins == nil {
			// Local development: pages served by any local dev server may connect.
			cfg.AllowedOrigins = []string{"http://localhost:*", "http://127.0.0.1:*"}
		}
	}
	if cfg.MaxBodyBytes == nil {
		cfg.MaxBodyBytes = func() int { return p.Live.Get().Limits.MaxMessageBytes }
	}
	if cfg.PresenceEvents == nil {
		cfg.PresenceEvents = func() bool {
			w := p.Live.Get().Webhooks
			return w.WantsEvent(config.EventUserOnline) || w.WantsEvent(config.EventUserOffline)
		}
	}
	return cfg
}

// distributedDeps returns checks without its nil entries, or nil in dev
// (the embedded adapters have no external dependencies).
func (p *Process) distributedDeps(checks map[string]func(context.Context) error) map[string]func(context.Context) error {
	if p.embedded {
		return nil
	}
	out := map[string]func(context.Context) error{}
	for dep, check := range checks {
		if check != nil {
			out[dep] = check
		}
	}
	return out
}

// named prefixes a readiness error with the dependency's name.
func named(what string, ready func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := ready(ctx); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
}
