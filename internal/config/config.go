// Package config is the one configuration of an imkube process: a typed
// Config with a section per dependency and per service, loaded by Load from
// defaults, then the environment, then command-line flags, and checked by
// Validate. Every Setting has a flag and (except secrets, env only) an
// IMKUBE_* variable; a malformed value is an error that names both. Each role
// (imkube gateway|message|user|sequence|dev) reads exactly the settings it
// uses, and `imkube <role> --help` lists exactly those.
//
// The hot-reloaded cluster file (config.json: limits and group settings that
// the operator writes into a ConfigMap) is Cluster/Live in cluster.go.
package config

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/imkube/imkube/internal/rest"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/imkube/imkube/internal/username"
)

// Role names a process role: one of the service commands, or dev (all four
// in one process on embedded adapters).
type Role string

// Roles.
const (
	RoleGateway  Role = "gateway"
	RoleMessage  Role = "message"
	RoleUser     Role = "user"
	RoleSequence Role = "sequence"
	RoleDev      Role = "dev"
)

// Roles lists the roles Load knows.
var Roles = []Role{RoleGateway, RoleMessage, RoleUser, RoleSequence, RoleDev}

var mysqlDatabaseRe = regexp.MustCompile(`^[A-Za-z0-9_$-]{1,64}$`)

// DSNs returns the DSN the services use (the DSN with Database in place of
// its database, when set) and the same DSN without a database, to create it.
func (m MySQL) DSNs() (dsn, server string, err error) {
	if m.Database == "" {
		return m.DSN, "", nil
	}
	cfg, err := mysql.ParseDSN(m.DSN)
	if err != nil {
		return "", "", fmt.Errorf("mysql-dsn (IMKUBE_MYSQL_DSN) is malformed: %w", err)
	}
	cfg.DBName = m.Database
	dsn = cfg.FormatDSN()
	cfg.DBName = ""
	return dsn, cfg.FormatDSN(), nil
}

// Config is the whole configuration of one process.
type Config struct {
	// Addr is the listen address of the process's HTTP port.
	Addr string
	// InternalAddr, if set, is the listen address of the internal port:
	// /metrics, /healthz, /readyz and (with PProf) /debug/pprof are served
	// there and not on Addr. Empty: they are served on Addr.
	InternalAddr string
	// PProf serves /debug/pprof on the internal port (or, without one, on
	// Addr to loopback clients only).
	PProf bool
	// LogLevel is debug|info|warn|error.
	LogLevel string
	// Instance names this process (pod name in Kubernetes): the RocketMQ
	// client instance and OpenTelemetry service.instance.id.
	Instance string

	HTTP      HTTP
	Redis     Redis
	MySQL     MySQL
	RocketMQ  RocketMQ
	Auth      Auth
	Telemetry Telemetry
	Flow      Flow
	// ClusterFile is config.json (limits, groups), hot-reloaded by polling;
	// empty: the built-in defaults (dev: read once at start).
	ClusterFile string

	Gateway  Gateway
	Message  Message
	User     User
	Sequence Sequence
	Dev      Dev
}

// HTTP bounds the requests of the process's HTTP port.
type HTTP struct {
	// ReadTimeout is the time a client has to send a request, headers and
	// body (WebSockets set their own deadlines once upgraded).
	ReadTimeout time.Duration
	// MaxBodyBytes is the largest request body accepted (413 beyond).
	MaxBodyBytes int
}

// Redis is the Redis connection (sessions, sequence values).
type Redis struct {
	Addr     string // comma-separated host:port
	Mode     string // standalone|sentinel|cluster
	Master   string // master name in sentinel mode
	Password string // env only
	Prefix   string // prefix of session keys
}

// MySQL is the MySQL/MariaDB connection.
type MySQL struct {
	DSN string // go-sql-driver format
	// Database, when set, replaces the DSN's database (created when missing
	// and the DSN's user may): one DSN Secret serves several isolated
	// platforms on one MySQL.
	Database string
}

// RocketMQ is the bus.
type RocketMQ struct {
	NameServers   string // host:port;...
	UpstreamTopic string
	PushTopic     string
	GroupPrefix   string // prefixes every consumer/producer group
}

// Auth holds the token settings.
type Auth struct {
	JWTKeyFile string        // one key per line; the first signs, all verify
	TokenTTL   time.Duration // lifetime of login tokens
	// SessionLifetime bounds refreshing: no token of a session expires
	// later than this after the login.
	SessionLifetime time.Duration
}

// Telemetry configures metrics and traces export.
type Telemetry struct {
	OTLPEndpoint string
}

// Flow configures Sentinel.
type Flow struct {
	RulesFile string // sentinel-rules.json; empty: built-in defaults
	LogDir    string // Sentinel's own log
}

// Gateway configures a WebSocket gateway.
type Gateway struct {
	ID                string
	MaxConnections    int
	HeartbeatInterval time.Duration
	// PingInterval is how often the gateway pings each WebSocket (0: a
	// third of IdleTimeout).
	PingInterval   time.Duration
	IdleTimeout    time.Duration
	DrainTimeout   time.Duration
	DrainRate      int
	TrustedProxies []string
	// PresenceGrace is how long a user whose last device disconnected may
	// come back before watchers hear "offline".
	PresenceGrace time.Duration
	// NotifyInterval coalesces read-diffusion notify frames: at most one
	// per connection and conversation per interval, the latest seq (0: off).
	NotifyInterval time.Duration
	AllowedOrigins []string
	UserURL        string
	MessageURL     string
	TLSCertFile    string
	TLSKeyFile     string
}

// Message configures the message service.
type Message struct {
	SequenceURL string
	NodeID      int64 // id generator node 0-1023, -1 random
	// RecallWindow and EditWindow: how long after sending the sender may
	// recall or edit a message (IMCluster spec.messages).
	RecallWindow time.Duration
	EditWindow   time.Duration
	// ObjectStore holds media uploads (empty Endpoint: media is off).
	ObjectStore ObjectStore
	// WebhookSecret signs webhook requests (HMAC-SHA256; env only).
	WebhookSecret string
	// AdminAddr is the listen address of the admin API (empty: off).
	AdminAddr string
	// AdminKey guards the admin API (env only; required with AdminAddr).
	AdminKey string
}

// ObjectStore is an S3-compatible object store (IMCluster
// spec.media.objectStore).
type ObjectStore struct {
	// Endpoint is http(s)://host[:port] of the S3 API as the services reach it.
	Endpoint string
	// PublicEndpoint, if set, is the endpoint presigned URLs name (what
	// clients reach; the services' Endpoint may be a cluster-internal name).
	PublicEndpoint string
	Bucket         string
	Region         string
	// PathStyle addresses the bucket as endpoint/bucket/key instead of
	// bucket.endpoint/key.
	PathStyle bool
	AccessKey string // env only
	SecretKey string // env only
}

// User configures the user service.
type User struct {
	NodeID int64
	// SignupBurst registrations per client IP at once, one more every
	// SignupRefill.
	SignupBurst  int
	SignupRefill time.Duration
	// HashConcurrency bounds concurrent password hashing (0: GOMAXPROCS);
	// a login or registration waits at most HashQueueWait for a slot.
	HashConcurrency int
	HashQueueWait   time.Duration
	// ReservedUsernames cannot be registered (any case or Unicode form).
	ReservedUsernames []string
}

// Sequence configures the sequence service.
type Sequence struct {
	RedisPrefix string
	Sections    int
	Step        int64
}

// Dev configures `imkube dev`.
type Dev struct {
	Data string // folder of the database and the JWT key
	// BatchLinger: how long an empty lane of the in-process bus waits for
	// more records before handing the message service a batch (0: none).
	BatchLinger time.Duration
}

// Defaults returns the built-in configuration of role (hostname names the
// process where a Setting defaults to it).
func Defaults(role Role, hostname string) Config {
	addr := map[Role]string{RoleGateway: "127.0.0.1:8080", RoleMessage: "127.0.0.1:8081", RoleUser: "127.0.0.1:8082",
		RoleSequence: "127.0.0.1:8083", RoleDev: "127.0.0.1:8080"}[role]
	return Config{
		Addr: addr, LogLevel: "info", Instance: hostname,
		Redis:    Redis{Mode: "standalone", Master: "mymaster", Prefix: "imkube:"},
		RocketMQ: RocketMQ{UpstreamTopic: "IM_UPSTREAM", PushTopic: "IM_PUSH"},
		HTTP:     HTTP{ReadTimeout: 30 * time.Second, MaxBodyBytes: 1 << 20},
		Auth:     Auth{TokenTTL: 24 * time.Hour, SessionLifetime: 30 * 24 * time.Hour},
		Flow:     Flow{LogDir: os.TempDir() + "/imkube-sentinel"},
		Gateway: Gateway{ID: hostname, MaxConnections: 100000, HeartbeatInterval: 10 * time.Second,
			IdleTimeout: 60 * time.Second, DrainTimeout: 30 * time.Second, DrainRate: 500, PresenceGrace: 10 * time.Second,
			NotifyInterval: 50 * time.Millisecond},
		Message: Message{NodeID: -1, RecallWindow: 120 * time.Second, EditWindow: 900 * time.Second,
			ObjectStore: ObjectStore{Region: "us-east-1", PathStyle: true}},
		User: User{NodeID: -1, SignupBurst: 20, SignupRefill: 30 * time.Second, HashQueueWait: 2 * time.Second,
			ReservedUsernames: append([]string(nil), username.Reserved...)},
		Sequence: Sequence{RedisPrefix: "imkube:seq:", Sections: 1024, Step: 10000},
		Dev:      Dev{Data: "./imkube-data"},
	}
}

// Setting is one configurable value: a flag, its variable and the roles that
// read it.
type Setting struct {
	flag, env, usage string
	roles            []Role
	secret           bool // env only, never printed
	bind             func(c *Config) value
}

// value parses into a Config field.
type value interface {
	set(s string) error
	get() string
}

type strVal struct{ p *string }

func (v strVal) set(s string) error { *v.p = s; return nil }
func (v strVal) get() string        { return *v.p }

type intVal struct{ p *int }

func (v intVal) set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not an integer")
	}
	*v.p = n
	return nil
}
func (v intVal) get() string { return strconv.Itoa(*v.p) }

type int64Val struct{ p *int64 }

func (v int64Val) set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return errors.New("not an integer")
	}
	*v.p = n
	return nil
}
func (v int64Val) get() string { return strconv.FormatInt(*v.p, 10) }

type durVal struct{ p *time.Duration }

func (v durVal) set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not a duration (e.g. 30s, 5m)")
	}
	*v.p = d
	return nil
}
func (v durVal) get() string { return v.p.String() }

type boolVal struct{ p *bool }

func (v boolVal) set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not a boolean (true or false)")
	}
	*v.p = b
	return nil
}
func (v boolVal) get() string { return strconv.FormatBool(*v.p) }

type listVal struct{ p *[]string }

func (v listVal) set(s string) error {
	*v.p = nil
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			*v.p = append(*v.p, e)
		}
	}
	return nil
}
func (v listVal) get() string { return strings.Join(*v.p, ",") }

var (
	services     = []Role{RoleGateway, RoleMessage, RoleUser, RoleSequence}
	withRedis    = []Role{RoleGateway, RoleMessage, RoleSequence}
	withMySQL    = []Role{RoleMessage, RoleUser, RoleSequence}
	withBus      = []Role{RoleGateway, RoleMessage}
	withKeys     = []Role{RoleGateway, RoleMessage, RoleUser, RoleSequence}
	withCluster  = []Role{RoleGateway, RoleMessage, RoleUser, RoleDev}
	withFlow     = []Role{RoleGateway, RoleMessage, RoleUser}
	withAccounts = []Role{RoleUser, RoleDev}
	all          = []Role{RoleGateway, RoleMessage, RoleUser, RoleSequence, RoleDev}
)

// settings is the table of every Setting. Two settings may share a flag name
// for different roles (the sequence service's --redis-prefix is its own).
var settings = []Setting{
	{flag: "addr", env: "IMKUBE_ADDR", usage: "listen address host:port", roles: all,
		bind: func(c *Config) value { return strVal{&c.Addr} }},
	{flag: "internal-addr", env: "IMKUBE_INTERNAL_ADDR", usage: "listen address host:port of the internal port (/metrics, /healthz, /readyz, /debug/pprof); empty: served on --addr", roles: all,
		bind: func(c *Config) value { return strVal{&c.InternalAddr} }},
	{flag: "pprof", env: "IMKUBE_PPROF", usage: "serve /debug/pprof on the internal port (without one: on --addr, to loopback clients only)", roles: all,
		bind: func(c *Config) value { return boolVal{&c.PProf} }},
	{flag: "log-level", env: "IMKUBE_LOG_LEVEL", usage: "debug|info|warn|error", roles: all,
		bind: func(c *Config) value { return strVal{&c.LogLevel} }},
	{flag: "instance-name", env: "IMKUBE_INSTANCE_NAME", usage: "process name (RocketMQ client instance, telemetry instance id; default: host name)", roles: withBus,
		bind: func(c *Config) value { return strVal{&c.Instance} }},
	{flag: "http-read-timeout", env: "IMKUBE_HTTP_READ_TIMEOUT", usage: "time a client has to send a whole request, headers and body (not WebSockets once upgraded)", roles: all,
		bind: func(c *Config) value { return durVal{&c.HTTP.ReadTimeout} }},
	{flag: "http-max-body-bytes", env: "IMKUBE_HTTP_MAX_BODY_BYTES", usage: "largest request body accepted (413 beyond)", roles: all,
		bind: func(c *Config) value { return intVal{&c.HTTP.MaxBodyBytes} }},
	{flag: "otlp-endpoint", env: "IMKUBE_OTLP_ENDPOINT", usage: "OTLP/HTTP endpoint for traces and metrics (optional)", roles: all,
		bind: func(c *Config) value { return strVal{&c.Telemetry.OTLPEndpoint} }},

	{flag: "redis-addr", env: "IMKUBE_REDIS_ADDR", usage: "Redis address(es), comma-separated", roles: withRedis,
		bind: func(c *Config) value { return strVal{&c.Redis.Addr} }},
	{flag: "redis-mode", env: "IMKUBE_REDIS_MODE", usage: "standalone|sentinel|cluster", roles: withRedis,
		bind: func(c *Config) value { return strVal{&c.Redis.Mode} }},
	{flag: "redis-master", env: "IMKUBE_REDIS_MASTER", usage: "master name in sentinel mode", roles: withRedis,
		bind: func(c *Config) value { return strVal{&c.Redis.Master} }},
	{env: "IMKUBE_REDIS_PASSWORD", usage: "Redis password (environment only)", roles: withRedis, secret: true,
		bind: func(c *Config) value { return strVal{&c.Redis.Password} }},
	{flag: "redis-prefix", env: "IMKUBE_REDIS_PREFIX", usage: "prefix of the session keys (share one Redis between platforms)", roles: []Role{RoleGateway, RoleMessage},
		bind: func(c *Config) value { return strVal{&c.Redis.Prefix} }},
	{flag: "redis-prefix", env: "IMKUBE_SEQ_REDIS_PREFIX", usage: "prefix of the sequence keys", roles: []Role{RoleSequence},
		bind: func(c *Config) value { return strVal{&c.Sequence.RedisPrefix} }},

	{flag: "mysql-dsn", env: "IMKUBE_MYSQL_DSN", usage: "MySQL/MariaDB DSN, go-sql-driver format (migrations run at start)", roles: withMySQL,
		bind: func(c *Config) value { return strVal{&c.MySQL.DSN} }},
	{flag: "mysql-database", env: "IMKUBE_MYSQL_DATABASE", usage: "database to use instead of the DSN's, created when missing (needs the CREATE privilege then)", roles: withMySQL,
		bind: func(c *Config) value { return strVal{&c.MySQL.Database} }},

	{flag: "rocketmq-namesrv", env: "IMKUBE_ROCKETMQ_NAMESRV", usage: "RocketMQ name servers host:port;... (host names are resolved)", roles: withBus,
		bind: func(c *Config) value { return strVal{&c.RocketMQ.NameServers} }},
	{flag: "upstream-topic", env: "IMKUBE_UPSTREAM_TOPIC", usage: "topic of client sends", roles: withBus,
		bind: func(c *Config) value { return strVal{&c.RocketMQ.UpstreamTopic} }},
	{flag: "push-topic", env: "IMKUBE_PUSH_TOPIC", usage: "topic of pushes to gateways", roles: withBus,
		bind: func(c *Config) value { return strVal{&c.RocketMQ.PushTopic} }},
	{flag: "bus-group-prefix", env: "IMKUBE_BUS_GROUP_PREFIX", usage: "prefix of every RocketMQ consumer/producer group", roles: withBus,
		bind: func(c *Config) value { return strVal{&c.RocketMQ.GroupPrefix} }},

	{flag: "jwt-key-file", env: "IMKUBE_JWT_KEY_FILE", usage: "file with the JWT key(s), one per line; the first signs, all verify (the internal service token derives from them)", roles: withKeys,
		bind: func(c *Config) value { return strVal{&c.Auth.JWTKeyFile} }},
	{flag: "token-ttl", env: "IMKUBE_TOKEN_TTL", usage: "lifetime of login tokens", roles: withAccounts,
		bind: func(c *Config) value { return durVal{&c.Auth.TokenTTL} }},
	{flag: "session-lifetime", env: "IMKUBE_SESSION_LIFETIME", usage: "no refreshed token outlives its login by more than this; then log in again", roles: withAccounts,
		bind: func(c *Config) value { return durVal{&c.Auth.SessionLifetime} }},
	{flag: "signup-burst", env: "IMKUBE_SIGNUP_BURST", usage: "registrations per client IP (IPv6: per /64) at once", roles: withAccounts,
		bind: func(c *Config) value { return intVal{&c.User.SignupBurst} }},
	{flag: "signup-refill", env: "IMKUBE_SIGNUP_REFILL", usage: "one more registration per client IP every this long", roles: withAccounts,
		bind: func(c *Config) value { return durVal{&c.User.SignupRefill} }},
	{flag: "hash-concurrency", env: "IMKUBE_HASH_CONCURRENCY", usage: "password hashes (bcrypt) computed at once; 0: one per CPU", roles: withAccounts,
		bind: func(c *Config) value { return intVal{&c.User.HashConcurrency} }},
	{flag: "hash-queue-wait", env: "IMKUBE_HASH_QUEUE_WAIT", usage: "how long a login or registration waits for a hashing slot before 503", roles: withAccounts,
		bind: func(c *Config) value { return durVal{&c.User.HashQueueWait} }},
	{flag: "reserved-usernames", env: "IMKUBE_RESERVED_USERNAMES", usage: "comma-separated usernames nobody may register (any case)", roles: withAccounts,
		bind: func(c *Config) value { return listVal{&c.User.ReservedUsernames} }},

	{flag: "config-file", env: "IMKUBE_CONFIG_FILE", usage: "cluster config.json (limits, groups), hot-reloaded", roles: []Role{RoleGateway, RoleMessage, RoleUser},
		bind: func(c *Config) value { return strVal{&c.ClusterFile} }},
	{flag: "config", env: "IMKUBE_CONFIG_FILE", usage: "cluster config.json (limits, groups); the built-in defaults when empty", roles: []Role{RoleDev},
		bind: func(c *Config) value { return strVal{&c.ClusterFile} }},
	{flag: "sentinel-rules-file", env: "IMKUBE_SENTINEL_RULES_FILE", usage: "Sentinel rules (JSON), hot-reloaded; built-in defaults when empty", roles: withFlow,
		bind: func(c *Config) value { return strVal{&c.Flow.RulesFile} }},
	{flag: "sentinel-log-dir", env: "IMKUBE_SENTINEL_LOG_DIR", usage: "Sentinel's own log directory", roles: withFlow,
		bind: func(c *Config) value { return strVal{&c.Flow.LogDir} }},

	{flag: "gateway-id", env: "IMKUBE_GATEWAY_ID", usage: "gateway id, unique per process; the pod name", roles: []Role{RoleGateway},
		bind: func(c *Config) value { return strVal{&c.Gateway.ID} }},
	{flag: "max-connections", env: "IMKUBE_MAX_CONNECTIONS", usage: "connections per gateway before 503", roles: []Role{RoleGateway, RoleDev},
		bind: func(c *Config) value { return intVal{&c.Gateway.MaxConnections} }},
	{flag: "heartbeat-interval", env: "IMKUBE_HEARTBEAT_INTERVAL", usage: "session heartbeat", roles: []Role{RoleGateway},
		bind: func(c *Config) value { return durVal{&c.Gateway.HeartbeatInterval} }},
	{flag: "ping-interval", env: "IMKUBE_PING_INTERVAL", usage: "WebSocket ping interval (default: a third of the idle timeout)", roles: []Role{RoleGateway},
		bind: func(c *Config) value { return durVal{&c.Gateway.PingInterval} }},
	{flag: "idle-timeout", env: "IMKUBE_IDLE_TIMEOUT", usage: "close connections idle this long", roles: []Role{RoleGateway},
		bind: func(c *Config) value { return durVal{&c.Gateway.IdleTimeout} }},
	{flag: "drain-timeout", env: "IMKUBE_DRAIN_TIMEOUT", usage: "how long shutdown waits for connections to move", roles: []Role{RoleGateway},
		bind: func(c *Config) value { return durVal{&c.Gateway.DrainTimeout} }},
	{flag: "trusted-proxies", env: "IMKUBE_TRUSTED_PROXIES", usage: "comma-separated CIDRs of the load balancers in front of the gateways whose X-Forwarded-For names the client", roles: []Role{RoleGateway},
		bind: func(c *Config) value { return listVal{&c.Gateway.TrustedProxies} }},
	{flag: "presence-grace", env: "IMKUBE_PRESENCE_GRACE", usage: "a user offline for less than this (a reconnect) is not announced offline", roles: []Role{RoleGateway},
		bind: func(c *Config) value { return durVal{&c.Gateway.PresenceGrace} }},
	{flag: "notify-interval", env: "IMKUBE_NOTIFY_INTERVAL", usage: "read diffusion: a connection gets at most one notify per conversation per interval, carrying the latest seq (0: every notify at once)", roles: []Role{RoleGateway, RoleDev},
		bind: func(c *Config) value { return durVal{&c.Gateway.NotifyInterval} }},
	{flag: "drain-rate", env: "IMKUBE_DRAIN_RATE", usage: "connections per second a stopping gateway asks to reconnect elsewhere", roles: []Role{RoleGateway},
		bind: func(c *Config) value { return intVal{&c.Gateway.DrainRate} }},
	{flag: "allowed-origins", env: "IMKUBE_ALLOWED_ORIGINS", usage: "comma-separated browser origins allowed besides the gateway's own host; scheme://host:* for any port, * for any", roles: []Role{RoleGateway},
		bind: func(c *Config) value { return listVal{&c.Gateway.AllowedOrigins} }},
	{flag: "user-url", env: "IMKUBE_USER_URL", usage: "base URL of the user service", roles: []Role{RoleGateway},
		bind: func(c *Config) value { return strVal{&c.Gateway.UserURL} }},
	{flag: "message-url", env: "IMKUBE_MESSAGE_URL", usage: "base URL of the message service", roles: []Role{RoleGateway},
		bind: func(c *Config) value { return strVal{&c.Gateway.MessageURL} }},
	{flag: "tls-cert-file", env: "IMKUBE_TLS_CERT_FILE", usage: "serve TLS (wss://, https://) with this PEM certificate", roles: []Role{RoleGateway},
		bind: func(c *Config) value { return strVal{&c.Gateway.TLSCertFile} }},
	{flag: "tls-key-file", env: "IMKUBE_TLS_KEY_FILE", usage: "PEM key of --tls-cert-file", roles: []Role{RoleGateway},
		bind: func(c *Config) value { return strVal{&c.Gateway.TLSKeyFile} }},

	{flag: "sequence-url", env: "IMKUBE_SEQUENCE_URL", usage: "base URL of the sequence service", roles: []Role{RoleMessage},
		bind: func(c *Config) value { return strVal{&c.Message.SequenceURL} }},
	{flag: "node-id", env: "IMKUBE_NODE_ID", usage: "message id generator node 0-1023, -1 random", roles: []Role{RoleMessage},
		bind: func(c *Config) value { return int64Val{&c.Message.NodeID} }},
	{flag: "s3-endpoint", env: "IMKUBE_S3_ENDPOINT", usage: "S3-compatible object store for media, http(s)://host[:port]; empty: media uploads are off", roles: []Role{RoleMessage},
		bind: func(c *Config) value { return strVal{&c.Message.ObjectStore.Endpoint} }},
	{flag: "s3-public-endpoint", env: "IMKUBE_S3_PUBLIC_ENDPOINT", usage: "endpoint that presigned URLs name, as clients reach it (default: --s3-endpoint)", roles: []Role{RoleMessage},
		bind: func(c *Config) value { return strVal{&c.Message.ObjectStore.PublicEndpoint} }},
	{flag: "s3-bucket", env: "IMKUBE_S3_BUCKET", usage: "bucket of media uploads (must exist)", roles: []Role{RoleMessage},
		bind: func(c *Config) value { return strVal{&c.Message.ObjectStore.Bucket} }},
	{flag: "s3-region", env: "IMKUBE_S3_REGION", usage: "region of the bucket", roles: []Role{RoleMessage},
		bind: func(c *Config) value { return strVal{&c.Message.ObjectStore.Region} }},
	{flag: "s3-path-style", env: "IMKUBE_S3_PATH_STYLE", usage: "address the bucket as endpoint/bucket (most S3-compatible stores) instead of bucket.endpoint", roles: []Role{RoleMessage},
		bind: func(c *Config) value { return boolVal{&c.Message.ObjectStore.PathStyle} }},
	{env: "IMKUBE_S3_ACCESS_KEY", usage: "object store access key (environment only)", roles: []Role{RoleMessage}, secret: true,
		bind: func(c *Config) value { return strVal{&c.Message.ObjectStore.AccessKey} }},
	{env: "IMKUBE_S3_SECRET_KEY", usage: "object store secret key (environment only)", roles: []Role{RoleMessage}, secret: true,
		bind: func(c *Config) value { return strVal{&c.Message.ObjectStore.SecretKey} }},
	{flag: "batch-linger", env: "IMKUBE_BATCH_LINGER", usage: "wait this long for more sends when a lane of the in-process bus was empty, before the message service takes a batch (0: no wait)", roles: []Role{RoleDev},
		bind: func(c *Config) value { return durVal{&c.Dev.BatchLinger} }},
	{flag: "recall-window", env: "IMKUBE_RECALL_WINDOW", usage: "how long after sending the sender may recall a message (group owners and admins: any time)", roles: []Role{RoleMessage, RoleDev},
		bind: func(c *Config) value { return durVal{&c.Message.RecallWindow} }},
	{flag: "edit-window", env: "IMKUBE_EDIT_WINDOW", usage: "how long after sending the sender may edit a message", roles: []Role{RoleMessage, RoleDev},
		bind: func(c *Config) value { return durVal{&c.Message.EditWindow} }},
	{env: "IMKUBE_WEBHOOK_SECRET", usage: "key of the webhooks' HMAC-SHA256 signature (environment only)", roles: []Role{RoleMessage, RoleDev}, secret: true,
		bind: func(c *Config) value { return strVal{&c.Message.WebhookSecret} }},
	{flag: "admin-addr", env: "IMKUBE_ADMIN_ADDR", usage: "listen address of the admin API (/admin/v1); empty: off. Never expose it publicly", roles: []Role{RoleMessage, RoleDev},
		bind: func(c *Config) value { return strVal{&c.Message.AdminAddr} }},
	{env: "IMKUBE_ADMIN_KEY", usage: "key of the admin API, sent as Authorization: Bearer <key> (environment only; at least 16 characters)", roles: []Role{RoleMessage, RoleDev}, secret: true,
		bind: func(c *Config) value { return strVal{&c.Message.AdminKey} }},
	{flag: "node-id", env: "IMKUBE_NODE_ID", usage: "id generator node 0-1023, -1 random", roles: []Role{RoleUser},
		bind: func(c *Config) value { return int64Val{&c.User.NodeID} }},

	{flag: "sections", env: "IMKUBE_SEQ_SECTIONS", usage: "number of sections; never change it once used", roles: []Role{RoleSequence},
		bind: func(c *Config) value { return intVal{&c.Sequence.Sections} }},
	{flag: "step", env: "IMKUBE_SEQ_STEP", usage: "bound raise per SQL write", roles: []Role{RoleSequence},
		bind: func(c *Config) value { return int64Val{&c.Sequence.Step} }},

	{flag: "data", env: "IMKUBE_DATA", usage: "data folder (database, JWT key)", roles: []Role{RoleDev},
		bind: func(c *Config) value { return strVal{&c.Dev.Data} }},
}

func (s Setting) has(role Role) bool {
	for _, r := range s.roles {
		if r == role {
			return true
		}
	}
	return false
}

// name is how errors name the Setting: the flag and its variable.
func (s Setting) name() string {
	if s.flag == "" {
		return s.env
	}
	return fmt.Sprintf("%s (%s)", s.flag, s.env)
}

// Env looks up an environment variable (os.LookupEnv in a real process).
type Env func(string) (string, bool)

// Load builds the configuration of role: defaults, then the environment
// (env), then the command line (args). A malformed value is an error naming
// the flag and the variable; -h/--help returns an error wrapping
// flag.ErrHelp (print Usage). Load does not validate: call Validate.
func Load(role Role, args []string, env Env) (Config, error) {
	if !knownRole(role) {
		return Config{}, fmt.Errorf("config: unknown role %q", role)
	}
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	host, _ := env("HOSTNAME")
	if host == "" {
		host, _ = os.Hostname()
	}
	c := Defaults(role, host)
	var errs []error
	for _, s := range settings {
		if !s.has(role) {
			continue
		}
		if v, ok := env(s.env); ok {
			if err := s.bind(&c).set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s %q: %w", s.name(), v, err))
			}
		}
	}
	fs := flag.NewFlagSet(string(role), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, s := range settings {
		if !s.has(role) || s.secret {
			continue
		}
		s := s
		fs.Func(s.flag, s.usage, func(v string) error {
			if err := s.bind(&c).set(v); err != nil {
				return fmt.Errorf("%s %q: %w", s.name(), v, err)
			}
			return nil
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, fmt.Errorf("imkube %s: %w", role, flag.ErrHelp)
		}
		errs = append(errs, fmt.Errorf("invalid command line: %w (run 'imkube %s --help')", err, role))
	} else if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return c, nil
}

func knownRole(role Role) bool {
	for _, r := range Roles {
		if r == role {
			return true
		}
	}
	return false
}

// Usage writes the settings role reads: flag, variable, default, meaning.
func Usage(w io.Writer, role Role) {
	def := Defaults(role, "<host name>")
	fmt.Fprintf(w, "Usage: imkube %s [flags]\n\nEvery flag can be set by its environment variable; the flag wins.\n\n", role)
	rows := SettingsOf(role)
	for _, s := range rows {
		if s.secret {
			fmt.Fprintf(w, "  %-22s (environment only) %s\n", s.env, s.usage)
			continue
		}
		d := s.bind(&def).get()
		if d != "" {
			d = " (default " + d + ")"
		}
		fmt.Fprintf(w, "  --%-20s %s\n      %s%s\n", s.flag, s.env, s.usage, d)
	}
}

// SettingsOf lists the settings role reads, in the table's order.
func SettingsOf(role Role) []Setting {
	var out []Setting
	for _, s := range settings {
		if s.has(role) {
			out = append(out, s)
		}
	}
	return out
}

// Flag is the Setting's flag name ("" for environment-only secrets).
func (s Setting) Flag() string { return s.flag }

// EnvVar is the Setting's environment variable.
func (s Setting) EnvVar() string { return s.env }

// Validate checks what role needs; the error names every bad Setting with
// its flag and variable.
func (c Config) Validate(role Role) error {
	var errs []error
	bad := func(flag, env, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s (%s) %s", flag, env, fmt.Sprintf(format, args...)))
	}
	in := func(rs []Role) bool { return Setting{roles: rs}.has(role) }

	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		bad("addr", "IMKUBE_ADDR", "%q: want host:port", c.Addr)
	}
	if c.InternalAddr != "" {
		if _, port, err := net.SplitHostPort(c.InternalAddr); err != nil {
			bad("internal-addr", "IMKUBE_INTERNAL_ADDR", "%q: want host:port", c.InternalAddr)
		} else if c.InternalAddr == c.Addr && port != "0" {
			bad("internal-addr", "IMKUBE_INTERNAL_ADDR", "%q: must differ from addr", c.InternalAddr)
		}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil || !oneOf(c.LogLevel, "debug", "info", "warn", "error") {
		bad("log-level", "IMKUBE_LOG_LEVEL", "%q: want debug, info, warn or error", c.LogLevel)
	}
	if c.Telemetry.OTLPEndpoint != "" {
		if _, err := url.Parse(c.Telemetry.OTLPEndpoint); err != nil {
			bad("otlp-endpoint", "IMKUBE_OTLP_ENDPOINT", "%q: %v", c.Telemetry.OTLPEndpoint, err)
		}
	}
	if in(withRedis) {
		if strings.TrimSpace(c.Redis.Addr) == "" {
			bad("redis-addr", "IMKUBE_REDIS_ADDR", "is required")
		}
		if !oneOf(c.Redis.Mode, "standalone", "sentinel", "cluster") {
			bad("redis-mode", "IMKUBE_REDIS_MODE", "%q: want standalone, sentinel or cluster", c.Redis.Mode)
		}
		if c.Redis.Mode == "sentinel" && c.Redis.Master == "" {
			bad("redis-master", "IMKUBE_REDIS_MASTER", "is required in sentinel mode")
		}
	}
	if in(withMySQL) {
		if c.MySQL.DSN == "" {
			bad("mysql-dsn", "IMKUBE_MYSQL_DSN", "is required")
		} else if _, err := mysql.ParseDSN(c.MySQL.DSN); err != nil {
			bad("mysql-dsn", "IMKUBE_MYSQL_DSN", "is malformed: %v", err)
		}
		if d := c.MySQL.Database; d != "" && !mysqlDatabaseRe.MatchString(d) {
			bad("mysql-database", "IMKUBE_MYSQL_DATABASE", "%q: want 1-64 of A-Z a-z 0-9 _ $ -", d)
		}
	}
	if role == RoleMessage {
		if o := c.Message.ObjectStore; o.Endpoint != "" {
			for _, e := range []struct{ flag, env, v string }{{"s3-endpoint", "IMKUBE_S3_ENDPOINT", o.Endpoint}, {"s3-public-endpoint", "IMKUBE_S3_PUBLIC_ENDPOINT", o.PublicEndpoint}} {
				if u, err := url.Parse(e.v); e.v != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/")) {
					bad(e.flag, e.env, "%q: want http(s)://host[:port] with no path", e.v)
				}
			}
			if o.Bucket == "" {
				bad("s3-bucket", "IMKUBE_S3_BUCKET", "is required with --s3-endpoint")
			}
			if o.AccessKey == "" || o.SecretKey == "" {
				bad("s3-endpoint", "IMKUBE_S3_ENDPOINT", "needs IMKUBE_S3_ACCESS_KEY and IMKUBE_S3_SECRET_KEY in the environment")
			}
		}
	}
	if in(withBus) {
		if strings.TrimSpace(c.RocketMQ.NameServers) == "" {
			bad("rocketmq-namesrv", "IMKUBE_ROCKETMQ_NAMESRV", "is required")
		}
		if c.RocketMQ.UpstreamTopic == "" || c.RocketMQ.PushTopic == "" {
			bad("upstream-topic/push-topic", "IMKUBE_UPSTREAM_TOPIC/IMKUBE_PUSH_TOPIC", "must not be empty")
		}
	}
	if in(withKeys) && c.Auth.JWTKeyFile == "" {
		bad("jwt-key-file", "IMKUBE_JWT_KEY_FILE", "is required")
	}
	if in(withAccounts) {
		if c.Auth.TokenTTL < time.Minute {
			bad("token-ttl", "IMKUBE_TOKEN_TTL", "%s: want at least 1m", c.Auth.TokenTTL)
		}
		if c.Auth.SessionLifetime < c.Auth.TokenTTL {
			bad("session-lifetime", "IMKUBE_SESSION_LIFETIME", "%s: want at least the token-ttl %s", c.Auth.SessionLifetime, c.Auth.TokenTTL)
		}
		u := c.User
		if u.SignupBurst < 1 {
			bad("signup-burst", "IMKUBE_SIGNUP_BURST", "%d: want >= 1", u.SignupBurst)
		}
		if u.SignupRefill <= 0 {
			bad("signup-refill", "IMKUBE_SIGNUP_REFILL", "%s: want > 0", u.SignupRefill)
		}
		if u.HashConcurrency < 0 {
			bad("hash-concurrency", "IMKUBE_HASH_CONCURRENCY", "%d: want >= 0 (0: one per CPU)", u.HashConcurrency)
		}
		if u.HashQueueWait <= 0 {
			bad("hash-queue-wait", "IMKUBE_HASH_QUEUE_WAIT", "%s: want > 0", u.HashQueueWait)
		}
	}
	if role == RoleMessage || role == RoleDev {
		for _, w := range []struct {
			flag, env string
			v         time.Duration
		}{{"recall-window", "IMKUBE_RECALL_WINDOW", c.Message.RecallWindow}, {"edit-window", "IMKUBE_EDIT_WINDOW", c.Message.EditWindow}} {
			if w.v < time.Second || w.v > 7*24*time.Hour {
				bad(w.flag, w.env, "%s: want 1s..168h", w.v)
			}
		}
		if a := c.Message.AdminAddr; a != "" {
			if _, _, err := net.SplitHostPort(a); err != nil {
				bad("admin-addr", "IMKUBE_ADMIN_ADDR", "%q: want host:port", a)
			}
			if len(c.Message.AdminKey) < 16 {
				bad("admin-addr", "IMKUBE_ADMIN_ADDR", "needs IMKUBE_ADMIN_KEY (at least 16 characters) in the environment")
			}
		}
	}
	if c.HTTP.ReadTimeout < time.Second {
		bad("http-read-timeout", "IMKUBE_HTTP_READ_TIMEOUT", "%s: want at least 1s", c.HTTP.ReadTimeout)
	}
	if c.HTTP.MaxBodyBytes < 4096 {
		bad("http-max-body-bytes", "IMKUBE_HTTP_MAX_BODY_BYTES", "%d: want at least 4096", c.HTTP.MaxBodyBytes)
	}
	switch role {
	case RoleGateway:
		g := c.Gateway
		if g.ID == "" || strings.ContainsAny(g.ID, " :/") {
			bad("gateway-id", "IMKUBE_GATEWAY_ID", "%q: must be set and contain no spaces, ':' or '/'", g.ID)
		}
		checkConnections(bad, g)
		if g.HeartbeatInterval <= 0 {
			bad("heartbeat-interval", "IMKUBE_HEARTBEAT_INTERVAL", "%s: want > 0", g.HeartbeatInterval)
		}
		if g.IdleTimeout <= 0 {
			bad("idle-timeout", "IMKUBE_IDLE_TIMEOUT", "%s: want > 0", g.IdleTimeout)
		}
		if g.PingInterval < 0 || (g.PingInterval > 0 && g.PingInterval >= g.IdleTimeout) {
			bad("ping-interval", "IMKUBE_PING_INTERVAL", "%s: want > 0 and below the idle timeout (%s)", g.PingInterval, g.IdleTimeout)
		}
		if g.DrainTimeout < 0 {
			bad("drain-timeout", "IMKUBE_DRAIN_TIMEOUT", "%s: want >= 0", g.DrainTimeout)
		}
		if _, err := rest.ParseTrustedProxies(g.TrustedProxies); err != nil {
			bad("trusted-proxies", "IMKUBE_TRUSTED_PROXIES", "%v", err)
		}
		if g.PresenceGrace <= 0 || g.PresenceGrace > time.Hour {
			bad("presence-grace", "IMKUBE_PRESENCE_GRACE", "%s: want > 0 and <= 1h", g.PresenceGrace)
		}
		if g.DrainRate < 1 {
			bad("drain-rate", "IMKUBE_DRAIN_RATE", "%d: want >= 1", g.DrainRate)
		}
		checkURL(bad, "user-url", "IMKUBE_USER_URL", g.UserURL)
		checkURL(bad, "message-url", "IMKUBE_MESSAGE_URL", g.MessageURL)
		if (g.TLSCertFile == "") != (g.TLSKeyFile == "") {
			bad("tls-cert-file/tls-key-file", "IMKUBE_TLS_CERT_FILE/IMKUBE_TLS_KEY_FILE", "must be set together")
		}
	case RoleMessage:
		checkURL(bad, "sequence-url", "IMKUBE_SEQUENCE_URL", c.Message.SequenceURL)
		if c.Message.NodeID < -1 || c.Message.NodeID > 1023 {
			bad("node-id", "IMKUBE_NODE_ID", "%d: want 0..1023 or -1", c.Message.NodeID)
		}
	case RoleUser:
		if c.User.NodeID < -1 || c.User.NodeID > 1023 {
			bad("node-id", "IMKUBE_NODE_ID", "%d: want 0..1023 or -1", c.User.NodeID)
		}
	case RoleSequence:
		s := c.Sequence
		if strings.ContainsAny(s.RedisPrefix, "{}") {
			bad("redis-prefix", "IMKUBE_SEQ_REDIS_PREFIX", "%q: braces are reserved", s.RedisPrefix)
		}
		if s.Sections < 1 || s.Sections > 1<<20 {
			bad("sections", "IMKUBE_SEQ_SECTIONS", "%d: want 1..%d, and never change it once used", s.Sections, 1<<20)
		}
		if s.Step < 1 {
			bad("step", "IMKUBE_SEQ_STEP", "%d: want >= 1", s.Step)
		}
	case RoleDev:
		if c.Dev.Data == "" {
			bad("data", "IMKUBE_DATA", "must not be empty")
		}
		checkConnections(bad, c.Gateway)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s config: %w", role, errors.Join(errs...))
	}
	return nil
}

// checkConnections checks the gateway settings `imkube dev` takes too.
func checkConnections(bad func(flag, env, format string, args ...any), g Gateway) {
	if g.MaxConnections < 1 {
		bad("max-connections", "IMKUBE_MAX_CONNECTIONS", "%d: want >= 1", g.MaxConnections)
	}
	if g.NotifyInterval < 0 || g.NotifyInterval > 10*time.Second {
		bad("notify-interval", "IMKUBE_NOTIFY_INTERVAL", "%s: want >= 0 (0: off) and <= 10s", g.NotifyInterval)
	}
}

func checkURL(bad func(flag, env, format string, args ...any), flag, env, v string) {
	if v == "" {
		bad(flag, env, "is required")
		return
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad(flag, env, "%q: want an http(s)://host:port URL", v)
	}
}

func oneOf(v string, opts ...string) bool {
	for _, o := range opts {
		if v == o {
			return true
		}
	}
	return false
}

// Logger returns base filtered to the configured level (messages below it
// are dropped), tagged with svc.
func (c Config) Logger(base *slog.Logger, svc string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel)) // validated
	return slog.New(minLevel{base.Handler(), lvl}).With("svc", svc)
}

// minLevel drops records below min before they reach h.
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
