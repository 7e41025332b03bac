// Package dev runs every imkube service in one process on embedded defaults:
// the in-process bus, the embedded SQLite store in a data folder, in-memory
// sessions and the embedded sequence allocator. It is what `imkube dev` and
// `make run` start, and what the end-to-end tests of the data plane use.
package dev

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/flow"
	"github.com/imkube/imkube/internal/sessions"
	"github.com/imkube/imkube/internal/snowflake"
	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/services/gateway"
	"github.com/imkube/imkube/services/message"
	"github.com/imkube/imkube/services/platform"
	"github.com/imkube/imkube/services/runtime"
	"github.com/imkube/imkube/services/sequence"
	"github.com/imkube/imkube/services/user"
)

// Config configures a dev server.
type Config struct {
	// Addr is the listen address (default 127.0.0.1:8080; port 0 picks one).
	Addr string
	// Data is the folder for the database and the JWT key.
	Data string
	// Cluster holds limits and group settings (default config.DefaultCluster).
	Cluster *config.Cluster
	// Gateway tunes the gateway (tests shorten timeouts and add hooks).
	Gateway gateway.Config
	// BcryptCost for passwords (default bcrypt's default).
	BcryptCost int
	Log        *slog.Logger
	// Tracer, if set, replaces the process's tracer provider (tests record
	// spans with it).
	Tracer trace.TracerProvider
}

// Server is a running dev platform.
type closer struct{ sequence.Allocator }

func (c closer) Close() error {
	if cl, ok := c.Allocator.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

type Server struct {
	URL     string // http://host:port
	DataDir string
	Store   *store.DB
	Gateway *gateway.Node

	deps   gateway.Deps
	gwCfg  gateway.Config
	runCtx context.Context
	group  *errgroup.Group
	cancel context.CancelFunc
	done   chan error
}

// Start opens the data folder, wires the services and serves until Close or
// ctx ends.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.Data == "" {
		return nil, errors.New("dev: data folder must be set")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cluster := config.DefaultCluster()
	if cfg.Cluster != nil {
		cluster = *cfg.Cluster
	}
	if err := cluster.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log

	// undo closes what was opened so far when a later step fails.
	var undo []func() error
	fail := func(err error) (*Server, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, err
	}
	db, err := store.OpenSQLite(ctx, cfg.Data)
	if err != nil {
		return nil, err
	}
	undo = append(undo, db.Close)
	keys, err := auth.LoadOrCreateKeys(filepath.Join(cfg.Data, "jwt.key"), 0)
	if err != nil {
		return fail(err)
	}
	seqAlloc, err := sequence.NewEmbedded(ctx, sequence.Config{}, sequence.Deps{DB: db.SQL(), Dialect: db.Dialect()})
	if err != nil {
		return fail(fmt.Errorf("sequence allocator: %w", err))
	}
	seq := closer{seqAlloc}
	undo = append(undo, seq.Close)
	ln, err := runtime.Listen(cfg.Addr)
	if err != nil {
		return fail(err)
	}
	undo = append(undo, ln.Close)
	tel, err := platform.Telemetry(ctx, "dev", "dev", log)
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() error { return tel.Shutdown(context.WithoutCancel(ctx)) })
	gwMetrics, err1 := telemetry.NewGateway(tel.MeterProvider())
	msgMetrics, err2 := telemetry.NewMessage(tel.MeterProvider())
	if err := errors.Join(err1, err2); err != nil {
		return fail(err)
	}
	var tp trace.TracerProvider = tel.TracerProvider()
	if cfg.Tracer != nil {
		tp = cfg.Tracer
	}
	live := config.NewLive(cluster)
	ctl, err := flow.Init(flow.Config{
		App: "imkube-dev", LogDir: filepath.Join(cfg.Data, "sentinel"), Log: log, MeterProvider: tel.MeterProvider(),
		Limits: func() config.Limits { return live.Get().Limits },
	})
	if err != nil {
		return fail(err)
	}
	b := bus.NewInProc(bus.InProcOptions{})
	undo = append(undo, b.Close)
	sess := sessions.NewMemory(time.Now)
	gen := snowflake.New(-1)
	users := user.New(db, keys, gen, log.With("svc", "user"), user.Options{BcryptCost: cfg.BcryptCost})
	groups := user.NewGroups(db, users, func() int { return live.Get().Groups.MaxMembers })
	msgs := message.New(db, seq, sess, b, gen, log.With("svc", "message"), message.Options{
		ReadDiffusionThreshold: func() int { return live.Get().Groups.ReadDiffusionThreshold },
		Metrics:                msgMetrics, Tracer: tp.Tracer("imkube/message"),
		StoreGuard: func(fn func() error) error { return ctl.Guard(flow.ResMySQL, fn) },
	})

	gwCfg := cfg.Gateway
	if gwCfg.ID == "" {
		gwCfg.ID = "dev"
	}
	if gwCfg.AllowedOrigins == nil {
		// Local development: pages served by any local dev server may connect.
		gwCfg.AllowedOrigins = []string{"http://localhost:*", "http://127.0.0.1:*"}
	}
	if gwCfg.MaxBodyBytes == nil {
		gwCfg.MaxBodyBytes = func() int { return live.Get().Limits.MaxMessageBytes }
	}
	gwDeps := gateway.Deps{
		Tokens: keys, Upstream: b, Push: b, Pushes: b, Backend: msgs, Sessions: sess, Log: log.With("svc", "gateway"),
		Limiter: ctl, Connects: ctl, PublishGuard: func(fn func() error) error { return ctl.Guard(flow.ResPublish, fn) },
		Metrics: gwMetrics, Tracer: tp.Tracer("imkube/gateway"),
	}
	gw, err := gateway.New(gwCfg, gwDeps)
	if err != nil {
		return fail(err)
	}

	mux := http.NewServeMux()
	users.Routes(mux)
	groups.Routes(mux)
	msgs.Routes(mux, keys)
	mux.Handle("GET /ws", gw)
	runtime.Health(mux, db.Ping)
	mux.Handle("GET /metrics", tel.Handler())
	mountWeb(mux)

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g, gctx := errgroup.WithContext(runCtx)
	s := &Server{URL: "http://" + ln.Addr().String(), DataDir: cfg.Data, Store: db, Gateway: gw, cancel: cancel, done: make(chan error, 1),
		deps: gwDeps, gwCfg: gwCfg, runCtx: gctx, group: g}
	go func() {
		g.Go(func() error { return msgs.Run(gctx, b) })
		g.Go(func() error { return ctl.Run(gctx) })
		g.Go(func() error { return gw.Run(gctx) })
		g.Go(func() error {
			return runtime.Serve(gctx, ln, mux, log, func(context.Context) { gw.Drain() })
		})
		err := g.Wait()
		b.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = errors.Join(err, seq.Close(), db.Close(), tel.Shutdown(sctx))
		s.done <- err
	}()
	go func() {
		select {
		case <-ctx.Done():
			cancel()
		case <-runCtx.Done():
		}
	}()
	return s, nil
}

// Close stops the server and waits for it.
func (s *Server) Close() error {
	s.cancel()
	return <-s.done
}

// Wait blocks until the server stops.
func (s *Server) Wait() error {
	err := <-s.done
	s.done <- err
	return err
}

// Main is `imkube dev`.
func Main(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stdout)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	data := fs.String("data", "./imkube-data", "data folder (database, JWT key)")
	cfgFile := fs.String("config", "", "cluster config.json (limits, groups); the built-in defaults when empty")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cluster *config.Cluster
	if *cfgFile != "" {
		b, err := os.ReadFile(*cfgFile)
		if err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		c, err := config.ParseCluster(b)
		if err != nil {
			return err
		}
		cluster = &c
	}
	s, err := Start(ctx, Config{Addr: *addr, Data: *data, Log: log, Cluster: cluster})
	if err != nil {
		return err
	}
	host := s.URL
	if h, p, err := net.SplitHostPort(s.URL[len("http://"):]); err == nil && (h == "0.0.0.0" || h == "::" || h == "") {
		host = "http://127.0.0.1:" + p
	}
	fmt.Fprintf(stdout, "imkube dev is running (data in %s)\n  demo page:  %s/\n  WebSocket:  %s/ws\n  REST API:   %s/api/v1\n  health:     %s/healthz  %s/readyz\nPress Ctrl-C to stop.\n",
		*data, host, "ws"+host[len("http"):], host, host, host)
	return s.Wait()
}

// AddGateway starts another gateway node with its own id and listener in
// this process, sharing the bus, sessions and services (tests use it to
// check fan-out across gateways). It stops with the server.
func (s *Server) AddGateway(id string) (url string, node *gateway.Node, err error) {
	cfg := s.gwCfg
	cfg.ID = id
	node, err = gateway.New(cfg, s.deps)
	if err != nil {
		return "", nil, err
	}
	ln, err := runtime.Listen("127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", node)
	s.group.Go(func() error { return node.Run(s.runCtx) })
	s.group.Go(func() error {
		return runtime.Serve(s.runCtx, ln, mux, s.deps.Log, func(context.Context) { node.Drain() })
	})
	return "http://" + ln.Addr().String(), node, nil
}
