package sequence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	_ "modernc.org/sqlite"
)

func openSQLite(t *testing.T) *sql.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "seq.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1) // as the embedded store does
	t.Cleanup(func() { db.Close() })
	return db
}

func newEmbedded(t *testing.T, db *sql.DB, cfg Config) *Sequencer {
	t.Helper()
	q, err := NewEmbedded(context.Background(), cfg, Deps{DB: db, Dialect: DialectSQLite})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func alloc(t *testing.T, a Allocator, key string, count int64) Range {
	t.Helper()
	got, err := a.Allocate(context.Background(), []Request{{Key: key, Count: count}})
	if err != nil {
		t.Fatalf("allocate %s: %v", key, err)
	}
	return got[0]
}

func TestEmbeddedNewKeysStartAtOneAndIncrease(t *testing.T) {
	q := newEmbedded(t, openSQLite(t), Config{Step: 100, Sections: 8})
	defer q.Close()

	if got := alloc(t, q, "c:a", 1); got != (Range{Key: "c:a", First: 1, Last: 1}) {
		t.Fatalf("first range = %+v, want 1..1", got)
	}
	if got := alloc(t, q, "c:a", 5); got != (Range{Key: "c:a", First: 2, Last: 6}) {
		t.Fatalf("second range = %+v, want 2..6", got)
	}
	if got := alloc(t, q, "c:b", 3); got != (Range{Key: "c:b", First: 1, Last: 3}) {
		t.Fatalf("other key = %+v, want 1..3", got)
	}
	// Crossing many steps in one request still works.
	if got := alloc(t, q, "c:a", 1000); got.First != 7 || got.Last != 1006 {
		t.Fatalf("big range = %+v, want 7..1006", got)
	}
	// Duplicate keys in one call get increasing ranges in request order.
	got, err := q.Allocate(context.Background(), []Request{{Key: "c:d", Count: 2}, {Key: "c:d", Count: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].First != 1 || got[0].Last != 2 || got[1].First != 3 || got[1].Last != 3 {
		t.Fatalf("duplicate keys = %+v, want 1..2 then 3..3", got)
	}
}

func TestEmbeddedRejectsBadRequests(t *testing.T) {
	q := newEmbedded(t, openSQLite(t), Config{Sections: 4})
	defer q.Close()
	long := make([]byte, MaxKeyLen+1)
	for i := range long {
		long[i] = 'x'
	}
	tests := []struct {
		name string
		give []Request
	}{
		{"no keys", nil},
		{"empty key", []Request{{Key: "", Count: 1}}},
		{"zero count", []Request{{Key: "k", Count: 0}}},
		{"negative count", []Request{{Key: "k", Count: -1}}},
		{"count over the maximum", []Request{{Key: "k", Count: MaxCount + 1}}},
		{"key too long", []Request{{Key: string(long), Count: 1}}},
		{"too many keys", make([]Request, MaxKeys+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := q.Allocate(context.Background(), tt.give)
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("err = %v, want ErrBadRequest", err)
			}
		})
	}
}

func TestEmbeddedConcurrentValuesAreUniqueAndIncreasing(t *testing.T) {
	q := newEmbedded(t, openSQLite(t), Config{Step: 50, Sections: 16})
	defer q.Close()

	const workers, rounds, keys = 16, 200, 40
	var mu sync.Mutex
	seen := map[string]map[int64]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := map[string]int64{}
			for r := range rounds {
				reqs := []Request{
					{Key: fmt.Sprintf("k%d", (w+r)%keys), Count: int64(1 + r%3)},
					{Key: fmt.Sprintf("k%d", (w*7+r)%keys), Count: 1},
				}
				got, err := q.Allocate(context.Background(), reqs)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for i, g := range got {
					if g.Key != reqs[i].Key || g.Last-g.First+1 != reqs[i].Count {
						errs <- fmt.Errorf("range %+v does not answer %+v", g, reqs[i])
					}
					if g.First <= last[g.Key] {
						errs <- fmt.Errorf("key %s: %d after %d in one worker", g.Key, g.First, last[g.Key])
					}
					last[g.Key] = g.Last
					if seen[g.Key] == nil {
						seen[g.Key] = map[int64]bool{}
					}
					for v := g.First; v <= g.Last; v++ {
						if seen[g.Key][v] {
							errs <- fmt.Errorf("key %s: value %d handed out twice", g.Key, v)
						}
						seen[g.Key][v] = true
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// A restart after a crash is a loss of the in-memory values: used sections
// resume above their persisted bound; keys of sections never used start at 1.
// A clean Close saves the values, so a clean restart continues without a gap.
func TestEmbeddedRestart(t *testing.T) {
	db := openSQLite(t)
	q := newEmbedded(t, db, Config{Step: 100, Sections: 64})
	usedSection := q.Section("c:used")
	for range 3 {
		alloc(t, q, "c:used", 10) // 1..30
	}
	var fresh string
	for i := 0; fresh == ""; i++ {
		k := fmt.Sprintf("c:fresh%d", i)
		if q.Section(k) != usedSection {
			fresh = k
		}
	}
	q.noSnapshot = true // crash
	q.Close()
	bound := q.cached[usedSection].Load()

	q = newEmbedded(t, db, Config{Step: 100, Sections: 64})
	if got := alloc(t, q, "c:used", 1); got.First <= 30 || got.First <= bound {
		t.Fatalf("after a crash c:used resumed at %d, want above its bound %d (and above 30)", got.First, bound)
	}
	if got := alloc(t, q, fresh, 1); got.First != 1 {
		t.Fatalf("after a crash a key of a never-used section starts at %d, want 1", got.First)
	}
	last := alloc(t, q, "c:used", 1).Last
	if err := q.Close(); err != nil { // clean
		t.Fatal(err)
	}

	q = newEmbedded(t, db, Config{Step: 100, Sections: 64})
	defer q.Close()
	if got := alloc(t, q, "c:used", 1); got.First != last+1 {
		t.Fatalf("after a clean restart c:used continued at %d, want %d", got.First, last+1)
	}
	if got := alloc(t, q, fresh, 1); got.First != 2 {
		t.Fatalf("after a clean restart %s continued at %d, want 2", fresh, got.First)
	}
}

func TestEmbeddedRefusesAnotherSectionCount(t *testing.T) {
	db := openSQLite(t)
	q := newEmbedded(t, db, Config{Sections: 8})
	q.Close()
	_, err := NewEmbedded(context.Background(), Config{Sections: 16}, Deps{DB: db, Dialect: DialectSQLite})
	if err == nil {
		t.Fatal("NewEmbedded with another section count succeeded, want an error")
	}
}
