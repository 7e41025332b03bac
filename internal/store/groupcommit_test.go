package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/imkube/imkube/internal/store"
)

// Concurrent saves (group-committed in SQLite) each succeed or fail on their
// own: a duplicate fails alone, and every other message is stored with its
// inbox rows.
func TestConcurrentSavesFailAloneAndTheOthersAreStored(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		dup := store.Message{Conv: "d:dup", Seq: 1, MID: "1", Sender: "s", CMID: "same", Kind: "text", Body: "first", TS: 1}
		if err := db.SaveMessage(ctx, dup, nil, nil); err != nil {
			t.Fatal(err)
		}
		const n = 40
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				m := store.Message{Conv: fmt.Sprintf("g:%d", i), Seq: 1, MID: fmt.Sprint(100 + i), Sender: "s", CMID: fmt.Sprintf("c%d", i), Kind: "text", Body: "b", TS: 1}
				if i%10 == 3 {
					m.CMID = "same" // the sender already used it
				}
				errs[i] = db.SaveMessage(ctx, m, []store.InboxEntry{{User: fmt.Sprintf("u%d", i), InboxSeq: 1}}, nil)
			})
		}
		wg.Wait()
		for i, err := range errs {
			conv := fmt.Sprintf("g:%d", i)
			rows, rerr := db.InboxEntries(ctx, conv, 1)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if i%10 == 3 {
				if !errors.Is(err, store.ErrDuplicate) || len(rows) != 0 {
					t.Errorf("save %d reusing a cmid: err %v, %d inbox rows; want ErrDuplicate and none", i, err, len(rows))
				}
				continue
			}
			if err != nil || len(rows) != 1 {
				t.Errorf("save %d: err %v, %d inbox rows; want stored with 1", i, err, len(rows))
			}
		}
	})
}
