// Package app is imkube's one composition root. A process runs one or more
// roles (gateway, message, user, sequence) on one set of adapters: Embedded
// for `imkube dev` (all four roles, in-process bus, SQLite, memory sessions,
// embedded sequencer) or Distributed for the service commands (RocketMQ,
// MySQL, Redis, the sequence service). Start builds the adapters once, the
// process-wide parts (logger, telemetry, flow control, hot-reloaded cluster
// config), then each role's Component; it serves them on one HTTP port with
// health, readiness and metrics, runs their loops in one errgroup and owns
// the one bounded shutdown: not ready, stop accepting, drain gateways, stop
// loops, close adapters in reverse order.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/buildinfo"
	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/flow"
	"github.com/imkube/imkube/internal/media"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/internal/rest"
	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/services/gateway"
)

// ShutdownTimeout bounds the shutdown after the gateways' drain.
const ShutdownTimeout = 15 * time.Second

// Options are what a caller of Start adds to the configuration: the base
// logger and, for tests, overrides that have no flag.
type Options struct {
	// Log is the base logger (nil: discard); the configured level filters it.
	Log *slog.Logger
	// Cluster, if set, replaces the cluster file (limits, group settings).
	Cluster *config.Cluster
	// Gateway overrides the gateway config (tests shorten timeouts, add hooks).
	Gateway gateway.Config
	// BcryptCost for passwords (0: bcrypt's default).
	BcryptCost int
	// TokenTTL, if set, replaces the token lifetime (tests: below the 1 m
	// that configuration allows).
	TokenTTL time.Duration
	// SessionLifetime, if set, replaces the session lifetime (tests).
	SessionLifetime time.Duration
	// Tracer, if set, replaces the process's tracer provider.
	Tracer trace.TracerProvider
	// Adapters, if set, replaces the adapters chosen by the roles.
	Adapters Adapters
	// Objects, if set, replaces the media object store (tests run the dev
	// process on a real S3-compatible store).
	Objects media.Objects
	// Clock, if set, replaces the message and media services' time.Now
	// (tests of the recall and edit windows and of the orphan sweep).
	Clock func() time.Time
	// WaitForDependencies keeps a process whose dependencies are not reachable
	// yet running (not ready, /readyz says why) and retries with capped
	// backoff, instead of failing Start. The service commands set it.
	WaitForDependencies bool
	// WebhookRetryBase, if set, replaces the webhook outbox's first retry
	// delay (tests).
	WebhookRetryBase time.Duration
}

// Process is what the roles of one process share.
type Process struct {
	Config   config.Config
	Log      *slog.Logger
	Tel      *telemetry.Telemetry
	Flow     *flow.Controller
	Live     *config.Live
	Adapters Adapters

	opts     Options
	embedded bool
	// Set by builders for later ones and for Server.
	instruments []any // the telemetry instrument sets the roles built
	health      *telemetry.Health
	seqMetrics  *telemetry.Sequence
	backend     messageapi.Backend
	gateway     *gateway.Node
	gatewayCfg  gateway.Config
	gatewayDeps gateway.Deps
	// revocationsRun: a component of this build runs the token revocations' poll.
	revocationsRun bool
	accounts       *auth.Accounts
	media          *media.Service
	adminLn        net.Listener
	// AdminURL is http://host:port of the admin API ("" when it is off).
	AdminURL string
}

// Accounts returns the process's cache of which user ids have an account,
// in front of db (one per process, shared by the roles).
func (p *Process) Accounts(db *store.DB) *auth.Accounts {
	if p.accounts == nil {
		p.accounts = auth.NewAccounts(auth.AccountsConfig{}, db.UserExists)
	}
	return p.accounts
}

func (p *Process) tracer(name string) trace.Tracer {
	if p.opts.Tracer != nil {
		return p.opts.Tracer.Tracer(name)
	}
	return p.Tel.Tracer(name)
}

// Server is a running process.
type Server struct {
	// URL is http(s)://host:port of the HTTP port.
	URL string
	// InternalURL is http://host:port of the internal port (/metrics,
	// /healthz, /readyz, /debug/pprof), or URL when the process has none.
	InternalURL string
	// Process holds the shared parts (tests reach the store through it).
	Process *Process
	// Gateway is the process's gateway node (nil without the gateway role).
	Gateway *gateway.Node
	// Store is the process's store (nil when no role uses one).
	Store *store.DB
	// DataDir is the data folder in dev mode.
	DataDir string

	srv       *http.Server
	internal  *http.Server // nil: the probes are on srv
	handler   atomic.Pointer[handlerBox]
	roles     []config.Role
	comps     []*Component
	waiting   error // why the roles are not built yet (nil once active)
	loopErrs  map[string]error
	active    bool
	extra     []extraGateway
	mu        sync.Mutex
	notReady  atomic.Bool
	group     *errgroup.Group
	runCtx    context.Context
	stopRun   context.CancelFunc
	stop      context.CancelFunc
	done      chan error
	closeOnce sync.Once
}

type extraGateway struct {
	srv  *http.Server
	node *gateway.Node
}

// Start builds and starts a process running roles on cfg (validated here).
// RoleDev means all four roles on the Embedded adapters; otherwise the
// Distributed adapters. The process runs until ctx ends or Close.
func Start(ctx context.Context, cfg config.Config, roles []config.Role, opts Options) (s *Server, err error) {
	embedded := len(roles) == 1 && roles[0] == config.RoleDev
	for _, r := range roles {
		if err := cfg.Validate(r); err != nil {
			return nil, err
		}
	}
	if embedded {
		roles = []config.Role{config.RoleSequence, config.RoleUser, config.RoleMessage, config.RoleGateway}
	}
	base := opts.Log
	if base == nil {
		base = slog.New(slog.DiscardHandler)
	}
	name := string(roles[0])
	if embedded {
		name = "dev"
	}
	log := cfg.Logger(base, name)
	p := &Process{Config: cfg, Log: log, opts: opts, embedded: embedded}

	var undo closers
	defer func() {
		if err != nil {
			undo.Close()
		}
	}()
	switch {
	case opts.Adapters != nil:
		p.Adapters = opts.Adapters
	case embedded:
		e := NewEmbedded(cfg.Dev.Data)
		e.linger = cfg.Dev.BatchLinger
		e.tokenTTL = cfg.Auth.TokenTTL
		if opts.TokenTTL > 0 {
			e.tokenTTL = opts.TokenTTL
		}
		p.Adapters = e
	default:
		p.Adapters = NewDistributed(cfg, log)
	}
	undo.push(p.Adapters.Close)
	undo.push(func() error { // the admin API's listener (a build that failed after opening it)
		if p.adminLn != nil {
			p.adminLn.Close()
		}
		return nil
	})

	// Cluster config: the options', the file's, or the defaults.
	cluster := config.DefaultCluster()
	switch {
	case opts.Cluster != nil:
		cluster = *opts.Cluster
	case cfg.ClusterFile != "":
		b, err := os.ReadFile(cfg.ClusterFile)
		if err != nil {
			return nil, fmt.Errorf("config-file (IMKUBE_CONFIG_FILE): %w", err)
		}
		if cluster, err = config.ParseCluster(b); err != nil {
			return nil, err
		}
	}
	if err := cluster.Validate(); err != nil {
		return nil, err
	}
	p.Live = config.NewLive(cluster)

	instance := cfg.Instance
	if has(roles, config.RoleGateway) && !embedded {
		instance = cfg.Gateway.ID
	}
	if embedded {
		instance = "dev"
	}
	p.Tel, err = telemetry.New(ctx, telemetry.Config{ServiceName: "imkube-" + name, ServiceVersion: buildinfo.Version,
		InstanceID: instance, OTLPEndpoint: cfg.Telemetry.OTLPEndpoint, Logger: log})
	if err != nil {
		return nil, err
	}
	undo.push(func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return p.Tel.Shutdown(sctx)
	})
	if p.health, err = telemetry.NewHealth(p.Tel.MeterProvider()); err != nil {
		return nil, err
	}
	if needsFlow(roles) {
		logDir := cfg.Flow.LogDir
		if embedded {
			logDir = filepath.Join(cfg.Dev.Data, "sentinel")
		}
		p.Flow, err = flow.Init(flow.Config{App: "imkube-" + name, LogDir: logDir, RulesFile: cfg.Flow.RulesFile,
			MeterProvider: p.Tel.MeterProvider(), Log: log, Limits: func() config.Limits { return p.Live.Get().Limits }})
		if err != nil {
			return nil, err
		}
	}

	s = &Server{Process: p, done: make(chan error, 1), roles: roles}
	if embedded {
		s.DataDir = cfg.Dev.Data
	}
	var ln net.Listener
	scheme := "http"
	if gc := cfg.Gateway; has(roles, config.RoleGateway) && gc.TLSCertFile != "" {
		ln, err = ListenTLS(cfg.Addr, gc.TLSCertFile, gc.TLSKeyFile)
		scheme = "https"
	} else {
		ln, err = Listen(cfg.Addr)
	}
	if err != nil {
		return nil, err
	}
	undo.push(func() error { ln.Close(); return nil })
	s.URL = scheme + "://" + ln.Addr().String()
	s.InternalURL = s.URL
	var internalLn net.Listener
	if cfg.InternalAddr != "" {
		if internalLn, err = Listen(cfg.InternalAddr); err != nil {
			return nil, fmt.Errorf("internal port: %w", err)
		}
		undo.push(func() error { internalLn.Close(); return nil })
		s.InternalURL = "http://" + internalLn.Addr().String()
		mux := http.NewServeMux()
		s.mountInternal(mux, false)
		s.internal = newHTTPServer(mux, log, cfg.HTTP)
	}

	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	g, gctx := errgroup.WithContext(runCtx)
	s.group, s.runCtx, s.stopRun = g, gctx, stopRun

	// The first attempt at building the roles is synchronous; with
	// WaitForDependencies a dependency that is merely late (MySQL, Redis,
	// RocketMQ not up yet) is retried with capped backoff while the port
	// serves /healthz and a /readyz that names what is awaited.
	err = s.build(ctx)
	if err != nil && (!opts.WaitForDependencies || embedded) {
		stopRun()
		return nil, err
	}
	starting := http.NewServeMux()
	s.mountProbes(starting)
	s.handler.Store(&handlerBox{starting})
	s.srv = newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.handler.Load().h.ServeHTTP(w, r)
	}), log, cfg.HTTP)
	if err == nil {
		if err := s.activate(); err != nil {
			stopRun()
			return nil, err
		}
	} else {
		s.setWaiting(err)
		log.Warn("waiting for dependencies", "err", err)
		g.Go(func() error { return s.retryBuild(gctx) })
	}
	g.Go(func() error { return s.reportHealth(gctx, HealthInterval) })
	if cfg.ClusterFile != "" && opts.Cluster == nil && !embedded {
		g.Go(func() error { return p.Live.Watch(gctx, cfg.ClusterFile, 5*time.Second, log) })
	}
	if p.Flow != nil {
		g.Go(func() error { return p.Flow.Run(gctx) })
	}
	serveErr := make(chan error, 1)
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		serveErr <- err
	}()
	if s.internal != nil {
		go func() {
			if err := s.internal.Serve(internalLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("internal port stopped", "err", err)
			}
		}()
	}
	log.Info("listening", "addr", ln.Addr().String(), "internalAddr", s.InternalURL, "roles", roleNames(roles), "version", buildinfo.Version)

	stopCtx, stop := context.WithCancel(ctx)
	s.stop = stop
	go func() {
		var err error
		select {
		case <-stopCtx.Done():
		case <-gctx.Done(): // a loop failed
		case err = <-serveErr:
			serveErr <- err
		}
		s.done <- errors.Join(err, s.shutdown(serveErr), undo.Close())
	}()
	return s, nil
}

type handlerBox struct{ h http.Handler }

// build runs the roles' builders once; on success the components are
// ready to activate.
func (s *Server) build(ctx context.Context) error {
	p := s.Process
	p.instruments, p.backend, p.gateway, p.revocationsRun, p.media = nil, nil, nil, false, nil
	var comps []*Component
	for _, b := range builders {
		if !has(s.roles, b.role) {
			continue
		}
		c, err := b.build(ctx, p)
		if err != nil {
			return fmt.Errorf("%s: %w", b.role, err)
		}
		comps = append(comps, c)
	}
	var st *store.DB
	if has(s.roles, config.RoleUser) || has(s.roles, config.RoleMessage) {
		var err error
		if st, err = p.Adapters.Store(ctx); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.comps, s.Gateway, s.Store = comps, p.gateway, st
	s.mu.Unlock()
	return nil
}

// retryBuild retries build with capped exponential backoff (1 s to 30 s)
// until it succeeds or ctx ends, then activates the components.
func (s *Server) retryBuild(ctx context.Context) error {
	delay := time.Second
	for attempt := 2; ; attempt++ {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.build(bctx)
		cancel()
		if err == nil {
			s.Process.Log.Info("dependencies available", "attempt", attempt)
			return s.activate()
		}
		if ctx.Err() != nil {
			return nil
		}
		delay = min(2*delay, 30*time.Second)
		s.setWaiting(fmt.Errorf("%w (attempt %d, next in %s)", err, attempt, delay))
		s.Process.Log.Warn("waiting for dependencies", "err", err, "attempt", attempt, "retryIn", delay)
	}
}

// supervise runs one loop of component name. A loop that fails because a
// dependency is unavailable (bus.ErrUnavailable: the broker is not reachable
// yet or went away) is restarted with capped backoff while /readyz reports
// it; any other error ends the process.
func (s *Server) supervise(ctx context.Context, name string, run func(context.Context) error) error {
	delay := time.Second
	var clear *time.Timer
	defer func() {
		if clear != nil {
			clear.Stop()
		}
	}()
	for {
		start := time.Now()
		err := run(ctx)
		if err == nil || ctx.Err() != nil || !errors.Is(err, bus.ErrUnavailable) {
			return err
		}
		if time.Since(start) > time.Minute {
			delay = time.Second // it ran for a while: a new outage
		}
		s.setLoopErr(name, err)
		s.Process.Log.Warn("dependency unavailable; restarting", "component", name, "err", err, "retryIn", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
		// Cleared once the restarted loop has run for a while without failing.
		if clear != nil {
			clear.Stop()
		}
		clear = time.AfterFunc(10*time.Second, func() { s.setLoopErr(name, nil) })
	}
}

func (s *Server) setLoopErr(name string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loopErrs == nil {
		s.loopErrs = map[string]error{}
	}
	if err == nil {
		delete(s.loopErrs, name)
	} else {
		s.loopErrs[name] = err
	}
}

func (s *Server) setWaiting(err error) {
	s.mu.Lock()
	s.waiting = err
	s.mu.Unlock()
}

// mountProbes adds /healthz, /readyz and /metrics (and /debug/pprof when
// enabled) to the public port's mux when the process has no internal port,
// the same while the process waits for its dependencies and once it serves.
// `imkube dev` serves clients on the same port: its metrics and profiles are
// for this machine only (services export them for the cluster's Prometheus).
func (s *Server) mountProbes(mux *http.ServeMux) {
	if s.internal == nil {
		s.mountInternal(mux, true)
	}
}

// mountInternal adds what the internal port serves to mux; public says mux
// is the client port's.
func (s *Server) mountInternal(mux *http.ServeMux, public bool) {
	p := s.Process
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.readyz)
	guard := func(h http.Handler) http.Handler { return h }
	if public && p.embedded {
		guard = loopbackOnly
	}
	mux.Handle("GET /metrics", guard(p.Tel.Handler()))
	if p.Config.PProf {
		if public {
			guard = loopbackOnly
		}
		mux.Handle("GET /debug/pprof/", guard(http.HandlerFunc(pprof.Index)))
		mux.Handle("GET /debug/pprof/cmdline", guard(http.HandlerFunc(pprof.Cmdline)))
		mux.Handle("GET /debug/pprof/profile", guard(http.HandlerFunc(pprof.Profile)))
		mux.Handle("GET /debug/pprof/symbol", guard(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("GET /debug/pprof/trace", guard(http.HandlerFunc(pprof.Trace)))
	}
}

// activate mounts the built components and starts their loops.
func (s *Server) activate() error {
	p := s.Process
	s.mu.Lock()
	comps := s.comps
	s.mu.Unlock()
	mux := http.NewServeMux()
	for _, c := range comps {
		if c.Mount != nil {
			if err := c.Mount(mux); err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
		}
	}
	s.mountProbes(mux)
	var h http.Handler = mux
	s.mu.Lock()
	st := s.Store
	s.mu.Unlock()
	if st != nil {
		// Where the accounts are, a token must belong to one (REST; the
		// WebSocket asks at auth through the message service's State).
		keys, err := p.Adapters.Keys()
		if err != nil {
			return err
		}
		h = requireAccount(keys, p.Accounts(st), h)
	}
	if p.Flow != nil {
		h = guardREST(p.Flow, h)
	}
	if p.embedded && p.gateway != nil {
		h = knownHostsOnly(p.gateway.HostAllowed, h)
	}
	for _, c := range comps {
		for _, run := range c.Run {
			s.group.Go(func() error { return s.supervise(s.runCtx, c.Name, run) })
		}
	}
	s.mu.Lock()
	s.waiting, s.active = nil, true
	s.mu.Unlock()
	s.handler.Store(&handlerBox{h})
	return nil
}

// shutdown is the one bounded shutdown: readiness fails at once, the HTTP
// ports stop accepting, gateways drain (each bounded by its drain timeout),
// then the loops stop and are waited for. A bus consumer's loop stops
// gracefully (rocketmq.Bus: no new records, the handler calls in progress
// finish within Config.StopTimeout, their offsets reach the broker), so the
// store and the bus producer the handlers use close only after (undo, run
// by the caller after shutdown returns). The operator's
// terminationGracePeriodSeconds covers ShutdownTimeout plus that bound.
func (s *Server) shutdown(serveErr chan error) error {
	s.notReady.Store(true)
	s.Process.health.SetReady(false)
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	var errs []error
	s.mu.Lock()
	extra, comps := s.extra, s.comps
	if !s.active {
		comps = nil // never started: nothing to drain
	}
	s.mu.Unlock()
	errs = append(errs, s.srv.Shutdown(ctx))
	for _, e := range extra {
		errs = append(errs, e.srv.Shutdown(ctx))
	}
	dctx := context.WithoutCancel(ctx) // a drain has its own window (drain timeout)
	var wg sync.WaitGroup
	for _, c := range comps {
		if c.Shutdown != nil {
			wg.Add(1)
			go func() { defer wg.Done(); _ = c.Shutdown(dctx) }()
		}
	}
	for _, e := range extra {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(dctx, ShutdownTimeout)
			defer cancel()
			_ = e.node.Shutdown(sctx)
		}()
	}
	wg.Wait()
	if s.internal != nil {
		// Last: /readyz answers 503 and /metrics is scraped while draining.
		ictx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, s.internal.Shutdown(ictx))
		cancel()
	}
	s.stopRun()
	err := s.group.Wait()
	if e := <-serveErr; e != nil {
		errs = append(errs, e)
	}
	return errors.Join(append(errs, err)...)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.readiness(ctx); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ok\n"))
}

// readiness is nil when the process is ready, or says why not (what
// /readyz answers after "not ready: ").
func (s *Server) readiness(ctx context.Context) error {
	if s.notReady.Load() {
		return errors.New("shutting down")
	}
	s.mu.Lock()
	waiting, comps := s.waiting, s.comps
	var errs []string
	for name, err := range s.loopErrs {
		errs = append(errs, name+": "+err.Error())
	}
	s.mu.Unlock()
	if waiting != nil {
		return errors.New("waiting for dependencies: " + waiting.Error())
	}
	for _, c := range comps {
		if c.Ready == nil {
			continue
		}
		if err := c.Ready(ctx); err != nil {
			errs = append(errs, c.Name+": "+err.Error())
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// Instruments returns the telemetry instrument sets the process's roles
// built (the dashboard test records one value on each and scrapes Metrics).
func (s *Server) Instruments() []any {
	return append(slices.Clone(s.Process.instruments), s.Process.health)
}

// Media returns the process's media service (nil without the message role
// or an object store).
func (s *Server) Media() *media.Service { return s.Process.media }

// Metrics serves the process's /metrics.
func (s *Server) Metrics() http.Handler { return s.Process.Tel.Handler() }

// Close stops the process and waits for it.
func (s *Server) Close() error {
	s.stop()
	return s.Wait()
}

// Wait blocks until the process stops and returns why.
func (s *Server) Wait() error {
	err := <-s.done
	s.done <- err
	return err
}

// Components lists the names of the roles' components, in start order.
func (s *Server) Components() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.comps {
		out = append(out, c.Name)
	}
	return out
}

// AddGateway starts another gateway node with its own id and listener in
// this process, sharing the bus, sessions and services (tests use it to
// check fan-out across gateways). It stops with the server.
func (s *Server) AddGateway(id string) (url string, node *gateway.Node, err error) {
	p := s.Process
	if p.gateway == nil {
		return "", nil, errors.New("app: no gateway role in this process")
	}
	cfg := p.gatewayCfg
	cfg.ID = id
	node, err = gateway.New(cfg, p.gatewayDeps)
	if err != nil {
		return "", nil, err
	}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", node)
	srv := newHTTPServer(mux, p.Log, p.Config.HTTP)
	s.mu.Lock()
	s.extra = append(s.extra, extraGateway{srv: srv, node: node})
	s.mu.Unlock()
	s.group.Go(func() error { return node.Run(s.runCtx) })
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), node, nil
}

// StartDev starts `imkube dev` (all roles on the embedded adapters) on addr
// with data folder data and the built-in defaults otherwise.
func StartDev(ctx context.Context, addr, data string, opts Options) (*Server, error) {
	cfg := config.Defaults(config.RoleDev, "dev")
	cfg.Addr, cfg.Dev.Data = addr, data
	return Start(ctx, cfg, []config.Role{config.RoleDev}, opts)
}

// Run loads role's configuration from args and the environment, starts the
// process and serves until ctx ends. It is `imkube <role>`.
func Run(ctx context.Context, role config.Role, args []string, stdout io.Writer, log *slog.Logger) error {
	cfg, err := config.Load(role, args, os.LookupEnv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			config.Usage(stdout, role)
		}
		return err
	}
	s, err := Start(ctx, cfg, []config.Role{role}, Options{Log: log, WaitForDependencies: true})
	if err != nil {
		return err
	}
	if role == config.RoleDev {
		printDevURLs(stdout, s.URL, cfg.Dev.Data)
	}
	return s.Wait()
}

func printDevURLs(w io.Writer, url, data string) {
	host := url
	scheme, hostport, _ := strings.Cut(url, "://")
	if h, p, err := net.SplitHostPort(hostport); err == nil && (h == "0.0.0.0" || h == "::" || h == "") {
		host = scheme + "://127.0.0.1:" + p
	}
	fmt.Fprintf(w, "imkube dev is running (data in %s)\n  demo page:  %s/\n  WebSocket:  %s/ws\n  REST API:   %s/api/v1\n  health:     %s/healthz  %s/readyz\nPress Ctrl-C to stop.\n",
		data, host, "ws"+host[len("http"):], host, host, host)
}

// guardREST passes every REST request (/api/...) through flow control as
// inbound traffic (429/503 with Retry-After when a rule rejects it).
func guardREST(ctl *flow.Controller, next http.Handler) http.Handler {
	guarded := ctl.Middleware(flow.ResREST, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			guarded.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// knownHostsOnly refuses (421) requests whose Host is not a name of this
// server (gateway.Node.HostAllowed): a page of an attacker's domain
// resolved to a local address (DNS rebinding) would otherwise be
// same-origin with the dev server's REST API and page.
func knownHostsOnly(allowed func(host string) bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowed(r.Host) {
			http.Error(w, "unknown host "+strconv.Quote(r.Host)+": use localhost or an address, or add the origin to --allowed-origins", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackOnly serves next only to clients connected from a loopback
// address; others get 404, as if there were nothing.
func loopbackOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.NotFound(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireAccount applies rest.RequireAccount to the REST API (/api/...).
func requireAccount(v rest.Verifier, accounts rest.AccountChecker, next http.Handler) http.Handler {
	checked := rest.RequireAccount(v, accounts, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			checked.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func needsFlow(roles []config.Role) bool {
	return has(roles, config.RoleGateway) || has(roles, config.RoleMessage) || has(roles, config.RoleUser)
}

func has(roles []config.Role, r config.Role) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

func roleNames(roles []config.Role) string {
	var out []string
	for _, r := range roles {
		out = append(out, string(r))
	}
	return strings.Join(out, ",")
}
