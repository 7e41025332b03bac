package auth

import (
	"context"
	"sync"
	"time"
)

// AccountsConfig bounds an Accounts cache.
type AccountsConfig struct {
	// Size is the most user ids remembered (default 100,000); when full,
	// expired entries go first, then arbitrary ones.
	Size int
	// TTL is how long an answer is trusted (default 1 minute): an account
	// removed from the store stops working within TTL.
	TTL time.Duration
}

// Accounts answers whether a user id belongs to an existing account,
// remembering answers for a while, so that a validly signed token of a user
// that does not exist is refused without a database query per request or
// frame.
type Accounts struct {
	cfg    AccountsConfig
	lookup func(ctx context.Context, id string) (bool, error)
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]accountEntry
}

type accountEntry struct {
	exists  bool
	expires time.Time
}

// NewAccounts returns a cache in front of lookup (e.g. store.DB.UserExists).
func NewAccounts(cfg AccountsConfig, lookup func(ctx context.Context, id string) (bool, error)) *Accounts {
	if cfg.Size <= 0 {
		cfg.Size = 100000
	}
	if cfg.TTL <= 0 {
		cfg.TTL = time.Minute
	}
	return &Accounts{cfg: cfg, lookup: lookup, now: time.Now, entries: map[string]accountEntry{}}
}

// Exists reports whether id has an account. Lookup errors are returned and
// not remembered.
func (a *Accounts) Exists(ctx context.Context, id string) (bool, error) {
	now := a.now()
	a.mu.Lock()
	e, ok := a.entries[id]
	a.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.exists, nil
	}
	exists, err := a.lookup(ctx, id)
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.entries) >= a.cfg.Size {
		a.evict(now)
	}
	a.entries[id] = accountEntry{exists: exists, expires: now.Add(a.cfg.TTL)}
	return exists, nil
}

// evict makes room: expired entries, then arbitrary ones down to 90 % of
// the size. Called with mu held.
func (a *Accounts) evict(now time.Time) {
	for id, e := range a.entries {
		if !now.Before(e.expires) {
			delete(a.entries, id)
		}
	}
	for id := range a.entries {
		if len(a.entries) < a.cfg.Size*9/10 {
			break
		}
		delete(a.entries, id)
	}
}
