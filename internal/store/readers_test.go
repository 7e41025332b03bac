package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/store"
)

// In SQLite, reads run on their own connections: while the one writer
// connection is inside a transaction (a group commit), the direct-chat
// check, a pull and a sync still answer, with what was last committed.
func TestSQLiteReadsDoNotWaitForTheWriter(t *testing.T) {
	ctx := context.Background()
	db := sqliteWithMessage(t, t.TempDir(), "hi")
	release, err := db.HoldWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if c, err := db.CheckDirect(rctx, "1", "2"); err != nil || !c.Exists {
		t.Fatalf("direct-chat check while the writer is busy: %+v %v", c, err)
	}
	if items, _, err := db.Sync(rctx, "2", 0, 10); err != nil || len(items) != 1 {
		t.Fatalf("sync while the writer is busy: %v %v", items, err)
	}
	if err := db.SetPullCache(store.PullCacheConfig{}); err != nil { // SQL, not the cache
		t.Fatal(err)
	}
	if items, _, err := db.PullVisible(rctx, "2", "u:1:2", 1, 0, 0, 10); err != nil || len(items) != 1 || items[0].Body != "hi" {
		t.Fatalf("pull while the writer is busy: %v %v", items, err)
	}
}

// sqliteWithMessage opens the SQLite store in dir (closed at the end of the
// test) with users 1 and 2 and one message from 1 to 2 with body.
func sqliteWithMessage(t *testing.T, dir, body string) *store.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, id := range []string{"1", "2"} {
		if err := db.CreateUser(ctx, store.User{ID: id, Username: "u" + id, DisplayName: "u", PasswordHash: "x", CreatedAt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	m := store.Message{Conv: "u:1:2", Seq: 1, MID: "m1", Sender: "1", CMID: "c1", Kind: "text", Body: body, TS: 1}
	if err := db.SaveMessage(ctx, m, []store.InboxEntry{{User: "2", InboxSeq: 1}}, []string{"1", "2"}); err != nil {
		t.Fatal(err)
	}
	return db
}
