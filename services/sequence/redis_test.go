package sequence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// replica is one sequence-service instance with its own Redis and SQL clients.
type replica struct {
	q      *Sequencer
	writes *writeCounter
}

func newReplica(t *testing.T, rdb *redis.Client, cfg *mysql.Config, sqlAddr, prefix string, c Config) replica {
	t.Helper()
	w := &writeCounter{}
	db := openCounted(t, cfg, sqlAddr, w)
	c.KeyPrefix = prefix
	q, err := NewRedis(context.Background(), c, Deps{DB: db, Dialect: DialectMySQL, Redis: rdb, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return replica{q: q, writes: w}
}

// op is one answered request, with the wall-clock interval it ran in.
type op struct {
	r          Range
	start, end time.Time
}

// Three replicas x 64 goroutines x 10k keys with mixed counts; Redis loses all
// its data (FLUSHALL and SCRIPT FLUSH, as a restart without persistence)
// in the middle of the run.
func TestRedisReplicasNeverRepeatAcrossRedisLoss(t *testing.T) {
	cfg := testDatabase(t)
	priv := privateRedis(t)
	rdb, prefix := priv.client(), "imkube:seq:"
	ctx := context.Background()
	const (
		replicas = 3
		workers  = 64
		nkeys    = 10_000
		rounds   = 60
		step     = 100
		sections = 1024
	)
	reps := make([]replica, replicas)
	for i := range reps {
		reps[i] = newReplica(t, priv.client(), cfg, "", prefix, Config{Step: step, Sections: sections})
	}
	// Keys only in the lower half of the sections: the upper half stays
	// unused, to check that its keys start at 1 after the loss.
	var keys []string
	for i := 0; len(keys) < nkeys; i++ {
		if k := fmt.Sprintf("c:conv-%d", i); sectionOf(k, sections) < sections/2 {
			keys = append(keys, k)
		}
	}

	var (
		mu        sync.Mutex
		ops       []op
		done      atomic.Int64
		flushOnce sync.Once
		flushAt   [2]time.Time // start, end of the FLUSHDB
		wg        sync.WaitGroup
		errs      = make(chan error, replicas*workers)
	)
	const total = replicas * workers * rounds
	for ri := range reps {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(ri), uint64(w)))
				for range rounds {
					reqs := make([]Request, 1+rng.IntN(6))
					for i := range reqs {
						count := int64(1 + rng.IntN(5))
						if rng.IntN(50) == 0 {
							count = 50 + rng.Int64N(100) // now and then a big range, crossing steps
						}
						reqs[i] = Request{Key: keys[rng.IntN(len(keys))], Count: count}
					}
					start := time.Now()
					got, err := reps[ri].q.Allocate(ctx, reqs)
					end := time.Now()
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					for i, g := range got {
						if g.Key != reqs[i].Key || g.Last-g.First+1 != reqs[i].Count || g.First < 1 {
							errs <- fmt.Errorf("range %+v does not answer %+v", g, reqs[i])
						}
						ops = append(ops, op{r: g, start: start, end: end})
					}
					mu.Unlock()
					if done.Add(1) == total/2 {
						flushOnce.Do(func() {
							flushAt[0] = time.Now()
							if err := loseRedisData(ctx, rdb); err != nil {
								errs <- err
							}
							flushAt[1] = time.Now()
						})
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if flushAt[0].IsZero() {
		t.Fatal("the run ended before Redis lost its data")
	}

	// Per key: no value twice, strictly increasing in real time; and new
	// keys start at 1: the first range of every key used before the loss
	// begins at 1.
	maxSeen, first := checkRanges(t, ops)
	for k, o := range first {
		if o.end.Before(flushAt[0]) && o.r.First != 1 {
			t.Fatalf("key %s: first range before the loss is %+v, want it to start at 1", k, o.r)
		}
	}
	t.Logf("%d ranges for %d keys", len(ops), len(maxSeen))

	// After another loss: old keys continue above their section's bound, keys
	// of never-used sections start at 1, and a brand-new key in a recovered
	// section cannot be told from a lost key, so it starts above the floor
	// too (a gap, allowed after a failure).
	db := openCounted(t, cfg, "", &writeCounter{})
	b, err := newBoundStore(ctx, db, DialectMySQL, DefaultTable, sections)
	if err != nil {
		t.Fatal(err)
	}
	bounds, err := b.loadAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := loseRedisData(ctx, rdb); err != nil {
		t.Fatal(err)
	}
	q := reps[0].q
	checked := 0
	for k, last := range maxSeen {
		if checked == 200 {
			break
		}
		checked++
		got := alloc(t, q, k, 1)
		if s := sectionOf(k, sections); got.First <= bounds[s] || got.First <= last {
			t.Fatalf("old key %s after the loss got %d, want above its section's bound %d and its last value %d", k, got.First, bounds[s], last)
		}
		maxSeen[k] = got.Last
	}
	var unused, recoveredNew string
	for i := 0; unused == "" || recoveredNew == ""; i++ {
		k := fmt.Sprintf("c:new-%d", i)
		s := sectionOf(k, sections)
		switch {
		case s >= sections/2 && unused == "":
			unused = k
		case s < sections/2 && bounds[s] > 0 && recoveredNew == "":
			recoveredNew = k
		}
	}
	if got := alloc(t, q, unused, 1); got.First != 1 {
		t.Fatalf("key %s of a never-used section got %d after the loss, want 1", unused, got.First)
	}
	got := alloc(t, q, recoveredNew, 1)
	if s := sectionOf(recoveredNew, sections); got.First <= bounds[s] {
		t.Fatalf("brand-new key %s in a recovered section got %d, want above the floor %d (new and lost keys look the same there)", recoveredNew, got.First, bounds[s])
	}

	// At most one SQL write per step per section: each write moves a bound
	// by at least one step, and bounds run at most one step ahead of use.
	maxBySection := map[int]int64{}
	for k, v := range maxSeen {
		s := sectionOf(k, sections)
		maxBySection[s] = max(maxBySection[s], v)
	}
	totalWrites := 0
	for s := range sections {
		n := 0
		for _, r := range reps {
			n += r.writes.section(s)
		}
		totalWrites += n
		limit := int((maxBySection[s]+step-1)/step) + 1
		if n > limit {
			t.Errorf("section %d: %d SQL writes for values up to %d, want at most %d (one per step of %d, plus one ahead)", s, n, maxBySection[s], limit, step)
		}
	}
	if totalWrites == 0 {
		t.Fatal("no SQL writes counted: the counter does not see the bounds table")
	}
	t.Logf("%d SQL writes in total", totalWrites)
}

// MySQL stops (a proxy in front of it is cut): allocation continues within
// the bounds already committed, then fails with ErrUnavailable; after MySQL
// returns, no value is ever handed out again.
func TestRedisSQLOutage(t *testing.T) {
	cfg := testDatabase(t)
	priv := privateRedis(t)
	rdb := priv.client()
	proxy := newTCPProxy(t, cfg.Addr)
	const step = 100
	rep := newReplica(t, priv.client(), cfg, proxy.addr(), "imkube:seq:", Config{Step: step, Sections: 16, SQLTimeout: time.Second})
	q := rep.q
	ctx := context.Background()

	last := alloc(t, q, "c:outage", 10).Last
	other := alloc(t, q, "i:other", 1).Last
	proxy.cut()
	bound := q.cached[q.Section("c:outage")].Load()

	// Within the bound: still served.
	var err error
	n := 0
	for ; n < 2*step; n++ {
		var got []Range
		reqCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		got, err = q.Allocate(reqCtx, []Request{{Key: "c:outage", Count: 1}})
		cancel()
		if err != nil {
			break
		}
		if got[0].First != last+1 || got[0].Last > bound {
			t.Fatalf("during the outage got %+v, want %d, within the committed bound %d", got[0], last+1, bound)
		}
		last = got[0].Last
	}
	if n == 0 {
		t.Fatal("no allocation succeeded within the committed bound while MySQL was down")
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("past the bound got err = %v, want ErrUnavailable", err)
	}
	if last != bound {
		t.Fatalf("the outage stopped allocation at %d, want exactly at the committed bound %d", last, bound)
	}

	// Redis loses its data while MySQL is down: recovery needs the bounds,
	// so the section is unavailable, not restarted at 1.
	if err := loseRedisData(ctx, rdb); err != nil {
		t.Fatal(err)
	}
	reqCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = q.Allocate(reqCtx, []Request{{Key: "i:other", Count: 1}})
	cancel()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after the Redis loss during the outage got err = %v, want ErrUnavailable", err)
	}

	proxy.restore()
	// Bounded wait for the pool to reconnect.
	var got []Range
	for i := 0; i < 50; i++ {
		got, err = q.Allocate(ctx, []Request{{Key: "c:outage", Count: 1}, {Key: "i:other", Count: 1}})
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after MySQL returned: %v", err)
	}
	if got[0].First <= last || got[1].First <= other {
		t.Fatalf("after MySQL returned got %+v, want values above %d and %d", got, last, other)
	}
}

// checkRanges fails t when a value of a key was handed out twice, or when a
// request that finished before another started got larger values. It returns
// each key's largest value and first range.
func checkRanges(t *testing.T, ops []op) (maxSeen map[string]int64, first map[string]op) {
	t.Helper()
	byKey := map[string][]op{}
	for _, o := range ops {
		byKey[o.r.Key] = append(byKey[o.r.Key], o)
	}
	maxSeen, first = map[string]int64{}, map[string]op{}
	for k, list := range byKey {
		sort.Slice(list, func(i, j int) bool { return list[i].r.First < list[j].r.First })
		for i := 1; i < len(list); i++ {
			if list[i].r.First <= list[i-1].r.Last {
				t.Fatalf("key %s: ranges %+v and %+v overlap: a value was handed out twice", k, list[i-1].r, list[i].r)
			}
		}
		for i := range list {
			for j := i + 1; j < len(list); j++ {
				if list[j].end.Before(list[i].start) {
					t.Fatalf("key %s: %+v finished before %+v started but got larger values", k, list[j].r, list[i].r)
				}
			}
		}
		first[k] = list[0]
		maxSeen[k] = list[len(list)-1].r.Last
	}
	return maxSeen, first
}

// Redis is killed (SIGKILL) and restarted empty while two replicas allocate:
// calls in flight fail with ErrUnavailable, and no value is ever handed out
// twice, before, during or after the restart.
func TestRedisRestartMidRun(t *testing.T) {
	cfg := testDatabase(t)
	priv := privateRedis(t)
	ctx := context.Background()
	const (
		replicas = 2
		workers  = 16
		rounds   = 150
		nkeys    = 300
	)
	reps := make([]replica, replicas)
	for i := range reps {
		reps[i] = newReplica(t, priv.client(), cfg, "", "imkube:seq:", Config{Step: 50, Sections: 64})
	}
	var (
		mu              sync.Mutex
		ops             []op
		failed          atomic.Int64
		done            atomic.Int64
		restartOnce     sync.Once
		recoveredBefore atomic.Int64
		wg              sync.WaitGroup
		errs            = make(chan error, replicas*workers+1)
	)
	for ri := range reps {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(ri), uint64(w)))
				for range rounds {
					reqs := []Request{
						{Key: fmt.Sprintf("c:%d", rng.IntN(nkeys)), Count: int64(1 + rng.IntN(3))},
						{Key: fmt.Sprintf("i:%d", rng.IntN(nkeys)), Count: 1},
					}
					start := time.Now()
					reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
					got, err := reps[ri].q.Allocate(reqCtx, reqs)
					cancel()
					end := time.Now()
					if done.Add(1) == replicas*workers*rounds/3 {
						restartOnce.Do(func() {
							for _, r := range reps {
								recoveredBefore.Add(r.q.Stats().Recoveries)
							}
							if err := priv.restart(); err != nil {
								errs <- err
							}
						})
					}
					if err != nil {
						if !errors.Is(err, ErrUnavailable) {
							errs <- fmt.Errorf("during the restart got %v, want ErrUnavailable", err)
							return
						}
						failed.Add(1)
						continue
					}
					mu.Lock()
					for _, g := range got {
						ops = append(ops, op{r: g, start: start, end: end})
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	maxSeen, _ := checkRanges(t, ops)
	t.Logf("%d ranges for %d keys, %d calls failed during the restart", len(ops), len(maxSeen), failed.Load())
	var recovered int64
	for _, r := range reps {
		recovered += r.q.Stats().Recoveries
	}
	if recovered <= recoveredBefore.Load() {
		t.Fatalf("no section was recovered after the restart (%d before, %d after): Redis did not lose its data mid-run", recoveredBefore.Load(), recovered)
	}
	// After the run every replica serves again, above everything seen.
	for _, r := range reps {
		for _, k := range []string{"c:1", "i:2"} {
			got := alloc(t, r.q, k, 1)
			if got.First <= maxSeen[k] {
				t.Fatalf("after the restart %s got %d, want above %d", k, got.First, maxSeen[k])
			}
			maxSeen[k] = got.Last
		}
	}
}
