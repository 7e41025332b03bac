package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/username"
)

// DB is the SQL store.
type DB struct {
	db      *sql.DB
	dialect string
	// migrateTo stops migrations after this version (tests of migrations; 0: all).
	migrateTo int
	group     groupCommit // SQLite: saves written in one transaction (groupcommit.go)
	stmts     sync.Map    // SQLite: query -> *sql.Stmt
	// rdb serves reads (read and readRow): in SQLite a pool of read-only
	// connections besides the one writer, so reads do not queue behind the
	// group commit (WAL lets readers run alongside the writer); in MySQL
	// the same pool as db.
	rdb     *sql.DB
	rstmts  sync.Map                  // SQLite: query -> *sql.Stmt on rdb
	nrstmts atomic.Int32              // statements in rstmts
	pcache  atomic.Pointer[pullCache] // SQLite: latest messages for pulls (pullcache.go)
	// outbox, if set, adds a webhook outbox entry to a message's transaction.
	outbox       OutboxHook
	socialOutbox SocialOutboxHook
	// stopCheckpoints ends the SQLite checkpointer (checkpoint.go).
	stopCheckpoints func()
}

// PoolConfig bounds the connection pool (MySQL).
type PoolConfig struct {
	MaxOpen     int
	MaxIdle     int
	MaxLifetime time.Duration
}

// OpenSQLite opens (creating if needed) the embedded database in dir and
// applies migrations.
func OpenSQLite(ctx context.Context, dir string) (*DB, error) {
	return openSQLite(ctx, dir, 0)
}

func openSQLite(ctx context.Context, dir string, migrateTo int) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data folder: %w", err)
	}
	path := filepath.Join(dir, "imkube.db")
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=wal_autocheckpoint(" + strconv.Itoa(walBackstopPages) + ")&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// One writer at a time is SQLite's model; a single connection also
	// avoids SQLITE_BUSY between our own connections.
	db.SetMaxOpenConns(1)
	s := &DB{db: db, rdb: db, dialect: SQLite, migrateTo: migrateTo}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	// Readers: WAL lets them read the last commit while the writer writes,
	// so reads (the direct-chat check, pulls, syncs) do not wait for the
	// group commit on the writer connection. query_only: they never write.
	rdb, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(sqliteReaders)
	rdb.SetMaxIdleConns(sqliteReaders)
	s.rdb = rdb
	if err := s.SetPullCache(DefaultPullCache); err != nil {
		s.Close()
		return nil, err
	}
	if s.stopCheckpoints, err = startCheckpoints(path); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// sqliteReaders is the number of SQLite read connections.
const sqliteReaders = 4

// OpenMySQL connects to MySQL/MariaDB with dsn (go-sql-driver format) and
// applies migrations; concurrent starts of several replicas are safe.
func OpenMySQL(ctx context.Context, dsn string, pool PoolConfig) (*DB, error) {
	return openMySQL(ctx, dsn, pool, 0)
}

func openMySQL(ctx context.Context, dsn string, pool PoolConfig, migrateTo int) (*DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql dsn: %w", err)
	}
	cfg.ParseTime = true
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["charset"] = "utf8mb4"
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("open mysql: %w", err)
	}
	if pool.MaxOpen == 0 {
		pool.MaxOpen = 32
	}
	if pool.MaxIdle == 0 {
		pool.MaxIdle = pool.MaxOpen
	}
	if pool.MaxLifetime == 0 {
		pool.MaxLifetime = 30 * time.Minute
	}
	db.SetMaxOpenConns(pool.MaxOpen)
	db.SetMaxIdleConns(pool.MaxIdle)
	db.SetConnMaxLifetime(pool.MaxLifetime)
	s := &DB{db: db, rdb: db, dialect: MySQL, migrateTo: migrateTo}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// SQL returns the underlying database (for services that keep their own
// tables in the same database, such as the sequence bounds).
func (s *DB) SQL() *sql.DB { return s.db }

// Dialect returns SQLite or MySQL.
func (s *DB) Dialect() string { return s.dialect }

// Close closes the pool.
func (s *DB) Close() error {
	if s.stopCheckpoints != nil {
		s.stopCheckpoints()
	}
	s.closeStmts()
	if s.rdb != s.db {
		s.rdb.Close()
	}
	return s.db.Close()
}

// Ping checks the database is reachable.
func (s *DB) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

func (s *DB) migrate(ctx context.Context) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Close()
	if s.dialect == MySQL {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK('imkube_migrate', 60)").Scan(&got); err != nil || got.Int64 != 1 {
			return fmt.Errorf("migrate: take lock: %v", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK('imkube_migrate')")
	}
	if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS schema_migrations (version INT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)"); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("migrate: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	for _, m := range migrations {
		if applied[m.version] || (s.migrateTo > 0 && m.version > s.migrateTo) {
			continue
		}
		stmts := m.sqlite
		if s.dialect == MySQL {
			stmts = m.mysql
		}
		// MySQL DDL commits implicitly; statements are idempotent enough
		// because the version row is written last and the lock is held.
		for _, st := range stmts {
			if _, err := conn.ExecContext(ctx, st); err != nil {
				return fmt.Errorf("migrate to version %d: %w", m.version, err)
			}
		}
		if m.fn != nil {
			if err := m.fn(ctx, conn, s.dialect); err != nil {
				return fmt.Errorf("migrate to version %d: %w", m.version, err)
			}
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", m.version, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("migrate: record version %d: %w", m.version, err)
		}
	}
	return nil
}

func isUniqueViolation(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1062
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

func (s *DB) greatest() string {
	if s.dialect == MySQL {
		return "GREATEST"
	}
	return "MAX"
}

func (s *DB) insertIgnore() string {
	if s.dialect == MySQL {
		return "INSERT IGNORE"
	}
	return "INSERT OR IGNORE"
}

// upsertMax returns an INSERT that on key conflict raises cols to the max of
// the old and new values.
func (s *DB) upsertMax(table string, cols []string, key []string, maxCols []string) string {
	q := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", table, strings.Join(cols, ", "), strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", "))
	var sets []string
	for _, c := range maxCols {
		if s.dialect == MySQL {
			sets = append(sets, fmt.Sprintf("%s = GREATEST(%s, VALUES(%s))", c, c, c))
		} else {
			sets = append(sets, fmt.Sprintf("%s = MAX(%s, excluded.%s)", c, c, c))
		}
	}
	if s.dialect == MySQL {
		return q + " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
	}
	return q + fmt.Sprintf(" ON CONFLICT(%s) DO UPDATE SET ", strings.Join(key, ", ")) + strings.Join(sets, ", ")
}

// CreateUser stores a new account; ErrConflict when the username, or
// another with the same username.Key, is taken.
func (s *DB) CreateUser(ctx context.Context, u User) error {
	_, err := s.db.ExecContext(ctx, "INSERT INTO users (id, username, username_key, display_name, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
		u.ID, u.Username, username.Key(u.Username), u.DisplayName, u.PasswordHash, u.CreatedAt)
	if isUniqueViolation(err) {
		return ErrConflict
	}
	return err
}

const userCols = "id, username, display_name, password_hash, created_at, dm_policy, deleted_at"

func scanUser(row *sql.Row) (*User, error) {
	var u User
	var deleted int64
	if err := row.Scan(&u.ID, &u.Username, &u.DisplayName, &u.PasswordHash, &u.CreatedAt, &u.DMPolicy, &deleted); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	u.Deleted = deleted > 0
	return &u, nil
}

// UserByUsername finds an account by its username in any case or Unicode
// form (by username.Key). A case twin registered before keys existed (see
// addUsernameKeys) is found by its exact spelling, which is tried first.
func (s *DB) UserByUsername(ctx context.Context, name string) (*User, error) {
	return scanUser(s.queryRow(ctx, "SELECT "+userCols+" FROM users WHERE (username = ? OR username_key = ?) AND deleted_at = 0 ORDER BY CASE WHEN username = ? THEN 0 ELSE 1 END LIMIT 1",
		name, username.Key(name), name))
}

// UserByID finds an account by id, deleted accounts included (Deleted set).
func (s *DB) UserByID(ctx context.Context, id string) (*User, error) {
	return scanUser(s.queryRow(ctx, "SELECT "+userCols+" FROM users WHERE id = ?", id))
}

// UserExists reports whether an account with id exists (and was not deleted).
func (s *DB) UserExists(ctx context.Context, id string) (bool, error) {
	var one int
	err := s.queryRow(ctx, "SELECT 1 FROM users WHERE id = ? AND deleted_at = 0", id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

const msgCols = "m.conv, m.seq, m.mid, m.sender, m.cmid, m.kind, m.body, m.ts, m.flags, m.ref, m.reply_to, m.mentions"

func scanMessage(sc interface{ Scan(...any) error }, extra ...any) (Message, error) {
	var m Message
	dst := append([]any{&m.Conv, &m.Seq, &m.MID, &m.Sender, &m.CMID, &m.Kind, &m.Body, &m.TS, &m.Flags, &m.Ref, &m.ReplyTo, &m.Mentions}, extra...)
	err := sc.Scan(dst...)
	return m, err
}

// MessageByCMID finds the message a sender stored with a client message id.
func (s *DB) MessageByCMID(ctx context.Context, sender, cmid string) (*Message, error) {
	m, err := scanMessage(s.queryRow(ctx, "SELECT "+msgCols+" FROM messages m WHERE m.sender = ? AND m.cmid = ?", sender, cmid))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// ClaimCMID claims a sender's client message id for conv. fresh is true
// when this call made the claim; otherwise owner is the conversation that
// holds it (conv itself for a retry).
func (s *DB) ClaimCMID(ctx context.Context, sender, cmid, conv string) (fresh bool, owner string, err error) {
	res, err := s.exec(ctx, s.insertIgnore()+" INTO cmid_claims (sender, cmid, conv) VALUES (?, ?, ?)", sender, cmid, conv)
	if err != nil {
		return false, "", err
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, "", err
	} else if n > 0 {
		return true, conv, nil
	}
	err = s.queryRow(ctx, "SELECT conv FROM cmid_claims WHERE sender = ? AND cmid = ?", sender, cmid).Scan(&owner)
	return false, owner, err
}

// SaveMessage stores m, its inbox rows and the conversation state in one
// transaction. participants get a conversation row if they have none (direct
// chats; group members get theirs when they join). The sender's read cursor
// moves to the message. ErrDuplicate when (sender, cmid) is already stored.
func (s *DB) SaveMessage(ctx context.Context, m Message, inbox []InboxEntry, participants []string) (err error) {
	return s.saveMessage(ctx, m, inbox, participants, nil)
}

// saveMessage is SaveMessage with apply run first in the same transaction
// (the change a recall, edit or delete record makes).
func (s *DB) saveMessage(ctx context.Context, m Message, inbox []InboxEntry, participants []string, apply func(tx *sql.Tx) error) (err error) {
	return s.saveMessageEffect(ctx, m, inbox, participants, apply, nil)
}

// saveMessageEffect is saveMessage telling the pull cache what apply
// changes (nil: nothing besides the new message).
func (s *DB) saveMessageEffect(ctx context.Context, m Message, inbox []InboxEntry, participants []string, apply func(tx *sql.Tx) error, effect *cacheEffect) (err error) {
	if s.dialect == SQLite {
		return s.saveGrouped(&saveReq{ctx: ctx, m: m, inbox: inbox, participants: participants, apply: apply, effect: effect, done: make(chan error, 1)})
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err = s.saveMessageIn(ctx, tx, m, inbox, participants, apply); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// saveMessageIn writes what saveMessage saves in tx.
func (s *DB) saveMessageIn(ctx context.Context, tx *sql.Tx, m Message, inbox []InboxEntry, participants []string, apply func(tx *sql.Tx) error) (err error) {
	if apply != nil {
		if err = apply(tx); err != nil {
			return err
		}
	}
	q := s.saveQueries()
	if _, err = s.txExec(ctx, tx, q.message,
		m.Conv, m.Seq, m.MID, m.Sender, m.CMID, m.Kind, m.Body, m.TS, m.Flags, m.Ref, m.ReplyTo, m.Mentions); err != nil {
		if isUniqueViolation(err) {
			return ErrDuplicate
		}
		return fmt.Errorf("insert message: %w", err)
	}
	const chunk = 500
	for i := 0; i < len(inbox); i += chunk {
		part := inbox[i:min(i+chunk, len(inbox))]
		args := make([]any, 0, 4*len(part))
		for _, e := range part {
			args = append(args, e.User, e.InboxSeq, m.Conv, m.Seq)
		}
		if _, err = s.txExec(ctx, tx, inboxInsert(len(part)), args...); err != nil {
			return fmt.Errorf("insert inbox rows: %w", err)
		}
	}
	if _, err = s.txExec(ctx, tx, q.convs, m.Conv, m.Seq, m.TS); err != nil {
		return fmt.Errorf("update conversation: %w", err)
	}
	if err = s.insertMentions(ctx, tx, m); err != nil {
		return err
	}
	for _, u := range participants {
		if u == m.Sender {
			continue
		}
		if _, err = s.txExec(ctx, tx, q.userConv, u, m.Conv); err != nil {
			return fmt.Errorf("add conversation: %w", err)
		}
	}
	if err = s.writeOutbox(ctx, tx, m); err != nil {
		return err
	}
	if strings.HasPrefix(m.Conv, "d:") || m.Kind == "group_event" || m.Sender == SystemSender { // a delete record, an actor who may have left, the system sender
		return nil
	}
	if _, err = s.txExec(ctx, tx, q.senderRead, m.Sender, m.Conv, m.Seq); err != nil {
		return fmt.Errorf("move sender read cursor: %w", err)
	}
	return nil
}

// saveStatements are the statements of saveMessageIn besides the inbox rows.
type saveStatements struct{ message, convs, userConv, senderRead string }

func (s *DB) saveQueries() saveStatements {
	return saveStatements{
		message:    "INSERT INTO messages (conv, seq, mid, sender, cmid, kind, body, ts, flags, ref, reply_to, mentions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		convs:      s.upsertMax("convs", []string{"conv", "last_seq", "last_ts"}, []string{"conv"}, []string{"last_seq", "last_ts"}),
		userConv:   s.insertIgnore() + " INTO user_convs (user_id, conv, read_seq) VALUES (?, ?, 0)",
		senderRead: s.upsertMax("user_convs", []string{"user_id", "conv", "read_seq"}, []string{"user_id", "conv"}, []string{"read_seq"}),
	}
}

// inboxInsert inserts n inbox rows.
func inboxInsert(n int) string {
	return "INSERT INTO inbox (user_id, inbox_seq, conv, seq) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?), ", n), ", ")
}

// Sync returns the inbox of user after inboxSeq after, in order, at most limit
// items, and whether more follow.
func (s *DB) Sync(ctx context.Context, user string, after int64, limit int) ([]Item, bool, error) {
	rows, err := s.query(ctx, "SELECT "+syncCols+", CASE WHEN h.seq IS NULL THEN 0 ELSE 1 END FROM inbox i"+
		" LEFT JOIN messages m ON i.record = 0 AND m.conv = i.conv AND m.seq = i.seq"+
		" LEFT JOIN social_events e ON i.record = 2 AND e.id = i.seq"+
		" LEFT JOIN hidden h ON i.record = 0 AND h.user_id = i.user_id AND h.conv = i.conv AND h.seq = i.seq"+
		" WHERE i.user_id = ? AND i.inbox_seq > ? ORDER BY i.inbox_seq LIMIT ?", user, after, limit+1)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var items []Item
	for rows.Next() {
		var it Item
		if it.Message, err = scanMessage(rows, &it.InboxSeq, &it.Record, &it.Hidden); err != nil {
			return nil, false, err
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	more := len(items) > limit
	if more {
		items = items[:limit]
	}
	return items, more, nil
}

// InboxSeq returns the user's latest inbox position (0 when empty).
func (s *DB) InboxSeq(ctx context.Context, user string) (int64, error) {
	var n sql.NullInt64
	err := s.queryRow(ctx, "SELECT MAX(inbox_seq) FROM inbox WHERE user_id = ?", user).Scan(&n)
	return n.Int64, err
}

// Pull returns messages of conv with from <= seq <= to (to <= 0: no upper
// bound), in order, at most limit, and whether more follow.
func (s *DB) Pull(ctx context.Context, conv string, from, to int64, limit int) ([]Message, bool, error) {
	if to <= 0 {
		to = 1<<62 - 1
	}
	rows, err := s.query(ctx, "SELECT "+msgCols+" FROM messages m WHERE m.conv = ? AND m.seq >= ? AND m.seq <= ? ORDER BY m.seq LIMIT ?", conv, from, to, limit+1)
	if err != nil {
		return nil, false, err
	}
	return scanPage(rows, limit)
}

// scanPage reads the messages of a query asked for limit+1 rows and closes
// rows: at most limit of them, and whether more follow.
func scanPage(rows *sql.Rows, limit int) ([]Message, bool, error) {
	defer rows.Close()
	var items []Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, false, err
		}
		items = append(items, m)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	more := len(items) > limit
	if more {
		items = items[:limit]
	}
	return items, more, nil
}

// LastSeq returns the latest seq of conv (0 when it has no messages).
func (s *DB) LastSeq(ctx context.Context, conv string) (int64, error) {
	var n int64
	err := s.queryRow(ctx, "SELECT last_seq FROM convs WHERE conv = ?", conv).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

// SetRead moves user's read cursor in conv forward to seq (never back, never
// past the conversation's last seq) and reports whether it moved. Only a
// conversation the user already has (a direct chat with a message, a group
// they joined) has a cursor: for any other conv nothing is stored.
func (s *DB) SetRead(ctx context.Context, user, conv string, seq int64) (int64, bool, error) {
	last, err := s.LastSeq(ctx, conv)
	if err != nil {
		return 0, false, err
	}
	seq = min(seq, last)
	res, err := s.db.ExecContext(ctx, "UPDATE user_convs SET read_seq = ? WHERE user_id = ? AND conv = ? AND read_seq < ?", seq, user, conv, seq)
	if err != nil {
		return 0, false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, false, err
	}
	if n > 0 {
		if _, err := s.db.ExecContext(ctx, "DELETE FROM mentions WHERE conv = ? AND user_id = ? AND seq <= ?", conv, user, seq); err != nil {
			return 0, false, err
		}
	}
	return seq, n > 0, nil
}

// Conversations lists user's conversations, most recent first.
func (s *DB) Conversations(ctx context.Context, user string) ([]Conversation, error) {
	rows, err := s.query(ctx, `SELECT uc.conv, COALESCE(c.last_seq, 0), uc.read_seq, COALESCE(c.last_ts, 0)
		FROM user_convs uc LEFT JOIN convs c ON c.conv = uc.conv WHERE uc.user_id = ? ORDER BY COALESCE(c.last_ts, 0) DESC, uc.conv`, user)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Conversation{}
	for rows.Next() {
		var c Conversation
		if err := rows.Scan(&c.Conv, &c.LastSeq, &c.ReadSeq, &c.LastTS); err != nil {
			return nil, err
		}
		c.Unread = max(c.LastSeq-c.ReadSeq, 0)
		out = append(out, c)
	}
	return out, rows.Err()
}

// CountInboxRows counts inbox rows that point at conv (for tests and
// diagnostics of the diffusion mode).
func (s *DB) CountInboxRows(ctx context.Context, conv string) (int64, error) {
	var n int64
	err := s.queryRow(ctx, "SELECT COUNT(*) FROM inbox WHERE conv = ? AND record = 0", conv).Scan(&n)
	return n, err
}

// InboxEntries returns the inbox rows that point at message (conv, seq).
func (s *DB) InboxEntries(ctx context.Context, conv string, seq int64) ([]InboxEntry, error) {
	rows, err := s.query(ctx, "SELECT user_id, inbox_seq FROM inbox WHERE conv = ? AND seq = ? AND record = 0", conv, seq)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []InboxEntry
	for rows.Next() {
		var e InboxEntry
		if err := rows.Scan(&e.User, &e.InboxSeq); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// RevokeToken records that the token tokenID (valid until expiresAt) may no
// longer be used; ErrConflict when it already was revoked (a refresh token
// used twice).
func (s *DB) RevokeToken(ctx context.Context, tokenID string, expiresAt time.Time) error {
	_, err := s.db.ExecContext(ctx, "INSERT INTO revoked_tokens (jti, expires_at, revoked_at) VALUES (?, ?, ?)",
		tokenID, expiresAt.UnixMilli(), time.Now().UnixMilli())
	if isUniqueViolation(err) {
		return ErrConflict
	}
	return err
}

// RevokedSince lists the revocations recorded at or after since (unix ms)
// whose tokens have not expired.
func (s *DB) RevokedSince(ctx context.Context, since int64) ([]auth.Revoked, error) {
	rows, err := s.query(ctx, "SELECT jti, expires_at, revoked_at, reason FROM revoked_tokens WHERE revoked_at >= ? AND expires_at > ?",
		since, time.Now().Add(-time.Minute).UnixMilli())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []auth.Revoked
	for rows.Next() {
		var r auth.Revoked
		if err := rows.Scan(&r.TokenID, &r.ExpiresAt, &r.RevokedAt, &r.Reason); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// PruneRevoked deletes revocations of tokens that expired before before.
func (s *DB) PruneRevoked(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM revoked_tokens WHERE expires_at < ?", before.UnixMilli())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
