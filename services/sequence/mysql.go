package sequence

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
)

// OpenMySQL opens a MySQL pool for the bounds table (no other migrations)
// with connect, read and write timeouts, and checks that it answers.
func OpenMySQL(ctx context.Context, dsn string) (*sql.DB, error) { return openMySQL(ctx, dsn) }

func openMySQL(ctx context.Context, dsn string) (*sql.DB, error) {
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("sequence: mysql-dsn: %w", err)
	}
	if mc.Timeout == 0 {
		mc.Timeout = 5 * time.Second
	}
	if mc.ReadTimeout == 0 {
		mc.ReadTimeout = 10 * time.Second
	}
	if mc.WriteTimeout == 0 {
		mc.WriteTimeout = 10 * time.Second
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("sequence: mysql: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxLifetime(30 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sequence: mysql at %s: %w", mc.Addr, err)
	}
	return db, nil
}
