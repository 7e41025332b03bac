// Package sessions records where users are connected: user -> device ->
// gateway. Adapters: in-memory (imkube dev, unit tests) in this package, Redis
// in sessions/redis.
package sessions

import (
	"context"
	"time"
)

// Session is one authenticated connection of a user's device on a gateway.
type Session struct {
	User    string `json:"user"`
	Device  string `json:"device"`
	Gateway string `json:"gateway"`
}

// Store is the session registry. Entries expire after their TTL unless
// refreshed; a gateway whose liveness expired is never returned by Lookup.
type Store interface {
	// Register records s (replacing any entry for the same user and device).
	Register(ctx context.Context, s Session, ttl time.Duration) error
	// Unregister removes s, but only if the entry still points at s.Gateway.
	Unregister(ctx context.Context, s Session) error
	// Heartbeat marks the gateway alive for ttl and refreshes (re-registers)
	// all of its sessions, so sessions survive a registry data loss.
	Heartbeat(ctx context.Context, gatewayID string, live []Session, ttl time.Duration) error
	// Lookup returns the live sessions of each user (users with none are absent).
	Lookup(ctx context.Context, users []string) (map[string][]Session, error)
}

// GatewayLister lists the live gateways (admin broadcasts). Both adapters
// implement it.
type GatewayLister interface {
	Gateways(ctx context.Context) ([]string, error)
}

// Presence is what presence needs besides Store: which gateways have
// connections that watch a user (a change is pushed to those gateways only)
// and when users were last online. Both adapters implement it.
type Presence interface {
	// Watch records that gateway has watchers of users, for ttl (the
	// gateway refreshes it with its heartbeat).
	Watch(ctx context.Context, gateway string, users []string, ttl time.Duration) error
	// Unwatch removes gateway's entries for users.
	Unwatch(ctx context.Context, gateway string, users []string) error
	// Watchers returns the gateways whose entry for user has not expired.
	Watchers(ctx context.Context, user string) ([]string, error)
	// SetLastSeen records that user was last online at ms (unix ms); it
	// never moves back.
	SetLastSeen(ctx context.Context, user string, ms int64) error
	// LastSeen returns the recorded times of users (absent: never recorded).
	LastSeen(ctx context.Context, users []string) (map[string]int64, error)
}
