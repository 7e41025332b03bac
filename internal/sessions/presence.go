package sessions

import (
	"context"
	"sort"
)

var _ Presence = (*Memory)(nil)

// Gateways returns the gateways that are alive now, sorted.
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
