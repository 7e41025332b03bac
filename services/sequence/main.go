package sequence

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/imkube/imkube/services/runtime"
)

// ServiceConfig is the configuration of the `imkube sequence` process. Every field
// has a flag and an environment variable; the flag wins.
type ServiceConfig struct {
	Addr          string // --addr, IMKUBE_ADDR
	LogLevel      string // --log-level, IMKUBE_LOG_LEVEL: debug|info|warn|error
	RedisAddr     string // --redis-addr, IMKUBE_REDIS_ADDR: comma-separated host:port
	RedisMode     string // --redis-mode, IMKUBE_REDIS_MODE: standalone|sentinel|cluster
	RedisMaster   string // --redis-master, IMKUBE_REDIS_MASTER: master name in sentinel mode
	RedisPassword string // IMKUBE_REDIS_PASSWORD (env only: it comes from a Secret)
	RedisPrefix   string // --redis-prefix, IMKUBE_SEQ_REDIS_PREFIX
	MySQLDSN      string // --mysql-dsn, IMKUBE_MYSQL_DSN (go-sql-driver format)
	Sections      int    // --sections, IMKUBE_SEQ_SECTIONS
	Step          int64  // --step, IMKUBE_SEQ_STEP
}

// DefaultServiceConfig returns the defaults.
func DefaultServiceConfig() ServiceConfig {
	return ServiceConfig{
		Addr:        "127.0.0.1:8083",
		LogLevel:    "info",
		RedisMode:   "standalone",
		RedisMaster: "mymaster",
		RedisPrefix: "imkube:seq:",
		Sections:    DefaultSections,
		Step:        DefaultStep,
	}
}

// Validate checks c; the error names the field.
func (c ServiceConfig) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr (IMKUBE_ADDR) %q: want host:port: %w", c.Addr, err))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("log-level (IMKUBE_LOG_LEVEL) %q: want debug, info, warn or error", c.LogLevel))
	}
	if strings.TrimSpace(c.RedisAddr) == "" {
		errs = append(errs, errors.New("redis-addr (IMKUBE_REDIS_ADDR) is required"))
	}
	switch c.RedisMode {
	case "standalone", "sentinel", "cluster":
	default:
		errs = append(errs, fmt.Errorf("redis-mode (IMKUBE_REDIS_MODE) %q: want standalone, sentinel or cluster", c.RedisMode))
	}
	if c.RedisMode == "sentinel" && c.RedisMaster == "" {
		errs = append(errs, errors.New("redis-master (IMKUBE_REDIS_MASTER) is required in sentinel mode"))
	}
	if strings.ContainsAny(c.RedisPrefix, "{}") {
		errs = append(errs, fmt.Errorf("redis-prefix (IMKUBE_SEQ_REDIS_PREFIX) %q: braces are reserved", c.RedisPrefix))
	}
	if c.MySQLDSN == "" {
		errs = append(errs, errors.New("mysql-dsn (IMKUBE_MYSQL_DSN) is required"))
	} else if _, err := mysql.ParseDSN(c.MySQLDSN); err != nil {
		errs = append(errs, fmt.Errorf("mysql-dsn (IMKUBE_MYSQL_DSN): %w", err))
	}
	if c.Sections < 1 || c.Sections > 1<<20 {
		errs = append(errs, fmt.Errorf("sections (IMKUBE_SEQ_SECTIONS) %d: want 1..%d, and never change it once used", c.Sections, 1<<20))
	}
	if c.Step < 1 {
		errs = append(errs, fmt.Errorf("step (IMKUBE_SEQ_STEP) %d: want >= 1", c.Step))
	}
	if len(errs) > 0 {
		return fmt.Errorf("sequence config: %w", errors.Join(errs...))
	}
	return nil
}

// parseConfig applies env (through lookup) and then flags to the defaults.
func parseConfig(args []string, lookup func(string) (string, bool)) (ServiceConfig, error) {
	c := DefaultServiceConfig()
	var errs []error
	str := func(dst *string, env string) {
		if v, ok := lookup(env); ok {
			*dst = v
		}
	}
	str(&c.Addr, "IMKUBE_ADDR")
	str(&c.LogLevel, "IMKUBE_LOG_LEVEL")
	str(&c.RedisAddr, "IMKUBE_REDIS_ADDR")
	str(&c.RedisMode, "IMKUBE_REDIS_MODE")
	str(&c.RedisMaster, "IMKUBE_REDIS_MASTER")
	str(&c.RedisPassword, "IMKUBE_REDIS_PASSWORD")
	str(&c.RedisPrefix, "IMKUBE_SEQ_REDIS_PREFIX")
	str(&c.MySQLDSN, "IMKUBE_MYSQL_DSN")
	if v, ok := lookup("IMKUBE_SEQ_SECTIONS"); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("sections (IMKUBE_SEQ_SECTIONS) %q: not an integer", v))
		}
		c.Sections = n
	}
	if v, ok := lookup("IMKUBE_SEQ_STEP"); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("step (IMKUBE_SEQ_STEP) %q: not an integer", v))
		}
		c.Step = n
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("sequence config: %w", errors.Join(errs...))
	}
	fs := flag.NewFlagSet("sequence", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen address (env IMKUBE_ADDR)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug|info|warn|error (env IMKUBE_LOG_LEVEL)")
	fs.StringVar(&c.RedisAddr, "redis-addr", c.RedisAddr, "Redis addresses, comma-separated (env IMKUBE_REDIS_ADDR)")
	fs.StringVar(&c.RedisMode, "redis-mode", c.RedisMode, "standalone|sentinel|cluster (env IMKUBE_REDIS_MODE)")
	fs.StringVar(&c.RedisMaster, "redis-master", c.RedisMaster, "master name in sentinel mode (env IMKUBE_REDIS_MASTER)")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", c.RedisPrefix, "prefix of the Redis keys (env IMKUBE_SEQ_REDIS_PREFIX)")
	fs.StringVar(&c.MySQLDSN, "mysql-dsn", c.MySQLDSN, "MySQL DSN, go-sql-driver format (env IMKUBE_MYSQL_DSN)")
	fs.IntVar(&c.Sections, "sections", c.Sections, "number of sections; never change it once used (env IMKUBE_SEQ_SECTIONS)")
	fs.Int64Var(&c.Step, "step", c.Step, "bound raise per SQL write (env IMKUBE_SEQ_STEP)")
	if err := fs.Parse(args); err != nil {
		var usage strings.Builder
		fs.SetOutput(&usage)
		fs.PrintDefaults()
		return c, fmt.Errorf("sequence: %w\nflags:\n%s", err, usage.String())
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("sequence: unexpected arguments %q", fs.Args())
	}
	return c, c.Validate()
}

// Main runs the `imkube sequence` subcommand: the sequence service with
// values in Redis and bounds in MySQL, until ctx ends, then shuts down
// gracefully.
func Main(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	cfg, err := parseConfig(args, os.LookupEnv)
	if err != nil {
		return err
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel)) // validated
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	} else {
		log = slog.New(minLevel{log.Handler(), lvl})
	}
	return Run(ctx, cfg, stdout, log.With("svc", "sequence"))
}

// Run serves the sequence service with cfg until ctx ends.
func Run(ctx context.Context, cfg ServiceConfig, stdout io.Writer, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	db, err := openMySQL(ctx, cfg.MySQLDSN)
	if err != nil {
		return err
	}
	defer db.Close()
	rdb := newRedisClient(cfg)
	defer rdb.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = rdb.Ping(pctx).Err()
	cancel()
	if err != nil {
		return fmt.Errorf("sequence: redis at %s: %w", cfg.RedisAddr, err)
	}
	a, err := NewRedis(ctx, Config{Sections: cfg.Sections, Step: cfg.Step, KeyPrefix: cfg.RedisPrefix},
		Deps{DB: db, Dialect: DialectMySQL, Redis: rdb, Log: log})
	if err != nil {
		return err
	}
	defer a.Close()

	ln, err := runtime.Listen(cfg.Addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sequence service listening on http://%s (POST /v1/seq)\n", ln.Addr())
	log.Info("sequence service started", "addr", ln.Addr().String(), "sections", cfg.Sections, "step", cfg.Step, "redisMode", cfg.RedisMode)
	mux := http.NewServeMux()
	mux.Handle("/", NewHandler(a, log, nil))
	runtime.Health(mux, a.Ready)
	err = runtime.Serve(ctx, ln, mux, log, nil)
	log.Info("sequence service stopped")
	return err
}

func openMySQL(ctx context.Context, dsn string) (*sql.DB, error) {
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("sequence: mysql-dsn: %w", err)
	}
	if mc.Timeout == 0 {
		mc.Timeout = 5 * time.Second
	}
	if mc.ReadTimeout == 0 {
		mc.ReadTimeout = 10 * time.Second
	}
	if mc.WriteTimeout == 0 {
		mc.WriteTimeout = 10 * time.Second
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("sequence: mysql: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxLifetime(30 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sequence: mysql at %s: %w", mc.Addr, err)
	}
	return db, nil
}

func newRedisClient(cfg ServiceConfig) redis.UniversalClient {
	addrs := strings.Split(cfg.RedisAddr, ",")
	for i := range addrs {
		addrs[i] = strings.TrimSpace(addrs[i])
	}
	o := &redis.UniversalOptions{
		Addrs:        addrs,
		Password:     cfg.RedisPassword,
		PoolSize:     64,
		DialTimeout:  5 * time.Second,
		ReadTimeout:  3 * time.Second,
		WriteTimeout: 3 * time.Second,
	}
	switch cfg.RedisMode {
	case "cluster":
		return redis.NewClusterClient(o.Cluster())
	case "sentinel":
		o.MasterName = cfg.RedisMaster
		return redis.NewFailoverClient(o.Failover())
	default:
		return redis.NewClient(o.Simple())
	}
}

// minLevel drops records below min from h.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{m.h.WithAttrs(as), m.min}
}
func (m minLevel) WithGroup(name string) slog.Handler { return minLevel{m.h.WithGroup(name), m.min} }
