package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Group roles.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// ErrGroupFull is returned when adding members would exceed the maximum.
var ErrGroupFull = errors.New("group is full")

// Group is a chat group. Version increases on every change of the group or
// its membership, so caches can tell whether they are current.
type Group struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Owner        string `json:"owner"`
	Announcement string `json:"announcement"`
	AllowInvites bool   `json:"allowInvites"`
	// JoinPolicy is how non-members get in: JoinInvite, JoinByRequest or
	// JoinOpen.
	JoinPolicy string `json:"joinPolicy"`
	// MuteAll: only the owner and admins may send.
	MuteAll     bool  `json:"muteAll"`
	MemberCount int   `json:"memberCount"`
	Version     int64 `json:"version"`
	CreatedAt   int64 `json:"createdAt"`
	// Remark is the reading member's private name for the group (GroupsOf
	// only; empty elsewhere).
	Remark string `json:"remark,omitempty"`
}

// Join policies of a group.
const (
	JoinInvite    = "invite"
	JoinByRequest = "request"
	JoinOpen      = "open"
)

// Member is one member of a group. JoinedSeq is the group conversation's
// last seq when the member joined: earlier messages are not visible to them.
type Member struct {
	UserID     string `json:"userId"`
	Role       string `json:"role"`
	MutedUntil int64  `json:"mutedUntil,omitempty"`
	Nickname   string `json:"nickname,omitempty"`
	JoinedSeq  int64  `json:"joinedSeq"`
	JoinedAt   int64  `json:"joinedAt"`
	// Remark is the member's private name for the group: never sent to
	// other members.
	Remark string `json:"-"`
}

const groupCols = "id, name, owner, announcement, allow_invites, member_count, version, created_at, join_policy, mute_all"

func scanGroup(sc interface{ Scan(...any) error }, extra ...any) (*Group, error) {
	var g Group
	var inv, muteAll int
	if err := sc.Scan(append([]any{&g.ID, &g.Name, &g.Owner, &g.Announcement, &inv, &g.MemberCount, &g.Version, &g.CreatedAt, &g.JoinPolicy, &muteAll}, extra...)...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	g.AllowInvites = inv != 0
	g.MuteAll = muteAll != 0
	return &g, nil
}

type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

func (s *DB) insertMembers(ctx context.Context, ex execer, gid string, conv string, members []Member) (int64, error) {
	var added int64
	const chunk = 400
	for i := 0; i < len(members); i += chunk {
		part := members[i:min(i+chunk, len(members))]
		q := s.insertIgnore() + " INTO group_members (group_id, user_id, role, muted_until, nickname, joined_seq, joined_at) VALUES " +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?), ", len(part)), ", ")
		args := make([]any, 0, 7*len(part))
		for _, m := range part {
			args = append(args, gid, m.UserID, m.Role, m.MutedUntil, m.Nickname, m.JoinedSeq, m.JoinedAt)
		}
		res, err := ex.ExecContext(ctx, q, args...)
		if err != nil {
			return added, fmt.Errorf("insert members: %w", err)
		}
		n, _ := res.RowsAffected()
		added += n
		q = s.upsertMaxMulti(len(part))
		args = args[:0]
		for _, m := range part {
			args = append(args, m.UserID, conv, m.JoinedSeq)
		}
		if _, err := ex.ExecContext(ctx, q, args...); err != nil {
			return added, fmt.Errorf("insert member conversations: %w", err)
		}
	}
	return added, nil
}

// upsertMaxMulti inserts n user_convs rows, raising read_seq on conflict.
func (s *DB) upsertMaxMulti(n int) string {
	q := "INSERT INTO user_convs (user_id, conv, read_seq) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", n), ", ")
	if s.dialect == MySQL {
		return q + " ON DUPLICATE KEY UPDATE read_seq = GREATEST(read_seq, VALUES(read_seq))"
	}
	return q + " ON CONFLICT(user_id, conv) DO UPDATE SET read_seq = MAX(read_seq, excluded.read_seq)"
}

func (s *DB) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// CreateGroup stores a group with its first members (the owner among them).
func (s *DB) CreateGroup(ctx context.Context, g Group, members []Member) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		inv := 0
		if g.AllowInvites {
			inv = 1
		}
		if g.JoinPolicy == "" {
			g.JoinPolicy = JoinInvite
		}
		muteAll := 0
		if g.MuteAll {
			muteAll = 1
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO im_groups ("+groupCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			g.ID, g.Name, g.Owner, g.Announcement, inv, 0, 1, g.CreatedAt, g.JoinPolicy, muteAll); err != nil {
			return fmt.Errorf("insert group: %w", err)
		}
		n, err := s.insertMembers(ctx, tx, g.ID, "g:"+g.ID, members)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE im_groups SET member_count = ? WHERE id = ?", n, g.ID)
		return err
	})
}

// GroupByID returns a group.
func (s *DB) GroupByID(ctx context.Context, id string) (*Group, error) {
	return scanGroup(s.queryRow(ctx, "SELECT "+groupCols+" FROM im_groups WHERE id = ?", id))
}

// GroupVersion returns a group's version (ErrNotFound when dismissed).
func (s *DB) GroupVersion(ctx context.Context, id string) (int64, error) {
	var v int64
	err := s.queryRow(ctx, "SELECT version FROM im_groups WHERE id = ?", id).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return v, err
}

const memberCols = "user_id, role, muted_until, nickname, joined_seq, joined_at, remark"

func scanMember(sc interface{ Scan(...any) error }) (*Member, error) {
	var m Member
	if err := sc.Scan(&m.UserID, &m.Role, &m.MutedUntil, &m.Nickname, &m.JoinedSeq, &m.JoinedAt, &m.Remark); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	return &m, nil
}

// GroupMember returns one membership (ErrNotFound when not a member).
func (s *DB) GroupMember(ctx context.Context, gid, uid string) (*Member, error) {
	return scanMember(s.queryRow(ctx, "SELECT "+memberCols+" FROM group_members WHERE group_id = ? AND user_id = ?", gid, uid))
}

// GroupMembers returns all members of a group, with the group's version read
// in the same transaction.
func (s *DB) GroupMembers(ctx context.Context, gid string) ([]Member, int64, error) {
	var out []Member
	var version int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, "SELECT version FROM im_groups WHERE id = ?", gid).Scan(&version); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		rows, err := tx.QueryContext(ctx, "SELECT "+memberCols+" FROM group_members WHERE group_id = ? ORDER BY joined_at, user_id", gid)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			m, err := scanMember(rows)
			if err != nil {
				return err
			}
			out = append(out, *m)
		}
		return rows.Err()
	})
	return out, version, err
}

// GroupsOf lists the groups user belongs to.
func (s *DB) GroupsOf(ctx context.Context, uid string) ([]Group, error) {
	rows, err := s.query(ctx, "SELECT g.id, g.name, g.owner, g.announcement, g.allow_invites, g.member_count, g.version, g.created_at, g.join_policy, g.mute_all, m.remark FROM im_groups g JOIN group_members m ON m.group_id = g.id WHERE m.user_id = ? ORDER BY g.created_at", uid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Group{}
	for rows.Next() {
		var remark string
		g, err := scanGroup(rows, &remark)
		if err != nil {
			return nil, err
		}
		g.Remark = remark
		out = append(out, *g)
	}
	return out, rows.Err()
}

// AddMembers adds users to a group (existing members are skipped); their
// visible history starts after the conversation's current last seq. It
// fails with ErrGroupFull when the group would exceed maxMembers.
func (s *DB) AddMembers(ctx context.Context, gid string, members []Member, maxMembers int, events ...GroupEvent) (int64, error) {
	var added int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.writeEvents(ctx, tx, events); err != nil {
			return err
		}
		n, err := s.addMembersTx(ctx, tx, gid, members, maxMembers)
		added = n
		return err
	})
	return added, err
}

// addMembersTx is AddMembers inside tx.
func (s *DB) addMembersTx(ctx context.Context, tx *sql.Tx, gid string, members []Member, maxMembers int) (int64, error) {
	var count int
	q := "SELECT member_count FROM im_groups WHERE id = ?"
	if s.dialect == MySQL {
		q += " FOR UPDATE"
	}
	if err := tx.QueryRowContext(ctx, q, gid).Scan(&count); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, ErrNotFound
		}
		return 0, err
	}
	var last int64
	if err := tx.QueryRowContext(ctx, "SELECT last_seq FROM convs WHERE conv = ?", "g:"+gid).Scan(&last); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	for i := range members {
		members[i].JoinedSeq = last
	}
	n, err := s.insertMembers(ctx, tx, gid, "g:"+gid, members)
	if err != nil {
		return 0, err
	}
	if count+int(n) > maxMembers {
		return 0, ErrGroupFull
	}
	_, err = tx.ExecContext(ctx, "UPDATE im_groups SET member_count = member_count + ?, version = version + 1 WHERE id = ?", n, gid)
	return n, err
}

// RemoveMember removes uid from the group and its conversation list.
func (s *DB) RemoveMember(ctx context.Context, gid, uid string, events ...GroupEvent) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.writeEvents(ctx, tx, events); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, "DELETE FROM group_members WHERE group_id = ? AND user_id = ?", gid, uid)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM user_convs WHERE user_id = ? AND conv = ?", uid, "g:"+gid); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE im_groups SET member_count = member_count - 1, version = version + 1 WHERE id = ?", gid)
		return err
	})
}

// GroupUpdate lists the group fields to change (nil: unchanged).
type GroupUpdate struct {
	Name         *string
	Announcement *string
	AllowInvites *bool
	JoinPolicy   *string
	MuteAll      *bool
}

// UpdateGroup changes group fields.
func (s *DB) UpdateGroup(ctx context.Context, gid string, u GroupUpdate, events ...GroupEvent) error {
	sets, args := []string{"version = version + 1"}, []any{}
	if u.Name != nil {
		sets, args = append(sets, "name = ?"), append(args, *u.Name)
	}
	if u.Announcement != nil {
		sets, args = append(sets, "announcement = ?"), append(args, *u.Announcement)
	}
	if u.AllowInvites != nil {
		v := 0
		if *u.AllowInvites {
			v = 1
		}
		sets, args = append(sets, "allow_invites = ?"), append(args, v)
	}
	if u.JoinPolicy != nil {
		sets, args = append(sets, "join_policy = ?"), append(args, *u.JoinPolicy)
	}
	if u.MuteAll != nil {
		v := 0
		if *u.MuteAll {
			v = 1
		}
		sets, args = append(sets, "mute_all = ?"), append(args, v)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE im_groups SET "+strings.Join(sets, ", ")+" WHERE id = ?", append(args, gid)...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return s.writeEvents(ctx, tx, events)
	})
}

// MemberUpdate lists the member fields to change (nil: unchanged).
type MemberUpdate struct {
	Role       *string
	MutedUntil *int64
	Nickname   *string
	Remark     *string
}

// UpdateMember changes one membership; a role change to owner transfers
// ownership (the old owner becomes admin).
func (s *DB) UpdateMember(ctx context.Context, gid, uid string, u MemberUpdate, events ...GroupEvent) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.writeEvents(ctx, tx, events); err != nil {
			return err
		}
		if u.Role != nil && *u.Role == RoleOwner {
			if _, err := tx.ExecContext(ctx, "UPDATE group_members SET role = ? WHERE group_id = ? AND role = ?", RoleAdmin, gid, RoleOwner); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "UPDATE im_groups SET owner = ? WHERE id = ?", uid, gid); err != nil {
				return err
			}
		}
		sets, args := []string{}, []any{}
		if u.Role != nil {
			sets, args = append(sets, "role = ?"), append(args, *u.Role)
		}
		if u.MutedUntil != nil {
			sets, args = append(sets, "muted_until = ?"), append(args, *u.MutedUntil)
		}
		if u.Nickname != nil {
			sets, args = append(sets, "nickname = ?"), append(args, *u.Nickname)
		}
		if u.Remark != nil {
			sets, args = append(sets, "remark = ?"), append(args, *u.Remark)
		}
		if len(sets) > 0 {
			res, err := tx.ExecContext(ctx, "UPDATE group_members SET "+strings.Join(sets, ", ")+" WHERE group_id = ? AND user_id = ?", append(args, gid, uid)...)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return ErrNotFound
			}
		}
		_, err := tx.ExecContext(ctx, "UPDATE im_groups SET version = version + 1 WHERE id = ?", gid)
		return err
	})
}

// DeleteGroup dismisses a group: members and the group go; stored messages
// stay (they are user data) but no one can read them through the group.
func (s *DB) DeleteGroup(ctx context.Context, gid string, events ...GroupEvent) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.writeEvents(ctx, tx, events); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM user_convs WHERE conv = ?", "g:"+gid); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM group_members WHERE group_id = ?", gid); err != nil {
			return err
		}
		// Join requests go with the group (pending ones would count against
		// their requesters' limit forever).
		if _, err := tx.ExecContext(ctx, "DELETE FROM group_join_requests WHERE group_id = ?", gid); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, "DELETE FROM im_groups WHERE id = ?", gid)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// LargeGroupsOf returns user's groups with more than threshold members
// (read diffusion) with their conversation's last seq and user's read cursor.
func (s *DB) LargeGroupsOf(ctx context.Context, uid string, threshold int) ([]Conversation, error) {
	rows, err := s.query(ctx, `SELECT g.id, COALESCE(c.last_seq, 0), COALESCE(uc.read_seq, 0) FROM group_members m JOIN im_groups g ON g.id = m.group_id
		LEFT JOIN convs c ON c.conv = CONCAT('g:', g.id)
		LEFT JOIN user_convs uc ON uc.user_id = m.user_id AND uc.conv = CONCAT('g:', g.id) WHERE m.user_id = ? AND g.member_count > ?`, uid, threshold)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Conversation
	for rows.Next() {
		var c Conversation
		if err := rows.Scan(&c.Conv, &c.LastSeq, &c.ReadSeq); err != nil {
			return nil, err
		}
		c.Conv = "g:" + c.Conv
		out = append(out, c)
	}
	return out, rows.Err()
}

// Join requests use the statuses of friend requests: RequestPending,
// RequestAccepted, RequestDeclined.

// Errors of join requests.
var (
	ErrAlreadyMember        = errors.New("already a member")
	ErrGroupRequestsFull    = errors.New("too many pending join requests for the group")
	ErrUserRequestsFull     = errors.New("too many pending join requests of the user")
	ErrRequestAlreadyClosed = errors.New("join request already decided")
)

// JoinRequest is a user's request to join a group with join policy
// "request".
type JoinRequest struct {
	ID        string `json:"id"`
	GroupID   string `json:"groupId"`
	UserID    string `json:"userId"`
	Message   string `json:"message"`
	Status    string `json:"status"`
	CreatedAt int64  `json:"createdAt"`
	DecidedBy string `json:"decidedBy,omitempty"`
	DecidedAt int64  `json:"decidedAt,omitempty"`
}

const joinRequestCols = "id, group_id, user_id, message, status, created_at, decided_by, decided_at"

func scanJoinRequest(sc interface{ Scan(...any) error }) (*JoinRequest, error) {
	var r JoinRequest
	if err := sc.Scan(&r.ID, &r.GroupID, &r.UserID, &r.Message, &r.Status, &r.CreatedAt, &r.DecidedBy, &r.DecidedAt); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	return &r, nil
}

// CreateJoinRequest stores a pending join request. It fails with ErrNotFound
// (no group), ErrAlreadyMember, ErrConflict (the user has a pending request
// for the group), ErrGroupRequestsFull (the group has maxPerGroup pending)
// or ErrUserRequestsFull (the user has maxPerUser pending).
func (s *DB) CreateJoinRequest(ctx context.Context, r JoinRequest, maxPerGroup, maxPerUser int, events ...GroupEvent) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		// Lock the group row (MySQL) so the checks below and the insert
		// are one step per group.
		if err := s.lockGroup(ctx, tx, r.GroupID); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM group_members WHERE group_id = ? AND user_id = ?", r.GroupID, r.UserID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrAlreadyMember
		}
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM group_join_requests WHERE group_id = ? AND user_id = ? AND status = ?", r.GroupID, r.UserID, RequestPending).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrConflict
		}
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM group_join_requests WHERE group_id = ? AND status = ?", r.GroupID, RequestPending).Scan(&n); err != nil {
			return err
		}
		if n >= maxPerGroup {
			return ErrGroupRequestsFull
		}
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM group_join_requests WHERE user_id = ? AND status = ?", r.UserID, RequestPending).Scan(&n); err != nil {
			return err
		}
		if n >= maxPerUser {
			return ErrUserRequestsFull
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO group_join_requests ("+joinRequestCols+") VALUES (?, ?, ?, ?, ?, ?, '', 0)",
			r.ID, r.GroupID, r.UserID, r.Message, RequestPending, r.CreatedAt); err != nil {
			return fmt.Errorf("insert join request: %w", err)
		}
		return s.writeEvents(ctx, tx, events)
	})
}

// JoinRequestByID returns a join request of group gid.
func (s *DB) JoinRequestByID(ctx context.Context, gid, rid string) (*JoinRequest, error) {
	return scanJoinRequest(s.queryRow(ctx, "SELECT "+joinRequestCols+" FROM group_join_requests WHERE id = ? AND group_id = ?", rid, gid))
}

// JoinRequests lists up to limit join requests of a group with status,
// oldest first.
func (s *DB) JoinRequests(ctx context.Context, gid, status string, limit int) ([]JoinRequest, error) {
	rows, err := s.query(ctx, "SELECT "+joinRequestCols+" FROM group_join_requests WHERE group_id = ? AND status = ? ORDER BY created_at, id LIMIT ?", gid, status, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []JoinRequest{}
	for rows.Next() {
		r, err := scanJoinRequest(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, rows.Err()
}

// DecideJoinRequest accepts or declines a pending join request of group
// gid; accepting adds the requester as a member (ErrGroupFull beyond
// maxMembers, and then nothing changes). A request already decided is
// ErrRequestAlreadyClosed, an unknown one ErrNotFound.
func (s *DB) DecideJoinRequest(ctx context.Context, gid, rid, by string, accept bool, now int64, maxMembers int, events ...GroupEvent) (*JoinRequest, error) {
	var out *JoinRequest
	err := s.tx(ctx, func(tx *sql.Tx) error {
		// The group row first, as CreateJoinRequest and addMembersTx lock
		// it (one lock order).
		if err := s.lockGroup(ctx, tx, gid); err != nil {
			return err
		}
		status := RequestDeclined
		if accept {
			status = RequestAccepted
		}
		res, err := tx.ExecContext(ctx, "UPDATE group_join_requests SET status = ?, decided_by = ?, decided_at = ? WHERE id = ? AND group_id = ? AND status = ?",
			status, by, now, rid, gid, RequestPending)
		if err != nil {
			return err
		}
		r, err := scanJoinRequest(tx.QueryRowContext(ctx, "SELECT "+joinRequestCols+" FROM group_join_requests WHERE id = ? AND group_id = ?", rid, gid))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrRequestAlreadyClosed
		}
		if accept {
			if _, err := s.addMembersTx(ctx, tx, gid, []Member{{UserID: r.UserID, Role: RoleMember, JoinedAt: now}}, maxMembers); err != nil {
				return err
			}
		}
		out = r
		return s.writeEvents(ctx, tx, events)
	})
	return out, err
}

// lockGroup locks the row of group gid until tx ends (MySQL; SQLite
// transactions are serial); ErrNotFound when there is no such group.
func (s *DB) lockGroup(ctx context.Context, tx *sql.Tx, gid string) error {
	q := "SELECT id FROM im_groups WHERE id = ?"
	if s.dialect == MySQL {
		q += " FOR UPDATE"
	}
	var id string
	if err := tx.QueryRowContext(ctx, q, gid).Scan(&id); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	}
	return nil
}
