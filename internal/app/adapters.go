package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	goredis "github.com/redis/go-redis/v9"

	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/bus/rocketmq"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/flow"
	"github.com/imkube/imkube/internal/sessions"
	redissessions "github.com/imkube/imkube/internal/sessions/redis"
	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/services/sequence"
)

// Bus is every side of the bus a process may use.
type Bus interface {
	bus.UpstreamPublisher
	bus.UpstreamConsumer
	bus.PushPublisher
	bus.PushConsumer
	Close() error
}

// Adapters are the backends of one process, each opened once on first use
// and closed in reverse order by Close. Embedded (imkube dev) and
// Distributed (the service commands) implement it.
type Adapters interface {
	// Store is the message/user store with migrations applied.
	Store(ctx context.Context) (*store.DB, error)
	// Sessions is the session registry (user -> device -> gateway).
	Sessions(ctx context.Context) (sessions.Store, error)
	// Bus connects to the bus as client instance (role and id).
	Bus(ctx context.Context, instance string) (Bus, error)
	// Sequence allocates per-key sequence numbers for the message service
	// (m records in-process allocations; nil: none).
	Sequence(ctx context.Context, m *telemetry.Sequence) (sequence.Allocator, error)
	// SequenceBackend is the allocator the sequence service itself serves.
	SequenceBackend(ctx context.Context, m *telemetry.Sequence) (sequence.Allocator, error)
	// Keys are the JWT keys.
	Keys() (*auth.Keys, error)
	Close() error
}

// closers is an undo stack: Close runs what was opened, newest first.
type closers struct {
	mu  sync.Mutex
	fns []func() error
}

func (c *closers) push(fn func() error) {
	c.mu.Lock()
	c.fns = append(c.fns, fn)
	c.mu.Unlock()
}

func (c *closers) Close() error {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	var errs []error
	for i := len(fns) - 1; i >= 0; i-- {
		errs = append(errs, fns[i]())
	}
	return errors.Join(errs...)
}

// once memoises an adapter constructor.
type once[T any] struct {
	mu   sync.Mutex
	done bool
	v    T
}

func (o *once[T]) get(fn func() (T, error)) (T, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done {
		return o.v, nil
	}
	v, err := fn()
	if err != nil {
		var zero T
		return zero, err
	}
	o.v, o.done = v, true
	return v, nil
}

// Embedded are the adapters of `imkube dev`: the SQLite store in a data
// folder (a restart keeps users, messages and cursors), in-memory sessions,
// the in-process bus and the embedded sequence allocator on the same SQLite.
type Embedded struct {
	dir    string
	linger time.Duration // bus.InProcOptions.Linger
	closers
	db    once[*store.DB]
	sess  once[sessions.Store]
	bus   once[Bus]
	seq   once[sequence.Allocator]
	keys  once[*auth.Keys]
	clock func() time.Time
	// tokenTTL is the lifetime of login tokens (0: auth's default).
	tokenTTL time.Duration
}

// NewEmbedded returns the embedded adapters on data folder dir.
func NewEmbedded(dir string) *Embedded { return &Embedded{dir: dir, clock: time.Now} }

func (e *Embedded) Store(ctx context.Context) (*store.DB, error) {
	return e.db.get(func() (*store.DB, error) {
		db, err := store.OpenSQLite(ctx, e.dir)
		if err != nil {
			return nil, err
		}
		e.push(db.Close)
		return db, nil
	})
}

func (e *Embedded) Sessions(context.Context) (sessions.Store, error) {
	return e.sess.get(func() (sessions.Store, error) { return sessions.NewMemory(e.clock), nil })
}

func (e *Embedded) Bus(context.Context, string) (Bus, error) {
	return e.bus.get(func() (Bus, error) {
		b := bus.NewInProc(bus.InProcOptions{Linger: e.linger})
		e.push(b.Close)
		return b, nil
	})
}

func (e *Embedded) Sequence(ctx context.Context, m *telemetry.Sequence) (sequence.Allocator, error) {
	return e.SequenceBackend(ctx, m)
}

func (e *Embedded) SequenceBackend(ctx context.Context, m *telemetry.Sequence) (sequence.Allocator, error) {
	return e.seq.get(func() (sequence.Allocator, error) {
		db, err := e.Store(ctx)
		if err != nil {
			return nil, err
		}
		a, err := sequence.NewEmbedded(ctx, sequence.Config{}, sequence.Deps{DB: db.SQL(), Dialect: db.Dialect(), Metrics: m})
		if err != nil {
			return nil, fmt.Errorf("sequence allocator: %w", err)
		}
		e.push(a.Close)
		return a, nil
	})
}

func (e *Embedded) Keys() (*auth.Keys, error) {
	return e.keys.get(func() (*auth.Keys, error) {
		return auth.LoadOrCreateKeys(filepath.Join(e.dir, "jwt.key"), e.tokenTTL)
	})
}

// Distributed are the adapters of the service commands: MySQL, Redis,
// RocketMQ and the sequence service, as configured.
type Distributed struct {
	cfg config.Config
	log *slog.Logger
	closers
	dsn   once[string]
	db    once[*store.DB]
	sqldb once[*sql.DB]
	rdb   once[goredis.UniversalClient]
	sess  once[sessions.Store]
	bus   once[Bus]
	seq   once[sequence.Allocator]
	back  once[sequence.Allocator]
	keys  once[*auth.Keys]
}

// NewDistributed returns the adapters of cfg.
func NewDistributed(cfg config.Config, log *slog.Logger) *Distributed {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Distributed{cfg: cfg, log: log}
}

// mysqlDSN is the DSN of the configured database: the DSN's own, or
// mysql-database (created when it does not exist yet).
func (d *Distributed) mysqlDSN(ctx context.Context) (string, error) {
	return d.dsn.get(func() (string, error) {
		dsn, server, err := d.cfg.MySQL.DSNs()
		if err != nil || server == "" {
			return dsn, err
		}
		if err := ensureDatabase(ctx, dsn, server, d.cfg.MySQL.Database); err != nil {
			return "", err
		}
		return dsn, nil
	})
}

// ensureDatabase creates database name through server (the DSN without a
// database) when connecting to dsn says it does not exist (MySQL error
// 1049). A database created beforehand needs no CREATE privilege.
func ensureDatabase(ctx context.Context, dsn, server, name string) error {
	ping := func(dsn string) error {
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return err
		}
		defer db.Close()
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return db.PingContext(pctx)
	}
	err := ping(dsn)
	var me *mysql.MySQLError
	if err == nil || !errors.As(err, &me) || me.Number != 1049 {
		if err != nil {
			return fmt.Errorf("mysql database %s: %w", name, err)
		}
		return nil
	}
	db, err := sql.Open("mysql", server)
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	defer db.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	q := "CREATE DATABASE IF NOT EXISTS `" + strings.ReplaceAll(name, "`", "``") + "` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
	if _, err := db.ExecContext(cctx, q); err != nil {
		return fmt.Errorf("mysql: create database %s (mysql-database): %w; grant the DSN's user CREATE on it (GRANT ALL ON `%s`.* TO ...) or create it", name, err, name)
	}
	return nil
}

func (d *Distributed) Store(ctx context.Context) (*store.DB, error) {
	return d.db.get(func() (*store.DB, error) {
		dsn, err := d.mysqlDSN(ctx)
		if err != nil {
			return nil, err
		}
		db, err := store.OpenMySQL(ctx, dsn, store.PoolConfig{})
		if err != nil {
			return nil, fmt.Errorf("mysql: %w", err)
		}
		d.push(db.Close)
		return db, nil
	})
}

// SQL is a plain MySQL pool (no migrations), for the sequence service.
func (d *Distributed) SQL(ctx context.Context) (*sql.DB, error) {
	return d.sqldb.get(func() (*sql.DB, error) {
		dsn, err := d.mysqlDSN(ctx)
		if err != nil {
			return nil, err
		}
		db, err := sequence.OpenMySQL(ctx, dsn)
		if err != nil {
			return nil, err
		}
		d.push(db.Close)
		return db, nil
	})
}

// Redis connects in the configured mode and checks that Redis answers.
func (d *Distributed) Redis(ctx context.Context) (goredis.UniversalClient, error) {
	return d.rdb.get(func() (goredis.UniversalClient, error) {
		r := d.cfg.Redis
		addrs := strings.Split(r.Addr, ",")
		for i := range addrs {
			addrs[i] = strings.TrimSpace(addrs[i])
		}
		o := &goredis.UniversalOptions{
			Addrs: addrs, Password: r.Password, PoolSize: 64,
			DialTimeout: 5 * time.Second, ReadTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second,
		}
		var c goredis.UniversalClient
		switch r.Mode {
		case "cluster":
			c = goredis.NewClusterClient(o.Cluster())
		case "sentinel":
			o.MasterName = r.Master
			c = goredis.NewFailoverClient(o.Failover())
		default:
			c = goredis.NewClient(o.Simple())
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := c.Ping(pctx).Err(); err != nil {
			c.Close()
			return nil, fmt.Errorf("redis %s: %w", r.Addr, err)
		}
		d.push(c.Close)
		return c, nil
	})
}

func (d *Distributed) Sessions(ctx context.Context) (sessions.Store, error) {
	return d.sess.get(func() (sessions.Store, error) {
		rdb, err := d.Redis(ctx)
		if err != nil {
			return nil, err
		}
		return redissessions.New(rdb, redissessions.Options{Prefix: d.cfg.Redis.Prefix}), nil
	})
}

// WithBus makes d use b instead of RocketMQ (tests of a single role use
// the in-process bus, so they consume nobody else's records).
func (d *Distributed) WithBus(b Bus) *Distributed {
	d.bus.get(func() (Bus, error) { d.push(b.Close); return b, nil })
	return d
}

// Bus connects to RocketMQ. The client instance name is the process's
// instance (default: the host name, which is the pod name in Kubernetes) plus
// instance: stable across restarts of the same pod, so a restarted message
// service takes its queue locks back at once instead of waiting for the
// broker to expire them (60 s).
func (d *Distributed) Bus(_ context.Context, instance string) (Bus, error) {
	return d.bus.get(func() (Bus, error) {
		rocketmq.RouteClientLogs(d.log, slog.LevelWarn)
		q := d.cfg.RocketMQ
		b, err := rocketmq.New(rocketmq.Config{
			InstanceName:    d.cfg.Instance + "-" + instance,
			NameServers:     NameServers(q.NameServers),
			UpstreamTopic:   q.UpstreamTopic,
			PushTopic:       q.PushTopic,
			UpstreamGroup:   q.GroupPrefix + "imkube-message",
			PushGroupPrefix: q.GroupPrefix + "imkube-push-",
			ProducerGroup:   q.GroupPrefix + "imkube-producer",
			Logger:          d.log,
		})
		if err != nil {
			return nil, err
		}
		d.push(b.Close)
		return b, nil
	})
}

func (d *Distributed) Sequence(context.Context, *telemetry.Sequence) (sequence.Allocator, error) {
	return d.seq.get(func() (sequence.Allocator, error) {
		keys, err := d.Keys()
		if err != nil {
			return nil, err
		}
		c, err := sequence.NewClient(sequence.ClientConfig{URL: d.cfg.Message.SequenceURL, Token: keys.InternalToken(), BreakerResource: flow.ResSequence}, sequence.ClientDeps{})
		if err != nil {
			return nil, err
		}
		d.push(c.Close)
		return c, nil
	})
}

func (d *Distributed) SequenceBackend(ctx context.Context, m *telemetry.Sequence) (sequence.Allocator, error) {
	return d.back.get(func() (sequence.Allocator, error) {
		db, err := d.SQL(ctx)
		if err != nil {
			return nil, err
		}
		rdb, err := d.Redis(ctx)
		if err != nil {
			return nil, err
		}
		s := d.cfg.Sequence
		a, err := sequence.NewRedis(ctx, sequence.Config{Sections: s.Sections, Step: s.Step, KeyPrefix: s.RedisPrefix},
			sequence.Deps{DB: db, Dialect: sequence.DialectMySQL, Redis: rdb, Log: d.log, Metrics: m})
		if err != nil {
			return nil, err
		}
		d.push(a.Close)
		return a, nil
	})
}

func (d *Distributed) Keys() (*auth.Keys, error) {
	return d.keys.get(func() (*auth.Keys, error) { return auth.LoadKeys(d.cfg.Auth.JWTKeyFile, d.cfg.Auth.TokenTTL) })
}

// NameServers splits a RocketMQ name server list and resolves host names to
// IP addresses (the RocketMQ client accepts only IPs, while in Kubernetes
// name servers are Service names). A name that does not resolve is kept as
// given, so the client reports it.
func NameServers(list string) []string {
	var out []string
	for _, s := range strings.FieldsFunc(list, func(r rune) bool { return r == ';' || r == ',' }) {
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

var (
	_ Adapters = (*Embedded)(nil)
	_ Adapters = (*Distributed)(nil)
)
