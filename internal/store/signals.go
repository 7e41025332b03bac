package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// syncCols are msgCols for a LEFT JOIN of inbox, messages and social events
// (e): read records have no message, so their message columns come back
// empty and conv/seq from the inbox row; event records take kind, body and
// ts from their event.
const syncCols = "i.conv, i.seq, COALESCE(m.mid, ''), COALESCE(m.sender, ''), COALESCE(m.cmid, ''), COALESCE(m.kind, e.kind, ''), " +
	"COALESCE(m.body, e.body, ''), COALESCE(m.ts, e.created_at, 0), COALESCE(m.flags, 0), COALESCE(m.ref, 0), COALESCE(m.reply_to, 0), COALESCE(m.mentions, ''), " +
	"i.inbox_seq, i.record"

// ReadSeq returns user's read cursor in conv (0 when the user has no
// conversation row).
func (s *DB) ReadSeq(ctx context.Context, user, conv string) (int64, error) {
	var n int64
	err := s.queryRow(ctx, "SELECT read_seq FROM user_convs WHERE user_id = ? AND conv = ?", user, conv).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

// SetReadRecord is SetRead that, when the cursor moved and inboxSeq > 0,
// also writes the read record (user, inboxSeq) -> (conv, new cursor) in the
// same transaction, so the user's other devices get the move by sync.
func (s *DB) SetReadRecord(ctx context.Context, user, conv string, seq, inboxSeq int64) (got int64, moved bool, err error) {
	last, err := s.LastSeq(ctx, conv)
	if err != nil {
		return 0, false, err
	}
	seq = min(seq, last)
	err = s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE user_convs SET read_seq = ? WHERE user_id = ? AND conv = ? AND read_seq < ?", seq, user, conv, seq)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		moved = true
		if inboxSeq <= 0 {
			return nil
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO inbox (user_id, inbox_seq, conv, seq, record) VALUES (?, ?, ?, ?, ?)", user, inboxSeq, conv, seq, RecordRead)
		if err != nil {
			return fmt.Errorf("insert read record: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return seq, moved, nil
}

// GroupReadCounts counts the members of group gid who could see message seq
// (joined before it) other than exclude (its sender): how many have read
// it (read cursor >= seq) and how many not. One aggregate over the members'
// cursors, whatever the number of messages.
func (s *DB) GroupReadCounts(ctx context.Context, gid string, seq int64, exclude string) (read, unread int64, err error) {
	var r, n sql.NullInt64
	err = s.queryRow(ctx, `SELECT SUM(CASE WHEN COALESCE(uc.read_seq, 0) >= ? THEN 1 ELSE 0 END), COUNT(*)
		FROM group_members gm LEFT JOIN user_convs uc ON uc.user_id = gm.user_id AND uc.conv = ?
		WHERE gm.group_id = ? AND gm.joined_seq < ? AND gm.user_id <> ?`, seq, "g:"+gid, gid, seq, exclude).Scan(&r, &n)
	return r.Int64, n.Int64 - r.Int64, err
}

// GroupReaders lists the members of gid other than exclude whose read
// cursor is at or past seq (and who joined before it), sorted.
func (s *DB) GroupReaders(ctx context.Context, gid string, seq int64, exclude string) ([]string, error) {
	rows, err := s.query(ctx, `SELECT gm.user_id FROM group_members gm JOIN user_convs uc ON uc.user_id = gm.user_id AND uc.conv = ?
		WHERE gm.group_id = ? AND gm.joined_seq < ? AND gm.user_id <> ? AND uc.read_seq >= ? ORDER BY gm.user_id`, "g:"+gid, gid, seq, exclude, seq)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// SharedWith returns the users of others who are user's friends or share a
// conversation with user: a one-to-one chat with a message, or a group both
// belong to. user itself counts as shared.
func (s *DB) SharedWith(ctx context.Context, user string, others []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(others) == 0 {
		return out, nil
	}
	ids := make([]any, 0, len(others)+1)
	ids = append(ids, user)
	for _, o := range others {
		ids = append(ids, o)
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(others)), ", ")
	rows, err := s.query(ctx, "SELECT friend_id FROM friends WHERE user_id = ? AND friend_id IN ("+marks+")", ids...)
	if err != nil {
		return nil, err
	}
	if err := addStrings(rows, out); err != nil {
		return nil, err
	}
	convs := make([]any, 0, len(others)+1)
	convs = append(convs, user)
	byConv := map[string]string{}
	for _, o := range others {
		if o == user {
			out[o] = true
			continue
		}
		if out[o] {
			continue
		}
		c := "u:" + min(user, o) + ":" + max(user, o)
		byConv[c] = o
		convs = append(convs, c)
	}
	if len(convs) == 1 {
		return out, nil
	}
	marks = strings.TrimSuffix(strings.Repeat("?, ", len(convs)-1), ", ")
	rows, err = s.query(ctx, "SELECT conv FROM user_convs WHERE user_id = ? AND conv IN ("+marks+")", convs...)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return nil, err
		}
		out[byConv[c]] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var rest []any
	rest = append(rest, user)
	for _, o := range byConv {
		if !out[o] {
			rest = append(rest, o)
		}
	}
	if len(rest) == 1 {
		return out, nil
	}
	marks = strings.TrimSuffix(strings.Repeat("?, ", len(rest)-1), ", ")
	rows, err = s.query(ctx, `SELECT DISTINCT b.user_id FROM group_members a JOIN group_members b ON b.group_id = a.group_id
		WHERE a.user_id = ? AND b.user_id IN (`+marks+`)`, rest...)
	if err != nil {
		return nil, err
	}
	if err := addStrings(rows, out); err != nil {
		return nil, err
	}
	return out, nil
}
