// Package config holds what every service's configuration shares: env
// overrides for flags, and the hot-reloaded cluster config file (limits and
// group settings) that the operator writes into a ConfigMap.
package config

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// Env returns the environment variable name, or def when unset.
func Env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// EnvInt is Env for integers; a malformed value is reported by Validate via
// the returned error.
func EnvInt(name string, def int) int {
	if v, ok := os.LookupEnv(name); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

// EnvDuration is Env for durations.
func EnvDuration(name string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(name); ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// Common are the settings every service process has.
type Common struct {
	Addr     string
	LogLevel string
}

// Bind registers the common flags with env defaults.
func (c *Common) Bind(fs *flag.FlagSet, defAddr string) {
	fs.StringVar(&c.Addr, "addr", Env("IMKUBE_ADDR", defAddr), "listen address (env IMKUBE_ADDR)")
	fs.StringVar(&c.LogLevel, "log-level", Env("IMKUBE_LOG_LEVEL", "info"), "debug|info|warn|error (env IMKUBE_LOG_LEVEL)")
}

// Validate checks the common settings.
func (c *Common) Validate() error {
	if c.Addr == "" {
		return errors.New("config: addr (IMKUBE_ADDR) must not be empty")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log-level (IMKUBE_LOG_LEVEL) %q is not one of debug|info|warn|error", c.LogLevel)
	}
	return nil
}

// Logger builds the process logger at the configured level.
func (c *Common) Logger(base *slog.Logger) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// Limits are the per-user and per-message limits.
type Limits struct {
	SendRatePerSecond         int `json:"sendRatePerSecond"`
	SendBurst                 int `json:"sendBurst"`
	MaxMessageBytes           int `json:"maxMessageBytes"`
	ConnectionsPerIPPerSecond int `json:"connectionsPerIPPerSecond"`
}

// Groups are the group settings.
type Groups struct {
	ReadDiffusionThreshold int `json:"readDiffusionThreshold"`
	MaxMembers             int `json:"maxMembers"`
}

// Cluster is the content of config.json.
type Cluster struct {
	Limits Limits `json:"limits"`
	Groups Groups `json:"groups"`
}

// DefaultCluster returns the built-in defaults.
func DefaultCluster() Cluster {
	return Cluster{
		Limits: Limits{SendRatePerSecond: 10, SendBurst: 20, MaxMessageBytes: 16 << 10, ConnectionsPerIPPerSecond: 20},
		Groups: Groups{ReadDiffusionThreshold: 500, MaxMembers: 10000},
	}
}

// Validate names the first bad field.
func (c Cluster) Validate() error {
	switch {
	case c.Limits.SendRatePerSecond < 1:
		return errors.New("config.json: limits.sendRatePerSecond must be >= 1")
	case c.Limits.SendBurst < 0:
		return errors.New("config.json: limits.sendBurst must be >= 0")
	case c.Limits.MaxMessageBytes < 1 || c.Limits.MaxMessageBytes > 1<<20:
		return errors.New("config.json: limits.maxMessageBytes must be 1..1048576")
	case c.Limits.ConnectionsPerIPPerSecond < 1:
		return errors.New("config.json: limits.connectionsPerIPPerSecond must be >= 1")
	case c.Groups.ReadDiffusionThreshold < 2:
		return errors.New("config.json: groups.readDiffusionThreshold must be >= 2")
	case c.Groups.MaxMembers < 2:
		return errors.New("config.json: groups.maxMembers must be >= 2")
	}
	return nil
}

// ParseCluster reads config.json content over the defaults.
func ParseCluster(b []byte) (Cluster, error) {
	c := DefaultCluster()
	if err := json.Unmarshal(b, &c); err != nil {
		return Cluster{}, fmt.Errorf("config.json: %w", err)
	}
	return c, c.Validate()
}

// Live holds the current cluster config; safe for concurrent use.
type Live struct {
	v atomic.Pointer[Cluster]
}

// NewLive starts with c.
func NewLive(c Cluster) *Live {
	l := &Live{}
	l.v.Store(&c)
	return l
}

// Get returns the current config.
func (l *Live) Get() Cluster { return *l.v.Load() }

// Set replaces the config.
func (l *Live) Set(c Cluster) { l.v.Store(&c) }

// Watch polls path every interval and applies valid changes (a ConfigMap
// update is an atomic symlink swap, so polling the content is what works);
// invalid content is logged and the previous config stays. It returns when
// ctx ends.
func (l *Live) Watch(ctx context.Context, path string, interval time.Duration, log *slog.Logger) error {
	var last []byte
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		b, err := os.ReadFile(path)
		switch {
		case err != nil:
			log.Warn("config file unreadable; keeping previous config", "path", path, "err", err)
		case string(b) != string(last):
			c, err := ParseCluster(b)
			if err != nil {
				log.Error("config file rejected; keeping previous config", "path", path, "err", err)
			} else {
				l.Set(c)
				log.Info("config loaded", "path", path)
			}
			last = b
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
