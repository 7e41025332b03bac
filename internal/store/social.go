package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Social graph errors (the user service turns them into coded answers).
var (
	// ErrBlocked: one of the two users blocked the other.
	ErrBlocked = errors.New("blocked")
	// ErrAlreadyFriends: the two users are friends already.
	ErrAlreadyFriends = errors.New("already friends")
	// ErrRequestPending: a pending request between the two exists.
	ErrRequestPending = errors.New("request pending")
	// ErrForbidden: the row exists but is not the caller's to change.
	ErrForbidden = errors.New("forbidden")
)

// LimitError is a per-user bound that a change would pass.
type LimitError struct {
	// What is counted: "friends", "pending requests", "blocks".
	What string
	// Max is the bound.
	Max int
	// Other: the bound is the other user's, not the caller's.
	Other bool
}

func (e *LimitError) Error() string {
	if e.Other {
		return fmt.Sprintf("the other user has the most %s allowed (%d)", e.What, e.Max)
	}
	return fmt.Sprintf("you have the most %s allowed (%d)", e.What, e.Max)
}

// SocialLimits bound each user's social rows.
type SocialLimits struct {
	MaxFriends         int
	MaxPendingRequests int // outgoing pending requests of a user, and incoming ones
	MaxBlocks          int
}

// Friend request statuses.
const (
	RequestPending  = "pending"
	RequestAccepted = "accepted"
	RequestDeclined = "declined"
)

// FriendRequest is one request; MessageText is the sender's note.
type FriendRequest struct {
	ID          string `json:"id"`
	From        string `json:"from"`
	To          string `json:"to"`
	MessageText string `json:"message"`
	Status      string `json:"status"`
	CreatedAt   int64  `json:"createdAt"`
}

// Friend is one friend of a user.
type Friend struct {
	UserID      string `json:"userId"`
	Username    string `json:"username"`
	DisplayName string `json:"displayName"`
	Remark      string `json:"remark"`
	Since       int64  `json:"since"`
}

// Block is one user a user blocked.
type Block struct {
	UserID      string `json:"userId"`
	Username    string `json:"username"`
	DisplayName string `json:"displayName"`
	CreatedAt   int64  `json:"createdAt"`
}

// SocialEvent is one outbox row: an event for one user's inbox. InboxSeq
// is 0 until the message service delivered it.
type SocialEvent struct {
	ID        int64
	User      string
	Kind      string
	Body      string
	CreatedAt int64
	InboxSeq  int64
}

// RecordEvent is an inbox row holding a social event (seq = the event id).
const RecordEvent = 2

// EventsFunc makes the outbox rows of a change; it is called inside the
// change's transaction with what was stored.
type EventsFunc func(r FriendRequest) []SocialEvent

func (s *DB) insertEvents(ctx context.Context, tx *sql.Tx, events []SocialEvent) error {
	for _, e := range events {
		if _, err := tx.ExecContext(ctx, "INSERT INTO social_events (user_id, kind, body, created_at) VALUES (?, ?, ?, ?)",
			e.User, e.Kind, e.Body, e.CreatedAt); err != nil {
			return fmt.Errorf("insert social event: %w", err)
		}
	}
	return nil
}

func count(ctx context.Context, tx *sql.Tx, q string, args ...any) (int, error) {
	var n int
	err := tx.QueryRowContext(ctx, q, args...).Scan(&n)
	return n, err
}

func (s *DB) blockedEither(ctx context.Context, tx *sql.Tx, a, b string) (bool, error) {
	n, err := count(ctx, tx, "SELECT COUNT(*) FROM blocks WHERE (user_id = ? AND blocked_id = ?) OR (user_id = ? AND blocked_id = ?)", a, b, b, a)
	return n > 0, err
}

func pendingKey(from, to string) string { return from + ">" + to }

// CreateFriendRequest stores a pending request from r.From to r.To with the
// events ev makes, unless either blocked the other (ErrBlocked), they are
// friends (ErrAlreadyFriends), a request between them is pending
// (ErrRequestPending), or a bound would be passed (*LimitError). The
// recipient must be an account (ErrNotFound).
func (s *DB) CreateFriendRequest(ctx context.Context, r FriendRequest, lim SocialLimits, ev EventsFunc) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		n, err := count(ctx, tx, "SELECT COUNT(*) FROM users WHERE id = ? AND deleted_at = 0", r.To)
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		if b, err := s.blockedEither(ctx, tx, r.From, r.To); err != nil || b {
			if b {
				return ErrBlocked
			}
			return err
		}
		if n, err = count(ctx, tx, "SELECT COUNT(*) FROM friends WHERE user_id = ? AND friend_id = ?", r.From, r.To); err != nil || n > 0 {
			if n > 0 {
				return ErrAlreadyFriends
			}
			return err
		}
		if n, err = count(ctx, tx, "SELECT COUNT(*) FROM friend_requests WHERE pending_key IN (?, ?)", pendingKey(r.From, r.To), pendingKey(r.To, r.From)); err != nil || n > 0 {
			if n > 0 {
				return ErrRequestPending
			}
			return err
		}
		if n, err = count(ctx, tx, "SELECT COUNT(*) FROM friend_requests WHERE from_user = ? AND status = ?", r.From, RequestPending); err != nil || n >= lim.MaxPendingRequests {
			if err == nil {
				err = &LimitError{What: "pending friend requests", Max: lim.MaxPendingRequests}
			}
			return err
		}
		if n, err = count(ctx, tx, "SELECT COUNT(*) FROM friend_requests WHERE to_user = ? AND status = ?", r.To, RequestPending); err != nil || n >= lim.MaxPendingRequests {
			if err == nil {
				err = &LimitError{What: "pending friend requests", Max: lim.MaxPendingRequests, Other: true}
			}
			return err
		}
		if n, err = count(ctx, tx, "SELECT COUNT(*) FROM friends WHERE user_id = ?", r.From); err != nil || n >= lim.MaxFriends {
			if err == nil {
				err = &LimitError{What: "friends", Max: lim.MaxFriends}
			}
			return err
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO friend_requests (id, from_user, to_user, message, status, pending_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			r.ID, r.From, r.To, r.MessageText, RequestPending, pendingKey(r.From, r.To), r.CreatedAt, r.CreatedAt)
		if isUniqueViolation(err) {
			return ErrRequestPending
		}
		if err != nil {
			return err
		}
		return s.insertEvents(ctx, tx, ev(r))
	})
}

const requestCols = "id, from_user, to_user, message, status, created_at"

func scanRequests(rows *sql.Rows, err error) ([]FriendRequest, error) {
	return scanAll(rows, err, func(r *FriendRequest) []any {
		return []any{&r.ID, &r.From, &r.To, &r.MessageText, &r.Status, &r.CreatedAt}
	})
}

// FriendRequests lists user's requests, incoming (in) or outgoing, with
// status ("" any), newest first, at most limit.
func (s *DB) FriendRequests(ctx context.Context, user string, incoming bool, status string, limit int) ([]FriendRequest, error) {
	col := "from_user"
	if incoming {
		col = "to_user"
	}
	q := "SELECT " + requestCols + " FROM friend_requests WHERE " + col + " = ?"
	args := []any{user}
	if status != "" {
		q += " AND status = ?"
		args = append(args, status)
	}
	rows, err := s.query(ctx, q+" ORDER BY created_at DESC, id DESC LIMIT ?", append(args, limit)...)
	return scanRequests(rows, err)
}

// RespondFriendRequest accepts or declines request id for user, its
// recipient, at now. The sender gets ErrForbidden, anyone else ErrNotFound;
// a request already answered is ErrConflict. Accepting makes the two users
// friends (ErrBlocked if one blocked the other meanwhile; *LimitError when a
// side has the most friends). ev makes the outbox rows from the answered
// request.
func (s *DB) RespondFriendRequest(ctx context.Context, id, user string, accept bool, now int64, lim SocialLimits, ev EventsFunc) (*FriendRequest, error) {
	var out *FriendRequest
	err := s.tx(ctx, func(tx *sql.Tx) error {
		list, err := scanRequests(tx.QueryContext(ctx, "SELECT "+requestCols+" FROM friend_requests WHERE id = ?", id))
		if err != nil {
			return err
		}
		if len(list) == 0 || (list[0].To != user && list[0].From != user) {
			return ErrNotFound
		}
		r := list[0]
		if r.To != user {
			return ErrForbidden
		}
		if r.Status != RequestPending {
			return ErrConflict
		}
		r.Status = RequestDeclined
		if accept {
			r.Status = RequestAccepted
			if b, err := s.blockedEither(ctx, tx, r.From, r.To); err != nil || b {
				if b {
					return ErrBlocked
				}
				return err
			}
			for _, u := range []string{r.To, r.From} {
				n, err := count(ctx, tx, "SELECT COUNT(*) FROM friends WHERE user_id = ?", u)
				if err != nil {
					return err
				}
				if n >= lim.MaxFriends {
					return &LimitError{What: "friends", Max: lim.MaxFriends, Other: u != user}
				}
			}
			for _, p := range [][2]string{{r.From, r.To}, {r.To, r.From}} {
				if _, err := tx.ExecContext(ctx, s.insertIgnore()+" INTO friends (user_id, friend_id, remark, since) VALUES (?, ?, '', ?)", p[0], p[1], now); err != nil {
					return err
				}
			}
		}
		res, err := tx.ExecContext(ctx, "UPDATE friend_requests SET status = ?, pending_key = NULL, updated_at = ? WHERE id = ? AND status = ?", r.Status, now, r.ID, RequestPending)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err == nil {
				err = ErrConflict
			}
			return err
		}
		out = &r
		return s.insertEvents(ctx, tx, ev(r))
	})
	return out, err
}

// Friends lists user's friends, oldest friendship first.
func (s *DB) Friends(ctx context.Context, user string) ([]Friend, error) {
	rows, err := s.query(ctx, `SELECT f.friend_id, u.username, u.display_name, f.remark, f.since FROM friends f
		JOIN users u ON u.id = f.friend_id WHERE f.user_id = ? ORDER BY f.since, f.friend_id`, user)
	return scanAll(rows, err, func(f *Friend) []any {
		return []any{&f.UserID, &f.Username, &f.DisplayName, &f.Remark, &f.Since}
	})
}

// AreFriends reports whether a and b are friends.
func (s *DB) AreFriends(ctx context.Context, a, b string) (bool, error) {
	var n int
	err := s.queryRow(ctx, "SELECT COUNT(*) FROM friends WHERE user_id = ? AND friend_id = ?", a, b).Scan(&n)
	return n > 0, err
}

// RemoveFriend ends the friendship of user and other (both sides) with the
// events made by ev (ErrNotFound: they were not friends).
func (s *DB) RemoveFriend(ctx context.Context, user, other string, events []SocialEvent) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM friends WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)", user, other, other, user)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err == nil {
				err = ErrNotFound
			}
			return err
		}
		return s.insertEvents(ctx, tx, events)
	})
}

// SetRemark sets user's private note on friend other (ErrNotFound: not a
// friend).
func (s *DB) SetRemark(ctx context.Context, user, other, remark string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		n, err := count(ctx, tx, "SELECT COUNT(*) FROM friends WHERE user_id = ? AND friend_id = ?", user, other)
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		_, err = tx.ExecContext(ctx, "UPDATE friends SET remark = ? WHERE user_id = ? AND friend_id = ?", remark, user, other)
		return err
	})
}

// BlockUser makes user block other (again: nothing changes) and drops the
// pending requests between them. ErrNotFound: other has no account;
// *LimitError: user has the most blocks.
func (s *DB) BlockUser(ctx context.Context, user, other string, now int64, lim SocialLimits) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		n, err := count(ctx, tx, "SELECT COUNT(*) FROM users WHERE id = ?", other)
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		if n, err = count(ctx, tx, "SELECT COUNT(*) FROM blocks WHERE user_id = ? AND blocked_id = ?", user, other); err != nil || n > 0 {
			return err
		}
		if n, err = count(ctx, tx, "SELECT COUNT(*) FROM blocks WHERE user_id = ?", user); err != nil || n >= lim.MaxBlocks {
			if err == nil {
				err = &LimitError{What: "blocked users", Max: lim.MaxBlocks}
			}
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO blocks (user_id, blocked_id, created_at) VALUES (?, ?, ?)", user, other, now); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE friend_requests SET status = ?, pending_key = NULL, updated_at = ? WHERE pending_key IN (?, ?)",
			RequestDeclined, now, pendingKey(user, other), pendingKey(other, user))
		return err
	})
}

// UnblockUser lifts user's block of other (none: nothing changes).
func (s *DB) UnblockUser(ctx context.Context, user, other string) error {
	_, err := s.db.ExecContext(ctx, "DELETE FROM blocks WHERE user_id = ? AND blocked_id = ?", user, other)
	return err
}

// Blocks lists the users user blocked, oldest first.
func (s *DB) Blocks(ctx context.Context, user string) ([]Block, error) {
	rows, err := s.query(ctx, `SELECT b.blocked_id, u.username, u.display_name, b.created_at FROM blocks b
		JOIN users u ON u.id = b.blocked_id WHERE b.user_id = ? ORDER BY b.created_at, b.blocked_id`, user)
	return scanAll(rows, err, func(b *Block) []any {
		return []any{&b.UserID, &b.Username, &b.DisplayName, &b.CreatedAt}
	})
}

// DirectCheck is what decides whether sender may message recipient.
type DirectCheck struct {
	// Exists: recipient is an account (not deleted).
	Exists bool
	// Blocked: one of the two blocked the other.
	Blocked bool
	// Policy is recipient's DM policy ("" = the cluster default).
	Policy string
	// Friends: the two are friends.
	Friends bool
}

// CheckDirect answers DirectCheck for a message from sender to recipient in
// one query.
func (s *DB) CheckDirect(ctx context.Context, sender, recipient string) (DirectCheck, error) {
	var c DirectCheck
	var blocked, friends int
	err := s.queryRow(ctx, `SELECT u.dm_policy,
		(SELECT COUNT(*) FROM blocks b WHERE (b.user_id = ? AND b.blocked_id = ?) OR (b.user_id = ? AND b.blocked_id = ?)),
		(SELECT COUNT(*) FROM friends f WHERE f.user_id = ? AND f.friend_id = ?)
		FROM users u WHERE u.id = ? AND u.deleted_at = 0`, recipient, sender, sender, recipient, recipient, sender, recipient).Scan(&c.Policy, &blocked, &friends)
	if errors.Is(err, sql.ErrNoRows) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	c.Exists, c.Blocked, c.Friends = true, blocked > 0, friends > 0
	return c, nil
}

// BlockedBetween returns the users of others who blocked user or whom user
// blocked.
func (s *DB) BlockedBetween(ctx context.Context, user string, others []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(others) == 0 {
		return out, nil
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(others)), ", ")
	args := make([]any, 0, 2*len(others)+2)
	args = append(args, user)
	for _, o := range others {
		args = append(args, o)
	}
	args = append(args, user)
	for _, o := range others {
		args = append(args, o)
	}
	rows, err := s.query(ctx, "SELECT user_id FROM blocks WHERE blocked_id = ? AND user_id IN ("+marks+")"+
		" UNION SELECT blocked_id FROM blocks WHERE user_id = ? AND blocked_id IN ("+marks+")", args...)
	if err != nil {
		return nil, err
	}
	if err := addStrings(rows, out); err != nil {
		return nil, err
	}
	return out, nil
}

// PendingSocialEvents lists outbox events not yet in an inbox, oldest
// first.
func (s *DB) PendingSocialEvents(ctx context.Context, limit int) ([]SocialEvent, error) {
	rows, err := s.query(ctx, "SELECT id, user_id, kind, body, created_at FROM social_events WHERE inbox_seq = 0 ORDER BY id LIMIT ?", limit)
	return scanAll(rows, err, func(e *SocialEvent) []any { return []any{&e.ID, &e.User, &e.Kind, &e.Body, &e.CreatedAt} })
}

// ClaimSocialEvent leases pending event id to the caller until until (unix
// ms), unless another replica holds an unexpired lease (false) or it was
// delivered (false). One replica at a time delivers an event, so no inbox
// number is taken for nothing; a lease of a replica that died expires.
func (s *DB) ClaimSocialEvent(ctx context.Context, id int64, now, until int64) (bool, error) {
	res, err := s.db.ExecContext(ctx, "UPDATE social_events SET claimed_until = ? WHERE id = ? AND inbox_seq = 0 AND claimed_until < ?", until, id, now)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// DeliverSocialEvent places event id into its user's inbox at inboxSeq
// (record RecordEvent) and marks it delivered, in one transaction. false:
// another replica delivered it first (nothing written).
func (s *DB) DeliverSocialEvent(ctx context.Context, e SocialEvent, inboxSeq int64) (bool, error) {
	var done bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE social_events SET inbox_seq = ? WHERE id = ? AND inbox_seq = 0", inboxSeq, e.ID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO inbox (user_id, inbox_seq, conv, seq, record) VALUES (?, ?, '', ?, ?)", e.User, inboxSeq, e.ID, RecordEvent); err != nil {
			return fmt.Errorf("insert event record: %w", err)
		}
		if s.socialOutbox != nil {
			if entry, ok := s.socialOutbox(e); ok {
				if err := insertOutbox(ctx, tx, entry); err != nil {
					return fmt.Errorf("insert event hook entry: %w", err)
				}
			}
		}
		done = true
		return nil
	})
	return done, err
}
