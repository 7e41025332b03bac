package sessions

import (
	"context"
	"sort"
	"time"
)

var _ Presence = (*Memory)(nil)

// Watch records gateway as a watcher of users until ttl from now.
func (m *Memory) Watch(ctx context.Context, gateway string, users []string, ttl time.Duration) error {
	if gateway == "" || ttl <= 0 {
		return ErrInvalid
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.watch == nil {
		m.watch = map[string]map[string]time.Time{}
	}
	exp := m.now().Add(ttl)
	for _, u := range users {
		w := m.watch[u]
		if w == nil {
			w = map[string]time.Time{}
			m.watch[u] = w
		}
		w[gateway] = exp
	}
	return nil
}

// Unwatch removes gateway's entries for users.
func (m *Memory) Unwatch(ctx context.Context, gateway string, users []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range users {
		if w := m.watch[u]; w != nil {
			delete(w, gateway)
			if len(w) == 0 {
				delete(m.watch, u)
			}
		}
	}
	return nil
}

// Watchers returns the gateways watching user, sorted; expired entries go.
func (m *Memory) Watchers(ctx context.Context, user string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var out []string
	for gw, exp := range m.watch[user] {
		if exp.After(now) {
			out = append(out, gw)
		} else {
			delete(m.watch[user], gw)
		}
	}
	if len(m.watch[user]) == 0 {
		delete(m.watch, user)
	}
	sort.Strings(out)
	return out, nil
}

// SetLastSeen records ms for user unless a later time is recorded.
func (m *Memory) SetLastSeen(ctx context.Context, user string, ms int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == nil {
		m.seen = map[string]int64{}
	}
	if ms > m.seen[user] {
		m.seen[user] = ms
	}
	return nil
}

// LastSeen returns the recorded times of users.
func (m *Memory) LastSeen(ctx context.Context, users []string) (map[string]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int64{}
	for _, u := range users {
		if v, ok := m.seen[u]; ok {
			out[u] = v
		}
	}
	return out, nil
}
