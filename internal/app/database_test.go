package app_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/testenv"
)

// mysql-database (IMKUBE_MYSQL_DATABASE) replaces the DSN's database, and a
// missing one is created: one DSN Secret serves several isolated clusters.
func TestMySQLDatabaseReplacesTheDSNsAndIsCreated(t *testing.T) {
	base := testenv.Require(t, "IMKUBE_MYSQL_DSN")
	name := "imkube_db" + token()
	server, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatal(err)
	}
	server.DBName = ""
	t.Cleanup(func() {
		if db, err := sql.Open("mysql", server.FormatDSN()); err == nil {
			db.Exec("DROP DATABASE IF EXISTS `" + name + "`")
			db.Close()
		}
	})
	for _, role := range []config.Role{config.RoleUser, config.RoleMessage} {
		cfg := config.Defaults(role, "test")
		cfg.MySQL = config.MySQL{DSN: base, Database: name}
		d := app.NewDistributed(cfg, nil)
		db, err := d.Store(context.Background())
		if err != nil {
			t.Fatalf("%s: open store on mysql-database %s: %v", role, name, err)
		}
		var got string
		if err := db.SQL().QueryRowContext(context.Background(), "SELECT DATABASE()").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != name {
			t.Errorf("%s: connected to database %q, want %q", role, got, name)
		}
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	}
}
