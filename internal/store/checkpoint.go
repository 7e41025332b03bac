package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"
)

// SQLite in WAL mode appends every commit to the write-ahead log and copies
// the log back into the database file at a checkpoint, which ends with an
// fsync. Left to SQLite, the commit that crosses wal_autocheckpoint pages
// runs the checkpoint itself, on the one writer connection: every save
// waiting for the group commit waits for the copy and the fsync too. A
// connection of its own checkpoints instead (PASSIVE: it never blocks the
// writer or the readers) every checkpointEvery; the writer's automatic
// checkpoint stays as a backstop at walBackstopPages, so the log cannot
// grow without bound if the checkpointer falls behind.

const (
	checkpointEvery  = 200 * time.Millisecond
	walBackstopPages = 20000 // 80 MiB of 4 KiB pages
)

// startCheckpoints runs the checkpointer on the database at path until the
// returned stop is called.
func startCheckpoints(path string) (stop func(), err error) {
	cdb, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	cdb.SetMaxOpenConns(1)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(checkpointEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			// Errors are transient (busy) and the backstop remains: the
			// next tick tries again.
			_, _ = cdb.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
		}
	})
	return func() {
		cancel()
		wg.Wait()
		cdb.Close()
	}, nil
}
