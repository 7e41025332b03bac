package store

// migration is one schema version; statements differ per dialect only where
// the SQL does.
type migration struct {
	version int
	sqlite  []string
	mysql   []string
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
}
