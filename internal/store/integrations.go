package store

// Integrations (issue 17): the webhook outbox, its delivery lease, device
// push tokens and banned users.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Outbox targets.
const (
	OutboxEvents = "events" // the events hook (after-send, lifecycle, group events)
	OutboxPush   = "push"   // the offline push hook
)

// OutboxEntry is one webhook delivery waiting in the outbox. Entries with the
// same Key are delivered in ID order, one at a time.
type OutboxEntry struct {
	ID       int64
	Target   string
	Key      string // ordering key: the conversation, or "push:<user>"
	Kind     string
	Payload  string
	Attempts int
	NextAt   int64 // unix ms: not before
	Created  int64
}

// OutboxHook, when set, is asked for every stored message whether it makes
// an outbox entry; the entry is written in the message's transaction, so an
// accepted message and its event are stored together or not at all.
type OutboxHook func(m Message) (OutboxEntry, bool)

// SetOutboxHook installs fn (nil: none). Call before the store is used.
func (s *DB) SetOutboxHook(fn OutboxHook) { s.outbox = fn }

// SocialOutboxHook, when set, is asked for every social event delivered into
// its user's inbox whether it makes an outbox entry, written in the same
// transaction (at least once, like the messages' events).
type SocialOutboxHook func(e SocialEvent) (OutboxEntry, bool)

// SetSocialOutboxHook installs fn (nil: none). Call before the store is used.
func (s *DB) SetSocialOutboxHook(fn SocialOutboxHook) { s.socialOutbox = fn }

func (s *DB) writeOutbox(ctx context.Context, tx *sql.Tx, m Message) error {
	if s.outbox == nil {
		return nil
	}
	e, ok := s.outbox(m)
	if !ok {
		return nil
	}
	return insertOutbox(ctx, tx, e)
}

func insertOutbox(ctx context.Context, x execer, e OutboxEntry) error {
	if e.Created == 0 {
		e.Created = time.Now().UnixMilli()
	}
	if _, err := x.ExecContext(ctx, "INSERT INTO webhook_outbox (target, okey, kind, payload, attempts, next_at, created_at) VALUES (?, ?, ?, ?, 0, 0, ?)",
		e.Target, e.Key, e.Kind, e.Payload, e.Created); err != nil {
		return fmt.Errorf("record webhook event: %w", err)
	}
	return nil
}

// AddOutbox stores e outside a message's transaction (offline pushes).
func (s *DB) AddOutbox(ctx context.Context, e OutboxEntry) error {
	return insertOutbox(ctx, s.db, e)
}

// PendingOutbox returns up to limit entries, oldest first (due or not).
func (s *DB) PendingOutbox(ctx context.Context, limit int) ([]OutboxEntry, error) {
	rows, err := s.query(ctx, "SELECT id, target, okey, kind, payload, attempts, next_at, created_at FROM webhook_outbox ORDER BY id LIMIT ?", limit)
	return scanAll(rows, err, func(e *OutboxEntry) []any {
		return []any{&e.ID, &e.Target, &e.Key, &e.Kind, &e.Payload, &e.Attempts, &e.NextAt, &e.Created}
	})
}

// DoneOutbox removes a delivered (or dead-lettered) entry.
func (s *DB) DoneOutbox(ctx context.Context, id int64) error {
	_, err := s.db.ExecContext(ctx, "DELETE FROM webhook_outbox WHERE id = ?", id)
	return err
}

// RetryOutbox records a failed attempt: attempts+1, not before nextAt.
func (s *DB) RetryOutbox(ctx context.Context, id int64, nextAt int64) error {
	_, err := s.db.ExecContext(ctx, "UPDATE webhook_outbox SET attempts = attempts + 1, next_at = ? WHERE id = ?", nextAt, id)
	return err
}

// CountOutbox returns the number of entries waiting.
func (s *DB) CountOutbox(ctx context.Context) (int64, error) {
	var n int64
	err := s.queryRow(ctx, "SELECT COUNT(*) FROM webhook_outbox").Scan(&n)
	return n, err
}

// TrimOutbox deletes the oldest entries beyond max and returns how many.
func (s *DB) TrimOutbox(ctx context.Context, max int64) (int64, error) {
	n, err := s.CountOutbox(ctx)
	if err != nil || n <= max {
		return 0, err
	}
	var cut int64
	err = s.queryRow(ctx, "SELECT id FROM webhook_outbox ORDER BY id LIMIT 1 OFFSET ?", n-max-1).Scan(&cut)
	if err != nil {
		return 0, err
	}
	res, err := s.db.ExecContext(ctx, "DELETE FROM webhook_outbox WHERE id <= ?", cut)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// TakeLease makes owner the holder of lease name until now+ttl when nobody
// else holds it (or the holder's lease ran out); it reports whether owner
// holds it now.
func (s *DB) TakeLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	now := time.Now().UnixMilli()
	if _, err := s.db.ExecContext(ctx, s.insertIgnore()+" INTO webhook_lease (name, owner, until_ms) VALUES (?, '', 0)", name); err != nil {
		return false, err
	}
	res, err := s.db.ExecContext(ctx, "UPDATE webhook_lease SET owner = ?, until_ms = ? WHERE name = ? AND (owner = ? OR until_ms < ?)",
		owner, now+ttl.Milliseconds(), name, owner, now)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	if n > 0 {
		return true, nil
	}
	// MySQL counts only changed rows: an unchanged renewal in the same
	// millisecond reports 0.
	var cur string
	if err := s.queryRow(ctx, "SELECT owner FROM webhook_lease WHERE name = ?", name).Scan(&cur); err != nil {
		return false, err
	}
	return cur == owner, nil
}

// ReleaseLease gives up owner's lease name (a stopping replica lets the
// next one take over at once).
func (s *DB) ReleaseLease(ctx context.Context, name, owner string) error {
	_, err := s.db.ExecContext(ctx, "UPDATE webhook_lease SET until_ms = 0 WHERE name = ? AND owner = ?", name, owner)
	return err
}

// PushToken is a device's push registration.
type PushToken struct {
	Device    string `json:"device"`
	Provider  string `json:"provider"`
	Token     string `json:"token"`
	UpdatedAt int64  `json:"updatedAt"`
}

// ErrTooMany: a per-user bound is reached.
var ErrTooMany = errors.New("too many")

// SetPushToken registers (or replaces) the push token of user's device;
// ErrTooMany when user has max devices registered and this is a new one.
func (s *DB) SetPushToken(ctx context.Context, user string, t PushToken, max int) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM push_tokens WHERE user_id = ? AND device <> ?", user, t.Device).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return ErrTooMany
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM push_tokens WHERE user_id = ? AND device = ?", user, t.Device); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO push_tokens (user_id, device, provider, token, updated_at) VALUES (?, ?, ?, ?, ?)",
			user, t.Device, t.Provider, t.Token, t.UpdatedAt)
		return err
	})
}

// DeletePushToken unregisters a device; ErrNotFound when it had no token.
func (s *DB) DeletePushToken(ctx context.Context, user, device string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM push_tokens WHERE user_id = ? AND device = ?", user, device)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// PushTokens returns the tokens of users, by user.
func (s *DB) PushTokens(ctx context.Context, users []string) (map[string][]PushToken, error) {
	out := map[string][]PushToken{}
	if len(users) == 0 {
		return out, nil
	}
	args := make([]any, len(users))
	for i, u := range users {
		args[i] = u
	}
	rows, err := s.query(ctx, "SELECT user_id, device, provider, token, updated_at FROM push_tokens WHERE user_id IN ("+
		strings.TrimSuffix(strings.Repeat("?, ", len(users)), ", ")+") ORDER BY user_id, device", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		var t PushToken
		if err := rows.Scan(&u, &t.Device, &t.Provider, &t.Token, &t.UpdatedAt); err != nil {
			return nil, err
		}
		out[u] = append(out[u], t)
	}
	return out, rows.Err()
}

// Ban records that user is banned (again: the reason is replaced).
func (s *DB) Ban(ctx context.Context, user, reason string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM user_bans WHERE user_id = ?", user); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO user_bans (user_id, reason, banned_at) VALUES (?, ?, ?)", user, reason, time.Now().UnixMilli())
		return err
	})
}

// Unban lifts a ban; ErrNotFound when user was not banned.
func (s *DB) Unban(ctx context.Context, user string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM user_bans WHERE user_id = ?", user)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// Banned reports whether user is banned, and why.
func (s *DB) Banned(ctx context.Context, user string) (bool, string, error) {
	var reason string
	err := s.queryRow(ctx, "SELECT reason FROM user_bans WHERE user_id = ?", user).Scan(&reason)
	if errors.Is(err, sql.ErrNoRows) {
		return false, "", nil
	}
	return err == nil, reason, err
}

// SystemSender is the sender of system messages and of admin actions
// (protocol.SystemSender).
const SystemSender = "system"
