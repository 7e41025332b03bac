package sessions_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/sessions"
	"github.com/imkube/imkube/internal/sessions/sessionstest"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestMemoryConformance(t *testing.T) {
	sessionstest.Run(t, func(t *testing.T) sessionstest.Harness {
		clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		store := &swappable{Store: sessions.NewMemory(clock.Now)}
		return sessionstest.Harness{
			Store:   store,
			Advance: clock.Advance,
			Wipe:    func() { store.Store = sessions.NewMemory(clock.Now) },
			Short:   time.Second,
			Long:    time.Hour,
		}
	})
}

// swappable lets Wipe replace the store under the suite (data loss).
type swappable struct{ sessions.Store }

func (s *swappable) memory() *sessions.Memory { return s.Store.(*sessions.Memory) }

func (s *swappable) Watch(ctx context.Context, gw string, users []string, ttl time.Duration) error {
	return s.memory().Watch(ctx, gw, users, ttl)
}
func (s *swappable) Unwatch(ctx context.Context, gw string, users []string) error {
	return s.memory().Unwatch(ctx, gw, users)
}
func (s *swappable) Watchers(ctx context.Context, user string) ([]string, error) {
	return s.memory().Watchers(ctx, user)
}
func (s *swappable) SetLastSeen(ctx context.Context, user string, ms int64) error {
	return s.memory().SetLastSeen(ctx, user, ms)
}
func (s *swappable) LastSeen(ctx context.Context, users []string) (map[string]int64, error) {
	return s.memory().LastSeen(ctx, users)
}

// The message service looks up every member of a group per message.
func BenchmarkMemoryLookup200(b *testing.B) {
	ctx := context.Background()
	m := sessions.NewMemory(nil)
	users := make([]string, 200)
	for i := range users {
		users[i] = "u" + strconv.Itoa(i)
		devices := 1 + i%3/2 // most users one device, a third two
		for d := range devices {
			if err := m.Register(ctx, sessions.Session{User: users[i], Device: "d" + strconv.Itoa(d), Gateway: "g1"}, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if live, err := m.Lookup(ctx, users); err != nil || len(live) != 200 {
			b.Fatal(len(live), err)
		}
	}
}
