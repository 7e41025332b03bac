package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/imkube/imkube/internal/username"
)

// migration is one schema version; statements differ per dialect only where
// the SQL does. fn, if set, runs after the statements: for changes SQL alone
// cannot make (values computed in Go). It must be safe to run again after a
// crash, since MySQL DDL is not transactional.
type migration struct {
	version int
	sqlite  []string
	mysql   []string
	fn      func(ctx context.Context, conn *sql.Conn, dialect string) error
}

const mysqlTable = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

var migrations = []migration{
	{
		version: 1,
		sqlite: []string{
			`CREATE TABLE users (
				id TEXT PRIMARY KEY,
				username TEXT NOT NULL UNIQUE,
				display_name TEXT NOT NULL,
				password_hash TEXT NOT NULL,
				created_at INTEGER NOT NULL)`,
			`CREATE TABLE messages (
				conv TEXT NOT NULL,
				seq INTEGER NOT NULL,
				mid TEXT NOT NULL UNIQUE,
				sender TEXT NOT NULL,
				cmid TEXT NOT NULL,
				kind TEXT NOT NULL,
				body TEXT NOT NULL,
				ts INTEGER NOT NULL,
				flags INTEGER NOT NULL DEFAULT 0,
				PRIMARY KEY (conv, seq),
				UNIQUE (sender, cmid))`,
			`CREATE TABLE inbox (
				user_id TEXT NOT NULL,
				inbox_seq INTEGER NOT NULL,
				conv TEXT NOT NULL,
				seq INTEGER NOT NULL,
				PRIMARY KEY (user_id, inbox_seq))`,
			`CREATE INDEX idx_inbox_conv ON inbox (conv, seq)`,
			`CREATE TABLE convs (
				conv TEXT PRIMARY KEY,
				last_seq INTEGER NOT NULL,
				last_ts INTEGER NOT NULL)`,
			`CREATE TABLE user_convs (
				user_id TEXT NOT NULL,
				conv TEXT NOT NULL,
				read_seq INTEGER NOT NULL DEFAULT 0,
				PRIMARY KEY (user_id, conv))`,
		},
		mysql: []string{
			`CREATE TABLE users (
				id VARCHAR(32) NOT NULL PRIMARY KEY,
				username VARCHAR(64) NOT NULL UNIQUE,
				display_name VARCHAR(128) NOT NULL,
				password_hash VARCHAR(255) NOT NULL,
				created_at BIGINT NOT NULL)` + mysqlTable,
			`CREATE TABLE messages (
				conv VARCHAR(80) NOT NULL,
				seq BIGINT NOT NULL,
				mid VARCHAR(32) NOT NULL,
				sender VARCHAR(32) NOT NULL,
				cmid VARCHAR(64) NOT NULL,
				kind VARCHAR(32) NOT NULL,
				body MEDIUMTEXT NOT NULL,
				ts BIGINT NOT NULL,
				flags INT NOT NULL DEFAULT 0,
				PRIMARY KEY (conv, seq),
				UNIQUE KEY uk_mid (mid),
				UNIQUE KEY uk_sender_cmid (sender, cmid))` + mysqlTable,
			`CREATE TABLE inbox (
				user_id VARCHAR(32) NOT NULL,
				inbox_seq BIGINT NOT NULL,
				conv VARCHAR(80) NOT NULL,
				seq BIGINT NOT NULL,
				PRIMARY KEY (user_id, inbox_seq),
				KEY idx_inbox_conv (conv, seq))` + mysqlTable,
			`CREATE TABLE convs (
				conv VARCHAR(80) NOT NULL PRIMARY KEY,
				last_seq BIGINT NOT NULL,
				last_ts BIGINT NOT NULL)` + mysqlTable,
			`CREATE TABLE user_convs (
				user_id VARCHAR(32) NOT NULL,
				conv VARCHAR(80) NOT NULL,
				read_seq BIGINT NOT NULL DEFAULT 0,
				PRIMARY KEY (user_id, conv))` + mysqlTable,
		},
	},
	{
		version: 2,
		sqlite: []string{
			`CREATE TABLE im_groups (
				id TEXT PRIMARY KEY,
				name TEXT NOT NULL,
				owner TEXT NOT NULL,
				announcement TEXT NOT NULL DEFAULT '',
				allow_invites INTEGER NOT NULL DEFAULT 0,
				member_count INTEGER NOT NULL DEFAULT 0,
				version INTEGER NOT NULL DEFAULT 1,
				created_at INTEGER NOT NULL)`,
			`CREATE TABLE group_members (
				group_id TEXT NOT NULL,
				user_id TEXT NOT NULL,
				role TEXT NOT NULL,
				muted_until INTEGER NOT NULL DEFAULT 0,
				nickname TEXT NOT NULL DEFAULT '',
				joined_seq INTEGER NOT NULL DEFAULT 0,
				joined_at INTEGER NOT NULL,
				PRIMARY KEY (group_id, user_id))`,
			`CREATE INDEX idx_group_members_user ON group_members (user_id)`,
		},
		mysql: []string{
			`CREATE TABLE im_groups (
				id VARCHAR(32) NOT NULL PRIMARY KEY,
				name VARCHAR(128) NOT NULL,
				owner VARCHAR(32) NOT NULL,
				announcement TEXT NOT NULL,
				allow_invites TINYINT NOT NULL DEFAULT 0,
				member_count INT NOT NULL DEFAULT 0,
				version BIGINT NOT NULL DEFAULT 1,
				created_at BIGINT NOT NULL)` + mysqlTable,
			`CREATE TABLE group_members (
				group_id VARCHAR(32) NOT NULL,
				user_id VARCHAR(32) NOT NULL,
				role VARCHAR(16) NOT NULL,
				muted_until BIGINT NOT NULL DEFAULT 0,
				nickname VARCHAR(128) NOT NULL DEFAULT '',
				joined_seq BIGINT NOT NULL DEFAULT 0,
				joined_at BIGINT NOT NULL,
				PRIMARY KEY (group_id, user_id),
				KEY idx_group_members_user (user_id))` + mysqlTable,
		},
	},
	{
		// A (sender, cmid) is claimed for one conversation before sequence
		// numbers are taken, so a cmid reused for another conversation is
		// refused without leaving a gap in that conversation's numbers.
		version: 3,
		sqlite: []string{
			`CREATE TABLE cmid_claims (
				sender TEXT NOT NULL,
				cmid TEXT NOT NULL,
				conv TEXT NOT NULL,
				PRIMARY KEY (sender, cmid))`,
			`INSERT OR IGNORE INTO cmid_claims (sender, cmid, conv) SELECT sender, cmid, conv FROM messages`,
		},
		mysql: []string{
			`CREATE TABLE IF NOT EXISTS cmid_claims (
				sender VARCHAR(32) NOT NULL,
				cmid VARCHAR(64) NOT NULL,
				conv VARCHAR(80) NOT NULL,
				PRIMARY KEY (sender, cmid))` + mysqlTable,
			`INSERT IGNORE INTO cmid_claims (sender, cmid, conv) SELECT sender, cmid, conv FROM messages`,
		},
	},
	{
		// Usernames are unique by username.Key (NFKC + case fold), stored
		// with their display case in username.
		version: 4,
		fn:      addUsernameKeys,
	},
	{
		// Refreshed (rotated) tokens, refused until they expire; see
		// auth.Revocations.
		version: 5,
		sqlite: []string{
			`CREATE TABLE revoked_tokens (
				jti TEXT PRIMARY KEY,
				expires_at INTEGER NOT NULL,
				revoked_at INTEGER NOT NULL)`,
			`CREATE INDEX idx_revoked_tokens_revoked_at ON revoked_tokens (revoked_at)`,
		},
		mysql: []string{
			`CREATE TABLE revoked_tokens (
				jti VARCHAR(64) NOT NULL PRIMARY KEY,
				expires_at BIGINT NOT NULL,
				revoked_at BIGINT NOT NULL,
				KEY idx_revoked_tokens_revoked_at (revoked_at))` + mysqlTable,
		},
	},
	{
		// Media uploads (issue 18): who uploaded which object, and which
		// conversations reference it (the right to fetch it); see media.go.
		version: 6,
		sqlite: []string{
			`CREATE TABLE media_uploads (
				object_key TEXT PRIMARY KEY,
				owner TEXT NOT NULL,
				kind TEXT NOT NULL,
				content_type TEXT NOT NULL,
				size INTEGER NOT NULL,
				name TEXT NOT NULL,
				created_at INTEGER NOT NULL,
				referenced INTEGER NOT NULL DEFAULT 0,
				thumb_key TEXT NOT NULL DEFAULT '',
				thumb_state TEXT NOT NULL DEFAULT '')`,
			`CREATE INDEX idx_media_uploads_owner ON media_uploads (owner, referenced)`,
			`CREATE INDEX idx_media_uploads_orphans ON media_uploads (referenced, created_at)`,
			`CREATE TABLE media_refs (
				object_key TEXT NOT NULL,
				conv TEXT NOT NULL,
				PRIMARY KEY (object_key, conv))`,
		},
		mysql: []string{
			`CREATE TABLE media_uploads (
				object_key VARCHAR(191) NOT NULL PRIMARY KEY,
				owner VARCHAR(32) NOT NULL,
				kind VARCHAR(16) NOT NULL,
				content_type VARCHAR(128) NOT NULL,
				size BIGINT NOT NULL,
				name VARCHAR(255) NOT NULL,
				created_at BIGINT NOT NULL,
				referenced TINYINT NOT NULL DEFAULT 0,
				thumb_key VARCHAR(191) NOT NULL DEFAULT '',
				thumb_state VARCHAR(16) NOT NULL DEFAULT '',
				KEY idx_media_uploads_owner (owner, referenced),
				KEY idx_media_uploads_orphans (referenced, created_at))` + mysqlTable,
			`CREATE TABLE media_refs (
				object_key VARCHAR(191) NOT NULL,
				conv VARCHAR(80) NOT NULL,
				PRIMARY KEY (object_key, conv))` + mysqlTable,
		},
	},
	{
		// Message lifecycle (issue 16): recall/edit records point at the
		// message they change (ref); replies and mentions; pinned and muted
		// conversations; messages a user deleted for themselves (hidden);
		// mentions still unread (user_id '*' for "all"); the outbox of group
		// events, written with each group change and turned into
		// group_event messages by the message service.
		version: 7,
		sqlite: []string{
			`ALTER TABLE messages ADD COLUMN ref INTEGER NOT NULL DEFAULT 0`,
			`ALTER TABLE messages ADD COLUMN reply_to INTEGER NOT NULL DEFAULT 0`,
			`ALTER TABLE messages ADD COLUMN mentions TEXT NOT NULL DEFAULT ''`,
			`ALTER TABLE user_convs ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0`,
			`ALTER TABLE user_convs ADD COLUMN muted INTEGER NOT NULL DEFAULT 0`,
			`CREATE INDEX idx_user_convs_conv_muted ON user_convs (conv, muted)`,
			`CREATE TABLE hidden (
				user_id TEXT NOT NULL,
				conv TEXT NOT NULL,
				seq INTEGER NOT NULL,
				PRIMARY KEY (user_id, conv, seq))`,
			`CREATE TABLE mentions (
				conv TEXT NOT NULL,
				user_id TEXT NOT NULL,
				seq INTEGER NOT NULL,
				PRIMARY KEY (conv, user_id, seq))`,
			`CREATE TABLE group_events (
				id INTEGER PRIMARY KEY AUTOINCREMENT,
				group_id TEXT NOT NULL,
				actor TEXT NOT NULL,
				body TEXT NOT NULL,
				recipients TEXT NOT NULL,
				created_at INTEGER NOT NULL)`,
		},
		mysql: []string{
			`ALTER TABLE messages ADD COLUMN ref BIGINT NOT NULL DEFAULT 0, ADD COLUMN reply_to BIGINT NOT NULL DEFAULT 0, ADD COLUMN mentions VARCHAR(3400) NOT NULL DEFAULT ''`,
			`ALTER TABLE user_convs ADD COLUMN pinned TINYINT NOT NULL DEFAULT 0, ADD COLUMN muted TINYINT NOT NULL DEFAULT 0, ADD KEY idx_user_convs_conv_muted (conv, muted)`,
			`CREATE TABLE hidden (
				user_id VARCHAR(32) NOT NULL,
				conv VARCHAR(80) NOT NULL,
				seq BIGINT NOT NULL,
				PRIMARY KEY (user_id, conv, seq))` + mysqlTable,
			`CREATE TABLE mentions (
				conv VARCHAR(80) NOT NULL,
				user_id VARCHAR(32) NOT NULL,
				seq BIGINT NOT NULL,
				PRIMARY KEY (conv, user_id, seq))` + mysqlTable,
			`CREATE TABLE group_events (
				id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
				group_id VARCHAR(32) NOT NULL,
				actor VARCHAR(32) NOT NULL,
				body MEDIUMTEXT NOT NULL,
				recipients MEDIUMTEXT NOT NULL,
				created_at BIGINT NOT NULL)` + mysqlTable,
		},
	},
	{
		// Inbox rows that are not messages: record 1 is a read cursor of
		// the inbox's owner (read_sync), so the user's other devices get
		// it by sync. Existing rows are messages (record 0).
		version: 8,
		fn:      addInboxRecord,
	},
	{
		// Social graph and accounts (issue 17): friend requests, friends
		// (one row per side), blocks, per-user DM policy and account
		// deletion, the login sessions a user can list and sign out, the
		// reason of a revocation (sent to the connections it closes), and the
		// outbox of social events that the message service turns into
		// inbox records (record 2) of each side. Every statement may run
		// again after a crash (MySQL DDL is not transactional); columns are
		// added by addSocialColumns when missing.
		version: 9,
		fn:      addSocialColumns,
		sqlite: []string{
			`CREATE TABLE IF NOT EXISTS friend_requests (
				id TEXT PRIMARY KEY,
				from_user TEXT NOT NULL,
				to_user TEXT NOT NULL,
				message TEXT NOT NULL DEFAULT '',
				status TEXT NOT NULL,
				pending_key TEXT NULL UNIQUE,
				created_at INTEGER NOT NULL,
				updated_at INTEGER NOT NULL)`,
			`CREATE INDEX IF NOT EXISTS idx_friend_requests_to ON friend_requests (to_user, status)`,
			`CREATE INDEX IF NOT EXISTS idx_friend_requests_from ON friend_requests (from_user, status)`,
			`CREATE TABLE IF NOT EXISTS friends (
				user_id TEXT NOT NULL,
				friend_id TEXT NOT NULL,
				remark TEXT NOT NULL DEFAULT '',
				since INTEGER NOT NULL,
				PRIMARY KEY (user_id, friend_id))`,
			`CREATE TABLE IF NOT EXISTS blocks (
				user_id TEXT NOT NULL,
				blocked_id TEXT NOT NULL,
				created_at INTEGER NOT NULL,
				PRIMARY KEY (user_id, blocked_id))`,
			`CREATE INDEX IF NOT EXISTS idx_blocks_blocked ON blocks (blocked_id)`,
			`CREATE TABLE IF NOT EXISTS user_sessions (
				id TEXT PRIMARY KEY,
				user_id TEXT NOT NULL,
				device TEXT NOT NULL DEFAULT '',
				created_at INTEGER NOT NULL,
				last_used_at INTEGER NOT NULL,
				expires_at INTEGER NOT NULL,
				revoked_at INTEGER NOT NULL DEFAULT 0)`,
			`CREATE INDEX IF NOT EXISTS idx_user_sessions_user ON user_sessions (user_id, revoked_at)`,
			`CREATE TABLE IF NOT EXISTS social_events (
				id INTEGER PRIMARY KEY AUTOINCREMENT,
				user_id TEXT NOT NULL,
				kind TEXT NOT NULL,
				body TEXT NOT NULL,
				created_at INTEGER NOT NULL,
				inbox_seq INTEGER NOT NULL DEFAULT 0,
				claimed_until INTEGER NOT NULL DEFAULT 0)`,
			`CREATE INDEX IF NOT EXISTS idx_social_events_pending ON social_events (inbox_seq, id)`,
		},
		mysql: []string{
			`CREATE TABLE IF NOT EXISTS friend_requests (
				id VARCHAR(32) NOT NULL PRIMARY KEY,
				from_user VARCHAR(32) NOT NULL,
				to_user VARCHAR(32) NOT NULL,
				message VARCHAR(1024) NOT NULL DEFAULT '',
				status VARCHAR(16) NOT NULL,
				pending_key VARCHAR(80) NULL,
				created_at BIGINT NOT NULL,
				updated_at BIGINT NOT NULL,
				UNIQUE KEY uk_friend_requests_pending (pending_key),
				KEY idx_friend_requests_to (to_user, status),
				KEY idx_friend_requests_from (from_user, status))` + mysqlTable,
			`CREATE TABLE IF NOT EXISTS friends (
				user_id VARCHAR(32) NOT NULL,
				friend_id VARCHAR(32) NOT NULL,
				remark VARCHAR(255) NOT NULL DEFAULT '',
				since BIGINT NOT NULL,
				PRIMARY KEY (user_id, friend_id))` + mysqlTable,
			`CREATE TABLE IF NOT EXISTS blocks (
				user_id VARCHAR(32) NOT NULL,
				blocked_id VARCHAR(32) NOT NULL,
				created_at BIGINT NOT NULL,
				PRIMARY KEY (user_id, blocked_id),
				KEY idx_blocks_blocked (blocked_id))` + mysqlTable,
			`CREATE TABLE IF NOT EXISTS user_sessions (
				id VARCHAR(64) NOT NULL PRIMARY KEY,
				user_id VARCHAR(32) NOT NULL,
				device VARCHAR(255) NOT NULL DEFAULT '',
				created_at BIGINT NOT NULL,
				last_used_at BIGINT NOT NULL,
				expires_at BIGINT NOT NULL,
				revoked_at BIGINT NOT NULL DEFAULT 0,
				KEY idx_user_sessions_user (user_id, revoked_at))` + mysqlTable,
			`CREATE TABLE IF NOT EXISTS social_events (
				id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
				user_id VARCHAR(32) NOT NULL,
				kind VARCHAR(32) NOT NULL,
				body TEXT NOT NULL,
				created_at BIGINT NOT NULL,
				inbox_seq BIGINT NOT NULL DEFAULT 0,
				claimed_until BIGINT NOT NULL DEFAULT 0,
				KEY idx_social_events_pending (inbox_seq, id))` + mysqlTable,
		},
	},
	{
		// Integrations (issue 17): the webhook outbox (after-send and event
		// hooks, offline pushes; written in the message's transaction), the
		// lease that lets one message-service replica deliver it, device
		// push tokens and banned users.
		version: 10,
		sqlite: []string{
			`CREATE TABLE webhook_outbox (
				id INTEGER PRIMARY KEY AUTOINCREMENT,
				target TEXT NOT NULL,
				okey TEXT NOT NULL,
				kind TEXT NOT NULL,
				payload TEXT NOT NULL,
				attempts INTEGER NOT NULL DEFAULT 0,
				next_at INTEGER NOT NULL DEFAULT 0,
				created_at INTEGER NOT NULL)`,
			`CREATE TABLE webhook_lease (
				name TEXT PRIMARY KEY,
				owner TEXT NOT NULL,
				until_ms INTEGER NOT NULL)`,
			`CREATE TABLE push_tokens (
				user_id TEXT NOT NULL,
				device TEXT NOT NULL,
				provider TEXT NOT NULL,
				token TEXT NOT NULL,
				updated_at INTEGER NOT NULL,
				PRIMARY KEY (user_id, device))`,
			`CREATE TABLE user_bans (
				user_id TEXT PRIMARY KEY,
				reason TEXT NOT NULL,
				banned_at INTEGER NOT NULL)`,
		},
		mysql: []string{
			`CREATE TABLE webhook_outbox (
				id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
				target VARCHAR(16) NOT NULL,
				okey VARCHAR(96) NOT NULL,
				kind VARCHAR(32) NOT NULL,
				payload MEDIUMTEXT NOT NULL,
				attempts INT NOT NULL DEFAULT 0,
				next_at BIGINT NOT NULL DEFAULT 0,
				created_at BIGINT NOT NULL)` + mysqlTable,
			`CREATE TABLE webhook_lease (
				name VARCHAR(32) NOT NULL PRIMARY KEY,
				owner VARCHAR(128) NOT NULL,
				until_ms BIGINT NOT NULL)` + mysqlTable,
			`CREATE TABLE push_tokens (
				user_id VARCHAR(32) NOT NULL,
				device VARCHAR(64) NOT NULL,
				provider VARCHAR(16) NOT NULL,
				token VARCHAR(4096) NOT NULL,
				updated_at BIGINT NOT NULL,
				PRIMARY KEY (user_id, device))` + mysqlTable,
			`CREATE TABLE user_bans (
				user_id VARCHAR(32) NOT NULL PRIMARY KEY,
				reason VARCHAR(512) NOT NULL,
				banned_at BIGINT NOT NULL)` + mysqlTable,
		},
	},
	{
		// Groups (issue 17): a group's join policy (invite, request, open)
		// and mute-all switch, a member's private remark for the group, and
		// join requests. Every statement may run again after a crash; the
		// columns are added by addGroupColumns when missing.
		version: 11,
		fn:      addGroupColumns,
		sqlite: []string{
			`CREATE TABLE IF NOT EXISTS group_join_requests (
				id TEXT PRIMARY KEY,
				group_id TEXT NOT NULL,
				user_id TEXT NOT NULL,
				message TEXT NOT NULL,
				status TEXT NOT NULL,
				created_at INTEGER NOT NULL,
				decided_by TEXT NOT NULL DEFAULT '',
				decided_at INTEGER NOT NULL DEFAULT 0)`,
			`CREATE INDEX IF NOT EXISTS idx_group_join_requests_group ON group_join_requests (group_id, status, created_at)`,
			`CREATE INDEX IF NOT EXISTS idx_group_join_requests_user ON group_join_requests (user_id, status)`,
		},
		mysql: []string{
			`CREATE TABLE IF NOT EXISTS group_join_requests (
				id VARCHAR(32) NOT NULL PRIMARY KEY,
				group_id VARCHAR(32) NOT NULL,
				user_id VARCHAR(32) NOT NULL,
				message VARCHAR(1024) NOT NULL,
				status VARCHAR(16) NOT NULL,
				created_at BIGINT NOT NULL,
				decided_by VARCHAR(32) NOT NULL DEFAULT '',
				decided_at BIGINT NOT NULL DEFAULT 0,
				KEY idx_group_join_requests_group (group_id, status, created_at),
				KEY idx_group_join_requests_user (user_id, status))` + mysqlTable,
		},
	},
}

// addGroupColumns adds im_groups.join_policy, im_groups.mute_all and
// group_members.remark where they are missing (migration 11). Existing
// groups get join policy "invite".
func addGroupColumns(ctx context.Context, conn *sql.Conn, dialect string) error {
	cols := []struct{ table, column, sqlite, mysql string }{
		{"im_groups", "join_policy", "TEXT NOT NULL DEFAULT 'invite'", "VARCHAR(16) NOT NULL DEFAULT 'invite'"},
		{"im_groups", "mute_all", "INTEGER NOT NULL DEFAULT 0", "TINYINT NOT NULL DEFAULT 0"},
		{"group_members", "remark", "TEXT NOT NULL DEFAULT ''", "VARCHAR(256) NOT NULL DEFAULT ''"},
	}
	for _, c := range cols {
		has, err := hasColumn(ctx, conn, dialect, c.table, c.column)
		if err != nil {
			return err
		}
		if has {
			continue
		}
		typ := c.sqlite
		if dialect == MySQL {
			typ = c.mysql
		}
		if _, err := conn.ExecContext(ctx, "ALTER TABLE "+c.table+" ADD COLUMN "+c.column+" "+typ); err != nil {
			return fmt.Errorf("add %s.%s: %w", c.table, c.column, err)
		}
	}
	return nil
}

// addUsernameKeys adds users.username_key, fills it for existing accounts
// and makes it unique. Accounts created before usernames were compared by
// key may be case twins ("vict_x" and "VICT_X"): the oldest keeps the key;
// each later twin gets "<key>#<id>" ('#' is never in a username), so it stays
// reachable by its exact username (UserByUsername tries that first) and no
// new twin can register.
func addUsernameKeys(ctx context.Context, conn *sql.Conn, dialect string) error {
	has, err := hasColumn(ctx, conn, dialect, "users", "username_key")
	if err != nil {
		return err
	}
	if !has {
		typ := "TEXT"
		if dialect == MySQL {
			typ = "VARCHAR(191)"
		}
		if _, err := conn.ExecContext(ctx, "ALTER TABLE users ADD COLUMN username_key "+typ+" NULL"); err != nil {
			return err
		}
	}
	rows, err := conn.QueryContext(ctx, "SELECT id, username, username_key FROM users ORDER BY created_at, id")
	if err != nil {
		return err
	}
	type row struct{ id, name string }
	var todo []row
	taken := map[string]bool{}
	for rows.Next() {
		var r row
		var key sql.NullString
		if err := rows.Scan(&r.id, &r.name, &key); err != nil {
			rows.Close()
			return err
		}
		if key.Valid {
			taken[key.String] = true
		} else {
			todo = append(todo, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range todo {
		key := username.Key(r.name)
		if taken[key] {
			key += "#" + r.id
		}
		taken[key] = true
		if _, err := conn.ExecContext(ctx, "UPDATE users SET username_key = ? WHERE id = ?", key, r.id); err != nil {
			return fmt.Errorf("set the username key of user %s: %w", r.id, err)
		}
	}
	if dialect == MySQL {
		if _, err := conn.ExecContext(ctx, "ALTER TABLE users MODIFY username_key VARCHAR(191) NOT NULL"); err != nil {
			return err
		}
		var n int
		if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'users' AND index_name = 'uk_users_username_key'").Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			_, err = conn.ExecContext(ctx, "ALTER TABLE users ADD UNIQUE KEY uk_users_username_key (username_key)")
		}
		return err
	}
	_, err = conn.ExecContext(ctx, "CREATE UNIQUE INDEX IF NOT EXISTS uk_users_username_key ON users (username_key)")
	return err
}

// addInboxRecord adds inbox.record (0: a message, 1: a read cursor).
func addInboxRecord(ctx context.Context, conn *sql.Conn, dialect string) error {
	has, err := hasColumn(ctx, conn, dialect, "inbox", "record")
	if err != nil || has {
		return err
	}
	typ := "INTEGER"
	if dialect == MySQL {
		typ = "TINYINT"
	}
	_, err = conn.ExecContext(ctx, "ALTER TABLE inbox ADD COLUMN record "+typ+" NOT NULL DEFAULT 0")
	return err
}

func hasColumn(ctx context.Context, conn *sql.Conn, dialect, table, column string) (bool, error) {
	var n int
	var err error
	if dialect == MySQL {
		err = conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ?", table, column).Scan(&n)
	} else {
		err = conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?", table, column).Scan(&n)
	}
	return n > 0, err
}

// addSocialColumns adds users.dm_policy, users.deleted_at and
// revoked_tokens.reason where they are missing (migration 9).
func addSocialColumns(ctx context.Context, conn *sql.Conn, dialect string) error {
	cols := []struct{ table, column, sqlite, mysql string }{
		{"users", "dm_policy", "TEXT NOT NULL DEFAULT ''", "VARCHAR(16) NOT NULL DEFAULT ''"},
		{"users", "deleted_at", "INTEGER NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0"},
		{"revoked_tokens", "reason", "TEXT NOT NULL DEFAULT ''", "VARCHAR(32) NOT NULL DEFAULT ''"},
	}
	for _, c := range cols {
		has, err := hasColumn(ctx, conn, dialect, c.table, c.column)
		if err != nil || has {
			if err != nil {
				return err
			}
			continue
		}
		typ := c.sqlite
		if dialect == MySQL {
			typ = c.mysql
		}
		if _, err := conn.ExecContext(ctx, "ALTER TABLE "+c.table+" ADD COLUMN "+c.column+" "+typ); err != nil {
			return fmt.Errorf("add %s.%s: %w", c.table, c.column, err)
		}
	}
	return nil
}
