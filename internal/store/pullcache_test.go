package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/store"
)

// pullCacheDB is an embedded store with a small pull cache, so that entries
// are trimmed, evicted and refilled during a test.
func pullCacheDB(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.OpenSQLite(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.SetPullCache(store.PullCacheConfig{MaxMessages: 12, MaxBytes: 3000, MaxTotalBytes: 8000}); err != nil {
		t.Fatal(err)
	}
	return db
}

// pullModel drives a random sequence of sends, recalls, edits, deletes for
// me, joins and leaves on a few groups, and after every step compares a
// random pull answered by PullVisible (the cache) with the same pull in SQL,
// for a member whose first visible seq comes from the store like the
// message service's (joined seq + 1; a non-member is refused before any
// pull, on both paths alike).
type pullModel struct {
	t     *testing.T
	db    *store.DB
	rng   *rand.Rand
	seq   map[string]int64 // conv -> last seq
	dseq  map[string]int64 // user -> last seq of their delete conv
	n     int
	users []string
}

func (p *pullModel) step(ctx context.Context, convs []string) {
	t, db, rng := p.t, p.db, p.rng
	conv := convs[rng.Intn(len(convs))]
	user := p.users[rng.Intn(len(p.users))]
	p.n++
	next := func() int64 { p.seq[conv]++; return p.seq[conv] }
	target := func() int64 { return 1 + rng.Int63n(max(p.seq[conv], 1)) }
	switch r := rng.Intn(100); {
	case r < 45: // send
		body := strings.Repeat(string(rune('a'+rng.Intn(26))), rng.Intn(300))
		m := store.Message{Conv: conv, Seq: next(), MID: fmt.Sprint("m", p.n), Sender: user, CMID: fmt.Sprint("c", p.n), Kind: "text", Body: body, TS: int64(p.n)}
		if rng.Intn(4) == 0 {
			m.Mentions = "u1,u2"
			m.ReplyTo = target()
		}
		if err := db.SaveMessage(ctx, m, nil, nil); err != nil {
			t.Fatal(err)
		}
	case r < 55: // recall
		ref := target()
		m := store.Message{Conv: conv, Seq: p.seq[conv] + 1, MID: fmt.Sprint("m", p.n), Sender: user, CMID: fmt.Sprint("c", p.n), Kind: "recall", Ref: ref, TS: int64(p.n)}
		switch err := db.SaveRecall(ctx, m, nil); {
		case err == nil:
			next()
		case errors.Is(err, store.ErrRecalled) || errors.Is(err, store.ErrNotFound):
		default:
			t.Fatal(err)
		}
	case r < 65: // edit
		ref := target()
		m := store.Message{Conv: conv, Seq: p.seq[conv] + 1, MID: fmt.Sprint("m", p.n), Sender: user, CMID: fmt.Sprint("c", p.n), Kind: "edit", Ref: ref, Body: fmt.Sprint("edited ", p.n), TS: int64(p.n)}
		switch err := db.SaveEdit(ctx, m, nil); {
		case err == nil:
			next()
		case errors.Is(err, store.ErrRecalled) || errors.Is(err, store.ErrNotFound):
		default:
			t.Fatal(err)
		}
	case r < 75: // delete for me
		seqs := []int64{target(), target()}
		if seqs[0] == seqs[1] {
			seqs = seqs[:1]
		}
		p.dseq[user]++
		m := store.Message{Conv: store.DeleteConv(user), Seq: p.dseq[user], MID: fmt.Sprint("m", p.n), Sender: user, CMID: fmt.Sprint("c", p.n), Kind: "delete", Body: fmt.Sprint(seqs), TS: int64(p.n)}
		if err := db.SaveDelete(ctx, m, []store.InboxEntry{{User: user, InboxSeq: int64(p.n)}}, user, conv, seqs); err != nil {
			t.Fatal(err)
		}
	case r < 82: // join (again)
		if _, err := db.GroupMember(ctx, conv, user); errors.Is(err, store.ErrNotFound) {
			if _, err := db.AddMembers(ctx, conv, []store.Member{{UserID: user, Role: "member", JoinedSeq: p.seq[conv], JoinedAt: int64(p.n)}}, 1000); err != nil {
				t.Fatal(err)
			}
		}
	case r < 88: // leave
		if user != "u1" {
			if err := db.RemoveMember(ctx, conv, user); err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Fatal(err)
			}
		}
	}
	for range 3 {
		p.comparePull(ctx, convs[rng.Intn(len(convs))], p.users[rng.Intn(len(p.users))])
	}
}

// comparePull asks one random pull both ways.
func (p *pullModel) comparePull(ctx context.Context, conv, user string) {
	t, db, rng := p.t, p.db, p.rng
	mem, err := db.GroupMember(ctx, conv, user)
	if errors.Is(err, store.ErrNotFound) {
		return // forbidden, before the store is asked to pull
	}
	if err != nil {
		t.Fatal(err)
	}
	floor := mem.JoinedSeq + 1
	last := p.seq[conv]
	from := floor + rng.Int63n(last+3)
	if rng.Intn(2) == 0 { // the usual pull after a notify: the newest few
		from = max(floor, last-rng.Int63n(4))
	}
	var to, before int64
	switch rng.Intn(4) {
	case 0:
		to = from + rng.Int63n(10)
	case 1:
		from, before = floor, 1+rng.Int63n(last+2)
	}
	limit := 1 + rng.Intn(8)
	got, gotMore, err := db.PullVisible(ctx, user, conv, from, to, before, limit)
	if err != nil {
		t.Fatal(err)
	}
	want, wantMore, err := db.PullVisibleSQL(ctx, user, conv, from, to, before, limit)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 && len(want) == 0 {
		got, want = nil, nil
	}
	if !reflect.DeepEqual(got, want) || gotMore != wantMore {
		t.Fatalf("step %d: pull(%s, %s, from %d, to %d, before %d, limit %d):\ncache %v more %v\nstore %v more %v",
			p.n, user, conv, from, to, before, limit, got, gotMore, want, wantMore)
	}
}

func TestPullCacheAnswersLikeTheStore(t *testing.T) {
	db := pullCacheDB(t)
	ctx := context.Background()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	p := &pullModel{t: t, db: db, rng: rand.New(rand.NewSource(seed)), seq: map[string]int64{}, dseq: map[string]int64{},
		users: []string{"u1", "u2", "u3", "u4", "u5"}}
	convs := []string{"g1", "g2", "g3"}
	for _, g := range convs {
		if err := db.CreateGroup(ctx, store.Group{ID: g, Name: g, Owner: "u1", CreatedAt: 1}, []store.Member{{UserID: "u1", Role: "owner"}, {UserID: "u2", Role: "member"}, {UserID: "u3", Role: "member"}}); err != nil {
			t.Fatal(err)
		}
	}
	for range 1500 {
		p.step(ctx, convs)
	}
	hits, misses := db.PullCacheStats()
	t.Logf("pull cache: %d hits, %d misses", hits, misses)
	if hits < 500 {
		t.Fatalf("the cache answered only %d pulls (%d from SQL): the comparison tested little", hits, misses)
	}
}

// Pulls that run while messages, recalls and edits are written never leave
// a stale entry behind: once the writes are done, every pull answers like
// the store.
func TestPullCacheStaysCoherentUnderConcurrentWrites(t *testing.T) {
	db := pullCacheDB(t)
	// Room for about one entry: pulls of the two conversations keep
	// evicting each other, so fills run all the time alongside the writes.
	if err := db.SetPullCache(store.PullCacheConfig{MaxMessages: 12, MaxBytes: 3000, MaxTotalBytes: 1800}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const conv = "g1"
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := conv
				if i%2 == 1 {
					c = "g2"
				}
				if _, _, err := db.PullVisible(ctx, fmt.Sprint("u", r), c, int64(max(i%40, 1)), 0, 0, 20); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var seq int64
	for i := 1; i <= 300; i++ {
		seq++
		m := store.Message{Conv: conv, Seq: seq, MID: fmt.Sprint("m", i), Sender: "u1", CMID: fmt.Sprint("c", i), Kind: "text", Body: fmt.Sprint("body ", i), TS: int64(i)}
		if err := db.SaveMessage(ctx, m, nil, nil); err != nil {
			t.Fatal(err)
		}
		m.Conv, m.MID, m.CMID = "g2", "x"+m.MID, "x"+m.CMID
		if err := db.SaveMessage(ctx, m, nil, nil); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			seq++
			kind, save := "recall", db.SaveRecall
			if i%2 == 0 {
				kind, save = "edit", db.SaveEdit
			}
			r := store.Message{Conv: conv, Seq: seq, MID: fmt.Sprint("r", i), Sender: "u1", CMID: fmt.Sprint("r", i), Kind: kind, Ref: seq - 2, Body: "new", TS: int64(i)}
			if err := save(ctx, r, nil); err != nil && !errors.Is(err, store.ErrRecalled) {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	// The entry of conv as the last concurrent fill left it: compare
	// before anything else refills it.
	for from := seq + 1; from >= 1; from-- {
		got, gm, err1 := db.PullVisible(ctx, "u0", conv, from, 0, 0, 5)
		want, wm, err2 := db.PullVisibleSQL(ctx, "u0", conv, from, 0, 0, 5)
		if err1 != nil || err2 != nil || !reflect.DeepEqual(got, want) || gm != wm {
			t.Fatalf("from %d: cache %v %v %v, store %v %v %v", from, got, gm, err1, want, wm, err2)
		}
	}
}

// A write that commits between a fill's reads and its install (message,
// recall, edit or delete for me) is not lost: the stale fill is not
// installed.
func TestPullCacheFillDoesNotInstallWhatAWriteOvertook(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []string{"text", "recall", "edit", "delete"} {
		t.Run(kind, func(t *testing.T) {
			db := pullCacheDB(t)
			for i := int64(1); i <= 3; i++ {
				if err := db.SaveMessage(ctx, store.Message{Conv: "g1", Seq: i, MID: fmt.Sprint("m", i), Sender: "u1", CMID: fmt.Sprint("c", i), Kind: "text", Body: "b", TS: i}, nil, nil); err != nil {
					t.Fatal(err)
				}
			}
			once := false
			db.SetPullCacheAfterRead(func() {
				if once {
					return
				}
				once = true
				var err error
				m := store.Message{Conv: "g1", Seq: 4, MID: "m4", Sender: "u1", CMID: "c4", Kind: kind, Body: "new", Ref: 2, TS: 4}
				switch kind {
				case "text":
					err = db.SaveMessage(ctx, m, nil, nil)
				case "recall":
					err = db.SaveRecall(ctx, m, nil)
				case "edit":
					err = db.SaveEdit(ctx, m, nil)
				case "delete":
					m.Conv, m.Seq = store.DeleteConv("u1"), 1
					err = db.SaveDelete(ctx, m, nil, "u1", "g1", []int64{2})
				}
				if err != nil {
					t.Error(err)
				}
			})
			db.PullVisible(ctx, "u1", "g1", 1, 0, 0, 10) // the raced fill
			for range 2 {                                // then from the cache
				got, _, err1 := db.PullVisible(ctx, "u1", "g1", 1, 0, 0, 10)
				want, _, err2 := db.PullVisibleSQL(ctx, "u1", "g1", 1, 0, 0, 10)
				if err1 != nil || err2 != nil || !reflect.DeepEqual(got, want) {
					t.Fatalf("cache %v %v\nstore %v %v", got, err1, want, err2)
				}
			}
		})
	}
}

// BenchmarkPullLatest is the pull a member of a busy read-diffusion group
// makes after a notify (the newest 3 messages of 200), from the pull cache
// and from SQL.
func BenchmarkPullLatest(b *testing.B) {
	ctx := context.Background()
	for _, cached := range []bool{true, false} {
		b.Run(map[bool]string{true: "cache", false: "sql"}[cached], func(b *testing.B) {
			db, err := store.OpenSQLite(ctx, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			for i := int64(1); i <= 200; i++ {
				m := store.Message{Conv: "g1", Seq: i, MID: fmt.Sprint("m", i), Sender: "u1", CMID: fmt.Sprint("c", i), Kind: "text", Body: strings.Repeat("x", 100), TS: i}
				if err := db.SaveMessage(ctx, m, nil, nil); err != nil {
					b.Fatal(err)
				}
			}
			if !cached {
				db.SetPullCache(store.PullCacheConfig{})
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				items, _, err := db.PullVisible(ctx, fmt.Sprint("u", i%2000), "g1", 198, 0, 0, 100)
				if err != nil || len(items) != 3 {
					b.Fatal(items, err)
				}
			}
		})
	}
}
