// Package platform holds what the distributed service processes share: the
// flags/env of their dependencies (Redis, MySQL, RocketMQ, keys, cluster
// config), validation that names the bad field, and constructors that turn
// them into adapters.
package platform

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/flow"
	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/internal/version"
)

// Deps are the dependency settings of a service process.
type Deps struct {
	RedisAddr     string
	RedisPassword string
	RedisMode     string
	MySQLDSN      string
	Namesrv       string
	JWTKeyFile    string
	ConfigFile    string
	TokenTTL      time.Duration
}

// Bind registers the dependency flags (env defaults per the runtime contract).
func (d *Deps) Bind(fs *flag.FlagSet) {
	fs.StringVar(&d.RedisAddr, "redis-addr", config.Env("IMKUBE_REDIS_ADDR", ""), "Redis address(es), comma-separated (env IMKUBE_REDIS_ADDR)")
	fs.StringVar(&d.RedisMode, "redis-mode", config.Env("IMKUBE_REDIS_MODE", "standalone"), "standalone|sentinel|cluster (env IMKUBE_REDIS_MODE)")
	d.RedisPassword = os.Getenv("IMKUBE_REDIS_PASSWORD") // secrets only from env
	fs.StringVar(&d.MySQLDSN, "mysql-dsn", config.Env("IMKUBE_MYSQL_DSN", ""), "MySQL DSN, go-sql-driver format (env IMKUBE_MYSQL_DSN)")
	fs.StringVar(&d.Namesrv, "rocketmq-namesrv", config.Env("IMKUBE_ROCKETMQ_NAMESRV", ""), "RocketMQ name servers host:port;... (env IMKUBE_ROCKETMQ_NAMESRV)")
	fs.StringVar(&d.JWTKeyFile, "jwt-key-file", config.Env("IMKUBE_JWT_KEY_FILE", ""), "file with the JWT signing key(s), one per line, first signs (env IMKUBE_JWT_KEY_FILE)")
	fs.StringVar(&d.ConfigFile, "config-file", config.Env("IMKUBE_CONFIG_FILE", ""), "cluster config.json, hot-reloaded (env IMKUBE_CONFIG_FILE)")
	fs.DurationVar(&d.TokenTTL, "token-ttl", config.EnvDuration("IMKUBE_TOKEN_TTL", 24*time.Hour), "lifetime of login tokens (env IMKUBE_TOKEN_TTL)")
}

// Need lists dependencies a service requires.
type Need int

// Dependencies.
const (
	NeedRedis Need = 1 << iota
	NeedMySQL
	NeedRocketMQ
	NeedKeys
)

// Validate checks that the needed settings are present and well-formed.
func (d *Deps) Validate(need Need) error {
	var errs []error
	if need&NeedRedis != 0 {
		if d.RedisAddr == "" {
			errs = append(errs, errors.New("redis-addr (IMKUBE_REDIS_ADDR) is required"))
		}
		switch d.RedisMode {
		case "standalone", "sentinel", "cluster":
		default:
			errs = append(errs, fmt.Errorf("redis-mode (IMKUBE_REDIS_MODE) %q is not standalone|sentinel|cluster", d.RedisMode))
		}
	}
	if need&NeedMySQL != 0 && d.MySQLDSN == "" {
		errs = append(errs, errors.New("mysql-dsn (IMKUBE_MYSQL_DSN) is required"))
	}
	if need&NeedRocketMQ != 0 && d.Namesrv == "" {
		errs = append(errs, errors.New("rocketmq-namesrv (IMKUBE_ROCKETMQ_NAMESRV) is required"))
	}
	if need&NeedKeys != 0 && d.JWTKeyFile == "" {
		errs = append(errs, errors.New("jwt-key-file (IMKUBE_JWT_KEY_FILE) is required"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return nil
}

// Keys loads the JWT keys.
func (d *Deps) Keys() (*auth.Keys, error) { return auth.LoadKeys(d.JWTKeyFile, d.TokenTTL) }

// Store opens MySQL and applies migrations.
func (d *Deps) Store(ctx context.Context) (*store.DB, error) {
	return store.OpenMySQL(ctx, d.MySQLDSN, store.PoolConfig{})
}

// NameServers splits the RocketMQ name server list and resolves host names
// to IP addresses (the RocketMQ client accepts only IPs, while in Kubernetes
// name servers are Service names). A name that does not resolve is kept as
// given, so the client reports it.
func (d *Deps) NameServers() []string {
	var out []string
	for _, s := range strings.FieldsFunc(d.Namesrv, func(r rune) bool { return r == ';' || r == ',' }) {
		s = strings.TrimSpace(s)
		host, port, err := net.SplitHostPort(s)
		if err == nil && net.ParseIP(host) == nil {
			if ips, err := net.LookupHost(host); err == nil && len(ips) > 0 {
				for _, ip := range ips {
					out = append(out, net.JoinHostPort(ip, port))
				}
				continue
			}
		}
		out = append(out, s)
	}
	return out
}

// Cluster loads the cluster config (defaults when no file is configured) and
// returns a watcher to run for hot reload.
func (d *Deps) Cluster(log *slog.Logger) (*config.Live, func(ctx context.Context) error, error) {
	c := config.DefaultCluster()
	if d.ConfigFile == "" {
		return config.NewLive(c), func(ctx context.Context) error { <-ctx.Done(); return nil }, nil
	}
	b, err := os.ReadFile(d.ConfigFile)
	if err != nil {
		return nil, nil, fmt.Errorf("config-file: %w", err)
	}
	if c, err = config.ParseCluster(b); err != nil {
		return nil, nil, err
	}
	live := config.NewLive(c)
	return live, func(ctx context.Context) error { return live.Watch(ctx, d.ConfigFile, 5*time.Second, log) }, nil
}

// Telemetry starts the process's metrics and traces (OTLP when
// IMKUBE_OTLP_ENDPOINT is set) for service name svc.
func Telemetry(ctx context.Context, svc, instance string, log *slog.Logger) (*telemetry.Telemetry, error) {
	cfg := telemetry.Config{ServiceName: "imkube-" + svc, ServiceVersion: version.Version, InstanceID: instance, Logger: log}.FromEnv(os.Getenv)
	return telemetry.New(ctx, cfg)
}

// Flow starts Sentinel flow control for service svc: rules from
// IMKUBE_SENTINEL_RULES_FILE (the operator's ConfigMap; built-in defaults
// when unset), Sentinel's own log in IMKUBE_SENTINEL_LOG_DIR (default under
// the temp dir, which is writable with a read-only root filesystem), block
// counts on tel's /metrics. limits (optional) feeds config.json's per-user
// and per-IP limits.
func (d *Deps) Flow(svc string, tel *telemetry.Telemetry, log *slog.Logger, limits ...func() config.Limits) (*flow.Controller, error) {
	cfg := flow.Config{
		App:           "imkube-" + svc,
		LogDir:        config.Env("IMKUBE_SENTINEL_LOG_DIR", filepath.Join(os.TempDir(), "imkube-sentinel")),
		RulesFile:     config.Env("IMKUBE_SENTINEL_RULES_FILE", ""),
		MeterProvider: tel.MeterProvider(),
		Log:           log,
	}
	if len(limits) > 0 {
		cfg.Limits = limits[0]
	}
	return flow.Init(cfg)
}

// Process is a parsed and validated service command line.
type Process struct {
	Common config.Common
	Deps   Deps
	Log    *slog.Logger
}

// ParseFlags parses the command line of service name: the common and
// dependency flags, plus the service's own that extra registers; it checks
// the dependencies in need and returns the process logger (tagged svc=name).
// Validation errors name the bad flag and its environment variable.
func ParseFlags(name string, args []string, stdout io.Writer, defAddr string, need Need, log *slog.Logger, extra func(fs *flag.FlagSet)) (*Process, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	p := &Process{}
	p.Common.Bind(fs, defAddr)
	p.Deps.Bind(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := p.Common.Validate(); err != nil {
		return nil, err
	}
	if err := p.Deps.Validate(need); err != nil {
		return nil, err
	}
	p.Log = p.Common.Logger(log).With("svc", name)
	return p, nil
}
