package sessions

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"
)

// Memory is the in-process Store of `imkube dev` and unit tests. It follows the
// Redis adapter's rules: an entry lives until its TTL, Register also marks the
// gateway alive for at least the entry's TTL, Heartbeat sets the gateway's
// liveness to exactly its ttl, and Lookup returns only unexpired entries on
// live gateways. Expired entries are dropped lazily.
type Memory struct {
	now func() time.Time

	mu       sync.Mutex
	users    map[string]map[string]entry     // user -> device -> entry
	gateways map[string]time.Time            // gateway -> liveness expiry
	seen     map[string]int64                // user -> last seen (unix ms), one entry per user
	watch    map[string]map[string]time.Time // user -> gateway with watchers -> expiry
}

type entry struct {
	gateway string
	expires time.Time
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store reading time from now (nil:
// time.Now), so tests can move the clock.
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, users: map[string]map[string]entry{}, gateways: map[string]time.Time{}}
}

// ErrInvalid is returned for a session without user, device or gateway, or a
// non-positive TTL.
var ErrInvalid = errors.New("sessions: user, device, gateway and a positive ttl are required")

// Validate checks that s names a user, a device and a gateway.
func Validate(s Session) error {
	if s.User == "" || s.Device == "" || s.Gateway == "" {
		return ErrInvalid
	}
	return nil
}

// Register records s for ttl and extends its gateway's liveness to at least ttl.
func (m *Memory) Register(ctx context.Context, s Session, ttl time.Duration) error {
	if err := Validate(s); err != nil || ttl <= 0 {
		return ErrInvalid
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.register(now, s, ttl)
	if exp := now.Add(ttl); exp.After(m.gateways[s.Gateway]) {
		m.gateways[s.Gateway] = exp
	}
	return nil
}

func (m *Memory) register(now time.Time, s Session, ttl time.Duration) {
	devices := m.users[s.User]
	if devices == nil {
		devices = map[string]entry{}
		m.users[s.User] = devices
	}
	devices[s.Device] = entry{gateway: s.Gateway, expires: now.Add(ttl)}
}

// Unregister removes s if its entry still points at s.Gateway.
func (m *Memory) Unregister(ctx context.Context, s Session) error {
	if err := Validate(s); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	devices := m.users[s.User]
	if e, ok := devices[s.Device]; ok && e.gateway == s.Gateway {
		delete(devices, s.Device)
		if len(devices) == 0 {
			delete(m.users, s.User)
		}
	}
	return nil
}

// Heartbeat sets gatewayID's liveness to ttl from now and re-registers live.
func (m *Memory) Heartbeat(ctx context.Context, gatewayID string, live []Session, ttl time.Duration) error {
	if gatewayID == "" || ttl <= 0 {
		return ErrInvalid
	}
	for _, s := range live {
		if err := Validate(s); err != nil || s.Gateway != gatewayID {
			return ErrInvalid
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.gateways[gatewayID] = now.Add(ttl)
	for _, s := range live {
		m.register(now, s, ttl)
	}
	// Keep the maps bounded by what is alive.
	for gw, exp := range m.gateways {
		if !exp.After(now) {
			delete(m.gateways, gw)
		}
	}
	for u, devices := range m.users {
		for d, e := range devices {
			if !e.expires.After(now) {
				delete(devices, d)
			}
		}
		if len(devices) == 0 {
			delete(m.users, u)
		}
	}
	return nil
}

// Lookup returns the unexpired sessions on live gateways, sorted by device.
func (m *Memory) Lookup(ctx context.Context, users []string) (map[string][]Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	out := make(map[string][]Session, len(users))
	// One array holds every user's sessions (a large group's lookup is one
	// allocation, not one per member); each list is capped at its end.
	all := make([]Session, 0, len(users))
	for _, u := range users {
		devices := m.users[u]
		if devices == nil {
			continue
		}
		if _, done := out[u]; done {
			continue
		}
		first := len(all)
		for d, e := range devices {
			if !e.expires.After(now) {
				delete(devices, d)
				continue
			}
			if !m.gateways[e.gateway].After(now) {
				continue
			}
			all = append(all, Session{User: u, Device: d, Gateway: e.gateway})
		}
		if len(devices) == 0 {
			delete(m.users, u)
		}
		if list := all[first:len(all):len(all)]; len(list) > 0 {
			if len(list) > 1 {
				SortSessions(list)
			}
			out[u] = list
		}
	}
	return out, nil
}

// SortSessions orders sessions by user, then device.
func SortSessions(list []Session) {
	sort.Slice(list, func(i, j int) bool {
		if list[i].User != list[j].User {
			return list[i].User < list[j].User
		}
		return list[i].Device < list[j].Device
	})
}

// Gateways returns the gateways whose liveness has not expired, sorted.
func (m *Memory) Gateways(ctx context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var out []string
	for gw, exp := range m.gateways {
		if exp.After(now) {
			out = append(out, gw)
		}
	}
	sort.Strings(out)
	return out, nil
}
