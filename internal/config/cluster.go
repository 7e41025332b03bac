package config

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

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

// Users are the account settings.
type Users struct {
	// DefaultDMPolicy is who may send a one-to-one message to a user who
	// chose no policy: "anyone" or "friends".
	DefaultDMPolicy string `json:"defaultDMPolicy"`
}

// Cluster is the content of config.json.
type Cluster struct {
	Limits Limits `json:"limits"`
	Groups Groups `json:"groups"`
	Media  Media  `json:"media"`
	Users  Users  `json:"users"`
	// Webhooks are the integration hooks (docs/integrations.md).
	Webhooks Webhooks `json:"webhooks,omitzero"`
}

// DefaultCluster returns the built-in defaults.
func DefaultCluster() Cluster {
	return Cluster{
		Limits: Limits{SendRatePerSecond: 10, SendBurst: 20, MaxMessageBytes: 16 << 10, ConnectionsPerIPPerSecond: 20},
		Groups: Groups{ReadDiffusionThreshold: 500, MaxMembers: 10000},
		Media:  DefaultMedia(),
		Users:  Users{DefaultDMPolicy: "anyone"},
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
	case c.Users.DefaultDMPolicy != "anyone" && c.Users.DefaultDMPolicy != "friends":
		return errors.New(`config.json: users.defaultDMPolicy must be "anyone" or "friends"`)
	}
	if err := c.Webhooks.Validate(); err != nil {
		return err
	}
	return c.Media.Validate()
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
