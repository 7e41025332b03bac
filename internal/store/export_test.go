package store

import "context"

// OpenSQLiteAt and OpenMySQLAt open a database migrated only up to version
// (tests of a migration over existing rows).
func OpenSQLiteAt(ctx context.Context, dir string, version int) (*DB, error) {
	return openSQLite(ctx, dir, version)
}

func OpenMySQLAt(ctx context.Context, dsn string, version int) (*DB, error) {
	return openMySQL(ctx, dsn, PoolConfig{MaxOpen: 2}, version)
}

// PullVisibleSQL is PullVisible always answered by SQL (the pull cache's
// reference).
func (s *DB) PullVisibleSQL(ctx context.Context, user, conv string, from, to, before int64, limit int) ([]Message, bool, error) {
	to, order := pullRange(to, before)
	return s.pullVisibleSQL(ctx, user, conv, from, to, order, limit)
}

// SetPullCacheAfterRead sets the pull cache's hook between a fill's reads
// and its install.
func (s *DB) SetPullCacheAfterRead(f func()) { s.pcache.Load().afterRead = f }

// HoldWriter takes the SQLite writer connection in an open write
// transaction (as a long group commit does) until release is called.
func (s *DB) HoldWriter(ctx context.Context) (release func(), err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE convs SET last_ts = last_ts WHERE conv = ''"); err != nil {
		tx.Rollback()
		return nil, err
	}
	return func() { tx.Rollback() }, nil
}
