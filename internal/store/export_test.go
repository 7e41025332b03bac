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
