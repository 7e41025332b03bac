package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Errors of the message lifecycle.
var (
	// ErrRecalled: the message was recalled (it cannot be edited or
	// recalled again).
	ErrRecalled = errors.New("message was recalled")
)

// MentionAllKey is the mentions row user of a mention of everyone.
const MentionAllKey = "*"

// insertMentions stores one row per user m mentions (not the sender), or
// one MentionAllKey row for "all", so that conversation lists can count
// mentions after each reader's cursor.
func (s *DB) insertMentions(ctx context.Context, tx *sql.Tx, m Message) error {
	if m.Mentions == "" {
		return nil
	}
	for _, u := range strings.Split(m.Mentions, ",") {
		if u == "all" {
			u = MentionAllKey
		}
		if u == m.Sender {
			continue
		}
		if _, err := tx.ExecContext(ctx, s.insertIgnore()+" INTO mentions (conv, user_id, seq) VALUES (?, ?, ?)", m.Conv, u, m.Seq); err != nil {
			return fmt.Errorf("insert mention: %w", err)
		}
	}
	return nil
}

// MessageAt returns message (conv, seq); ErrNotFound when there is none.
func (s *DB) MessageAt(ctx context.Context, conv string, seq int64) (*Message, error) {
	m, err := scanMessage(s.queryRow(ctx, "SELECT "+msgCols+" FROM messages m WHERE m.conv = ? AND m.seq = ?", conv, seq))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// targetOf locks and checks the message a recall or edit record changes:
// ErrNotFound when absent, ErrRecalled when already recalled.
func targetOf(ctx context.Context, tx *sql.Tx, conv string, seq int64) error {
	var flags int
	err := tx.QueryRowContext(ctx, "SELECT flags FROM messages WHERE conv = ? AND seq = ?", conv, seq).Scan(&flags)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if flags&FlagRecalled != 0 {
		return ErrRecalled
	}
	return nil
}

// SaveRecall stores the recall record m (m.Ref is the recalled seq) and, in
// the same transaction, marks the original recalled: its body, the bodies of
// its edit records and its mentions are erased. ErrRecalled when it already
// was; ErrDuplicate when (sender, cmid) is stored.
func (s *DB) SaveRecall(ctx context.Context, m Message, inbox []InboxEntry) error {
	return s.saveMessageEffect(ctx, m, inbox, nil, func(tx *sql.Tx) error {
		if err := targetOf(ctx, tx, m.Conv, m.Ref); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE messages SET flags = flags | ?, body = '', mentions = '' WHERE conv = ? AND seq = ?", FlagRecalled, m.Conv, m.Ref); err != nil {
			return fmt.Errorf("mark recalled: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE messages SET body = '' WHERE conv = ? AND ref = ? AND kind = 'edit'", m.Conv, m.Ref); err != nil {
			return fmt.Errorf("erase edits: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM mentions WHERE conv = ? AND seq = ?", m.Conv, m.Ref); err != nil {
			return fmt.Errorf("erase mentions: %w", err)
		}
		return nil
	}, &cacheEffect{kind: effectRecall, conv: m.Conv, ref: m.Ref})
}

// SaveEdit stores the edit record m (m.Ref is the edited seq, m.Body the new
// body) and gives the original that body and FlagEdited in the same
// transaction. ErrRecalled when the original was recalled.
func (s *DB) SaveEdit(ctx context.Context, m Message, inbox []InboxEntry) error {
	return s.saveMessageEffect(ctx, m, inbox, nil, func(tx *sql.Tx) error {
		if err := targetOf(ctx, tx, m.Conv, m.Ref); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE messages SET flags = flags | ?, body = ? WHERE conv = ? AND seq = ?", FlagEdited, m.Body, m.Conv, m.Ref); err != nil {
			return fmt.Errorf("edit: %w", err)
		}
		return nil
	}, &cacheEffect{kind: effectEdit, conv: m.Conv, ref: m.Ref, body: m.Body})
}

// DeleteConv is the internal conversation that holds a user's delete
// records (one inbox row each, so the user's devices sync them). It is not
// a valid client conversation id.
func DeleteConv(user string) string { return "d:" + user }

// SaveDelete hides seqs of conv from user and stores the delete record m
// (in DeleteConv(user), body: conv and seqs) with its inbox row in the same
// transaction.
func (s *DB) SaveDelete(ctx context.Context, m Message, inbox []InboxEntry, user, conv string, seqs []int64) error {
	return s.saveMessageEffect(ctx, m, inbox, nil, func(tx *sql.Tx) error {
		for _, n := range seqs {
			if _, err := tx.ExecContext(ctx, s.insertIgnore()+" INTO hidden (user_id, conv, seq) VALUES (?, ?, ?)", user, conv, n); err != nil {
				return fmt.Errorf("hide: %w", err)
			}
		}
		return nil
	}, &cacheEffect{kind: effectHide, conv: conv, user: user, seqs: seqs})
}

// PullVisible is Pull without the messages user deleted for themselves.
// With before > 0 it pages backwards: the newest limit messages with
// from <= seq < before, returned in ascending order; more then says older
// ones exist.
func (s *DB) PullVisible(ctx context.Context, user, conv string, from, to, before int64, limit int) ([]Message, bool, error) {
	to, order := pullRange(to, before)
	if c := s.pcache.Load(); c != nil {
		items, more, ok, err := s.pullCached(ctx, c, user, conv, from, to, before, limit)
		if ok || err != nil {
			return items, more, err
		}
	}
	return s.pullVisibleSQL(ctx, user, conv, from, to, order, limit)
}

// pullVisibleSQL is PullVisible in SQL, to already bounded.
// pullRange is the upper seq bound and the scan order of a pull: to <= 0
// means no bound; before > 0 pages backwards below it.
func pullRange(to, before int64) (int64, string) {
	if to <= 0 {
		to = 1<<62 - 1
	}
	if before > 0 {
		return min(to, before-1), "DESC"
	}
	return to, "ASC"
}

func (s *DB) pullVisibleSQL(ctx context.Context, user, conv string, from, to int64, order string, limit int) ([]Message, bool, error) {
	rows, err := s.query(ctx, "SELECT "+msgCols+" FROM messages m WHERE m.conv = ? AND m.seq >= ? AND m.seq <= ?"+
		" AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = ? AND h.conv = m.conv AND h.seq = m.seq) ORDER BY m.seq "+order+" LIMIT ?",
		conv, from, to, user, limit+1)
	if err != nil {
		return nil, false, err
	}
	items, more, err := scanPage(rows, limit)
	if err != nil {
		return nil, false, err
	}
	if order == "DESC" {
		for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
			items[i], items[j] = items[j], items[i]
		}
	}
	return items, more, nil
}

// ConvCursor is a position in a conversation list (see ConversationPage).
type ConvCursor struct {
	Pinned bool
	TS     int64
	Conv   string
}

// String encodes the cursor for a URL.
func (c ConvCursor) String() string {
	p := "0"
	if c.Pinned {
		p = "1"
	}
	return p + "." + strconv.FormatInt(c.TS, 10) + "." + c.Conv
}

// ParseConvCursor decodes ConvCursor.String.
func ParseConvCursor(s string) (ConvCursor, error) {
	p, rest, ok1 := strings.Cut(s, ".")
	ts, conv, ok2 := strings.Cut(rest, ".")
	n, err := strconv.ParseInt(ts, 10, 64)
	if !ok1 || !ok2 || err != nil || (p != "0" && p != "1") || conv == "" {
		return ConvCursor{}, errors.New("malformed cursor")
	}
	return ConvCursor{Pinned: p == "1", TS: n, Conv: conv}, nil
}

// unreadExactUpTo bounds the work of counting one conversation's unread
// messages: up to this many records after the read cursor are looked at
// (own messages and recall/edit records, which change an earlier message,
// do not count); a longer backlog reports every record as unread, which
// clients show as "999+" anyway.
const unreadExactUpTo = 2000

// ConversationPage lists user's conversations, pinned first, then the most
// recent first (ties by conv), at most limit after cursor (nil: from the
// start), and the cursor of the next page (nil: this was the last).
func (s *DB) ConversationPage(ctx context.Context, user string, after *ConvCursor, limit int) ([]Conversation, *ConvCursor, error) {
	q := `SELECT uc.conv, COALESCE(c.last_seq, 0), uc.read_seq, COALESCE(c.last_ts, 0), uc.pinned, uc.muted,
		(SELECT COUNT(*) FROM mentions mn WHERE mn.conv = uc.conv AND mn.user_id IN (uc.user_id, '*') AND mn.seq > uc.read_seq),
		CASE WHEN COALESCE(c.last_seq, 0) <= uc.read_seq THEN 0
			WHEN COALESCE(c.last_seq, 0) - uc.read_seq > ` + strconv.Itoa(unreadExactUpTo) + ` THEN -1
			ELSE (SELECT COUNT(*) FROM messages mu WHERE mu.conv = uc.conv AND mu.seq > uc.read_seq AND mu.seq <= c.last_seq
				AND mu.sender <> uc.user_id AND mu.kind NOT IN ('recall', 'edit')) END,
		m.sender, m.kind, m.body, m.flags, m.ts
		FROM user_convs uc LEFT JOIN convs c ON c.conv = uc.conv LEFT JOIN messages m ON m.conv = c.conv AND m.seq = c.last_seq
		WHERE uc.user_id = ?`
	args := []any{user}
	if after != nil {
		p := 0
		if after.Pinned {
			p = 1
		}
		q += ` AND (uc.pinned < ? OR (uc.pinned = ? AND (COALESCE(c.last_ts, 0) < ? OR (COALESCE(c.last_ts, 0) = ? AND uc.conv > ?))))`
		args = append(args, p, p, after.TS, after.TS, after.Conv)
	}
	q += ` ORDER BY uc.pinned DESC, COALESCE(c.last_ts, 0) DESC, uc.conv LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	out := []Conversation{}
	for rows.Next() {
		var c Conversation
		var pinned, muted int
		var sender, kind, body sql.NullString
		var flags, ts sql.NullInt64
		if err := rows.Scan(&c.Conv, &c.LastSeq, &c.ReadSeq, &c.LastTS, &pinned, &muted, &c.Mentions, &c.Unread, &sender, &kind, &body, &flags, &ts); err != nil {
			return nil, nil, err
		}
		c.Pinned, c.Muted = pinned != 0, muted != 0
		if c.Unread < 0 { // a backlog too long to count: every record counts
			c.Unread = c.LastSeq - c.ReadSeq
		}
		if sender.Valid {
			c.Last = &LastMessage{Seq: c.LastSeq, From: sender.String, Kind: kind.String, TS: ts.Int64}
			if flags.Int64&FlagRecalled == 0 {
				c.Last.Preview = Preview(body.String)
			}
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if len(out) <= limit {
		return out, nil, nil
	}
	out = out[:limit]
	l := out[limit-1]
	return out, &ConvCursor{Pinned: l.Pinned, TS: l.LastTS, Conv: l.Conv}, nil
}

// Preview is the first 120 characters of body.
func Preview(body string) string {
	if utf8.RuneCountInString(body) <= 120 {
		return body
	}
	n := 0
	for i := range body {
		if n == 120 {
			return body[:i]
		}
		n++
	}
	return body
}

// ConvSettings changes a user's settings of a conversation; nil leaves one
// as it is.
type ConvSettings struct {
	Pinned *bool `json:"pinned,omitempty"`
	Muted  *bool `json:"muted,omitempty"`
}

// SetConvSettings applies u to user's entry of conv; ErrNotFound when the
// user has no such conversation.
func (s *DB) SetConvSettings(ctx context.Context, user, conv string, u ConvSettings) error {
	var sets []string
	var args []any
	b := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	if u.Pinned != nil {
		sets, args = append(sets, "pinned = ?"), append(args, b(*u.Pinned))
	}
	if u.Muted != nil {
		sets, args = append(sets, "muted = ?"), append(args, b(*u.Muted))
	}
	var one int
	err := s.queryRow(ctx, "SELECT 1 FROM user_convs WHERE user_id = ? AND conv = ?", user, conv).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil || len(sets) == 0 {
		return err
	}
	_, err = s.db.ExecContext(ctx, "UPDATE user_convs SET "+strings.Join(sets, ", ")+" WHERE user_id = ? AND conv = ?", append(args, user, conv)...)
	return err
}

// MutedIn returns which of conv's members muted it.
func (s *DB) MutedIn(ctx context.Context, conv string) (map[string]bool, error) {
	rows, err := s.query(ctx, "SELECT user_id FROM user_convs WHERE conv = ? AND muted = 1", conv) // once per message
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	if err := addStrings(rows, out); err != nil {
		return nil, err
	}
	return out, nil
}

// scanAll reads every row of a query (rows, err as QueryContext returns
// them) into a T whose fields dest lists in column order, and closes rows.
// No rows is an empty, non-nil slice.
func scanAll[T any](rows *sql.Rows, err error, dest func(*T) []any) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		var x T
		if err := rows.Scan(dest(&x)...); err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, rows.Err()
}

// addStrings adds the one string column of rows to set and closes rows.
func addStrings(rows *sql.Rows, set map[string]bool) error {
	defer rows.Close()
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return err
		}
		set[v] = true
	}
	return rows.Err()
}

// GroupEvent is a membership or settings change of a group, written to the
// group_events outbox in the transaction that makes the change; the message
// service turns it into a group_event message of the group conversation.
type GroupEvent struct {
	ID    int64
	Group string
	Actor string
	// Body is the message body: {event, actor, targets, ...}.
	Body string
	// Recipients get the event besides the members at the time it is
	// delivered (removed members, the members of a dismissed group).
	Recipients []string
	CreatedAt  int64
}

func (s *DB) writeEvents(ctx context.Context, tx *sql.Tx, events []GroupEvent) error {
	for _, e := range events {
		if _, err := tx.ExecContext(ctx, "INSERT INTO group_events (group_id, actor, body, recipients, created_at) VALUES (?, ?, ?, ?, ?)",
			e.Group, e.Actor, e.Body, strings.Join(e.Recipients, ","), e.CreatedAt); err != nil {
			return fmt.Errorf("record group event: %w", err)
		}
	}
	return nil
}

// PendingGroupEvents returns up to limit outbox events, oldest first.
func (s *DB) PendingGroupEvents(ctx context.Context, limit int) ([]GroupEvent, error) {
	rows, err := s.query(ctx, "SELECT id, group_id, actor, body, recipients, created_at FROM group_events ORDER BY id LIMIT ?", limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []GroupEvent
	for rows.Next() {
		var e GroupEvent
		var rcpt string
		if err := rows.Scan(&e.ID, &e.Group, &e.Actor, &e.Body, &rcpt, &e.CreatedAt); err != nil {
			return nil, err
		}
		if rcpt != "" {
			e.Recipients = strings.Split(rcpt, ",")
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// DoneGroupEvent removes a delivered event from the outbox.
func (s *DB) DoneGroupEvent(ctx context.Context, id int64) error {
	_, err := s.db.ExecContext(ctx, "DELETE FROM group_events WHERE id = ?", id)
	return err
}
