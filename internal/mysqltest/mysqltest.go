// Package mysqltest gives each integration test its own MariaDB/MySQL
// database on the server started by hack/deps.sh, dropped at the end.
package mysqltest

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/imkube/imkube/internal/testenv"
)

// NewDatabase creates a fresh database named imkube_t<random> and returns a
// DSN for it (same credentials as IMKUBE_MYSQL_DSN).
func NewDatabase(t testing.TB) string {
	t.Helper()
	base := testenv.Require(t, "IMKUBE_MYSQL_DSN")
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatalf("IMKUBE_MYSQL_DSN: %v", err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "imkube_t" + hex.EncodeToString(b)
	admin := cfg.Clone()
	admin.DBName = ""
	db, err := sql.Open("mysql", admin.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name + " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("mysql", admin.FormatDSN())
		if err == nil {
			db.Exec("DROP DATABASE IF EXISTS " + name)
			db.Close()
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}
