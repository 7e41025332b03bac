package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/imkube/imkube/internal/auth"
)

// Session is one login of a user (every token refreshed from it shares its
// id); see auth.Claims.SessionID.
type Session struct {
	ID         string `json:"id"`
	User       string `json:"-"`
	Device     string `json:"device"`
	CreatedAt  int64  `json:"createdAt"`
	LastUsedAt int64  `json:"lastUsedAt"`
	ExpiresAt  int64  `json:"expiresAt"`
}

// DeletedDisplayName replaces the display name of a deleted account.
const DeletedDisplayName = "Deleted user"

// SaveSession records a login, or (same id: a refresh) when it was last
// used.
func (s *DB) SaveSession(ctx context.Context, x Session) error {
	res, err := s.db.ExecContext(ctx, "UPDATE user_sessions SET last_used_at = ? WHERE id = ? AND user_id = ?", x.LastUsedAt, x.ID, x.User)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	_, err = s.db.ExecContext(ctx, s.insertIgnore()+" INTO user_sessions (id, user_id, device, created_at, last_used_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
		x.ID, x.User, x.Device, x.CreatedAt, x.LastUsedAt, x.ExpiresAt)
	return err
}

// Sessions lists user's sessions that were not revoked and end after now,
// the most recently used first.
func (s *DB) Sessions(ctx context.Context, user string, now time.Time) ([]Session, error) {
	rows, err := s.query(ctx, "SELECT id, user_id, device, created_at, last_used_at, expires_at FROM user_sessions WHERE user_id = ? AND revoked_at = 0 AND expires_at > ? ORDER BY last_used_at DESC, id",
		user, now.UnixMilli())
	return scanAll(rows, err, func(x *Session) []any {
		return []any{&x.ID, &x.User, &x.Device, &x.CreatedAt, &x.LastUsedAt, &x.ExpiresAt}
	})
}

// RevokeSessions ends user's live sessions: only the one with id only (""
// every one), except the one with id keep, recording a revocation
// (auth.SessionKey) with reason for each in the same transaction. It
// returns what it revoked, which the caller adds to its in-memory set.
func (s *DB) RevokeSessions(ctx context.Context, user, only, keep, reason string, now time.Time) ([]auth.Revoked, error) {
	var out []auth.Revoked
	err := s.tx(ctx, func(tx *sql.Tx) error {
		q := "SELECT id, expires_at FROM user_sessions WHERE user_id = ? AND revoked_at = 0 AND expires_at > ? AND id <> ?"
		args := []any{user, now.UnixMilli(), keep}
		if only != "" {
			q += " AND id = ?"
			args = append(args, only)
		}
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var r auth.Revoked
			if err := rows.Scan(&r.TokenID, &r.ExpiresAt); err != nil {
				rows.Close()
				return err
			}
			r.RevokedAt, r.Reason = now.UnixMilli(), reason
			out = append(out, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i := range out {
			r := &out[i]
			if _, err := tx.ExecContext(ctx, "UPDATE user_sessions SET revoked_at = ? WHERE id = ?", r.RevokedAt, r.TokenID); err != nil {
				return err
			}
			r.TokenID = auth.SessionKey(r.TokenID)
			if _, err := tx.ExecContext(ctx, s.insertIgnore()+" INTO revoked_tokens (jti, expires_at, revoked_at, reason) VALUES (?, ?, ?, ?)",
				r.TokenID, r.ExpiresAt, r.RevokedAt, r.Reason); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// RevokeTokenReason records one revoked token with why (already revoked:
// nothing changes).
func (s *DB) RevokeTokenReason(ctx context.Context, r auth.Revoked) error {
	_, err := s.db.ExecContext(ctx, s.insertIgnore()+" INTO revoked_tokens (jti, expires_at, revoked_at, reason) VALUES (?, ?, ?, ?)",
		r.TokenID, r.ExpiresAt, r.RevokedAt, r.Reason)
	return err
}

// UpdateProfile changes the given fields of user id (nil: unchanged).
func (s *DB) UpdateProfile(ctx context.Context, id string, displayName, dmPolicy *string) error {
	set, args := []string{}, []any{}
	if displayName != nil {
		set, args = append(set, "display_name = ?"), append(args, *displayName)
	}
	if dmPolicy != nil {
		set, args = append(set, "dm_policy = ?"), append(args, *dmPolicy)
	}
	if len(set) == 0 {
		return nil
	}
	q := "UPDATE users SET " + set[0]
	for _, x := range set[1:] {
		q += ", " + x
	}
	res, err := s.db.ExecContext(ctx, q+" WHERE id = ? AND deleted_at = 0", append(args, id)...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		if err == nil {
			// MySQL counts changed rows: an unchanged value is not an error.
			var one int
			err = s.queryRow(ctx, "SELECT 1 FROM users WHERE id = ? AND deleted_at = 0", id).Scan(&one)
			if err == sql.ErrNoRows {
				return ErrNotFound
			}
		}
		return err
	}
	return nil
}

// SetPasswordHash replaces user id's password hash.
func (s *DB) SetPasswordHash(ctx context.Context, id, hash string) error {
	_, err := s.db.ExecContext(ctx, "UPDATE users SET password_hash = ? WHERE id = ? AND deleted_at = 0", hash, id)
	return err
}

// DeleteUser deletes account id at now: the row stays (messages keep a
// sender, the username is never given to anyone else) with no password,
// the display name DeletedDisplayName and deleted_at set; its friendships
// (with the events of the other side, made by removed), blocks and pending
// requests go.
func (s *DB) DeleteUser(ctx context.Context, id string, now time.Time, removed func(friend string) []SocialEvent) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE users SET deleted_at = ?, password_hash = '', display_name = ?, dm_policy = '' WHERE id = ? AND deleted_at = 0",
			now.UnixMilli(), DeletedDisplayName, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err == nil {
				err = ErrNotFound
			}
			return err
		}
		rows, err := tx.QueryContext(ctx, "SELECT friend_id FROM friends WHERE user_id = ?", id)
		if err != nil {
			return err
		}
		friends := map[string]bool{}
		if err := addStrings(rows, friends); err != nil {
			return err
		}
		for f := range friends {
			if err := s.insertEvents(ctx, tx, removed(f)); err != nil {
				return err
			}
		}
		for _, q := range []string{
			"DELETE FROM friends WHERE user_id = ? OR friend_id = ?",
			"DELETE FROM blocks WHERE user_id = ? OR blocked_id = ?",
			"DELETE FROM friend_requests WHERE from_user = ? OR to_user = ?",
		} {
			if _, err := tx.ExecContext(ctx, q, id, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// PruneSessions deletes the login sessions that ended (expired or revoked)
// before before, and friend requests answered before it.
func (s *DB) PruneSessions(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM user_sessions WHERE expires_at < ? OR (revoked_at > 0 AND revoked_at < ?)", before.UnixMilli(), before.UnixMilli())
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	res, err = s.db.ExecContext(ctx, "DELETE FROM friend_requests WHERE status <> ? AND updated_at < ?", RequestPending, before.Add(-30*24*time.Hour).UnixMilli())
	if err != nil {
		return n, err
	}
	m, _ := res.RowsAffected()
	return n + m, nil
}
