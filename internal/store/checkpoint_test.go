package store_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The SQLite store checkpoints in the background: a commit lands in the
// database file itself (not only in the write-ahead log) without another
// write crossing the writer's automatic checkpoint, which is only a backstop
// now (far above these few pages).
func TestSQLiteCheckpointsInTheBackground(t *testing.T) {
	dir := t.TempDir()
	sqliteWithMessage(t, dir, "in the file")
	// A copy of the database file alone (no -wal beside it) holds what was
	// checkpointed into it.
	inFile := func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "imkube.db"))
		if err != nil {
			t.Fatal(err)
		}
		cp := filepath.Join(t.TempDir(), "copy.db")
		if err := os.WriteFile(cp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := sql.Open("sqlite", "file:"+cp)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var body string
		return c.QueryRow("SELECT body FROM messages WHERE mid = 'm1'").Scan(&body) == nil && body == "in the file"
	}
	deadline := time.Now().Add(20 * time.Second)
	for !inFile() {
		if time.Now().After(deadline) {
			t.Fatal("the saved message is still only in the write-ahead log after 20 s: nothing checkpoints")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
