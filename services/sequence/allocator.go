package sequence

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/imkube/imkube/internal/telemetry"
)

// MaxKeyLen is the longest key, in bytes.
const MaxKeyLen = 255

// Defaults.
const (
	DefaultSections = 1024
	DefaultStep     = 10_000
	DefaultTable    = "seq_sections"
)

// Config tunes a Sequencer. A zero field takes its default.
type Config struct {
	// Sections is the number of sections keys hash into (default 1024, at
	// most 1<<20). It cannot change once the bounds table exists.
	Sections int
	// Step is how far one SQL write raises a section's bound (default 10,000).
	Step int64
	// Table is the bounds table (default seq_sections).
	Table string
	// KeyPrefix prefixes the Redis keys (default "imkube:seq:"; NewRedis only).
	KeyPrefix string
	// SQLTimeout bounds every background SQL operation (default 5s).
	SQLTimeout time.Duration
}

// DefaultKeyPrefix is the default Config.KeyPrefix.
const DefaultKeyPrefix = "imkube:seq:"

// Deps are what a Sequencer works with.
type Deps struct {
	// DB holds the section bounds (required); Dialect is DialectSQLite or
	// DialectMySQL.
	DB      *sql.DB
	Dialect string
	// Redis holds the current values (NewRedis only, required there):
	// a standalone, sentinel or cluster client.
	Redis redis.UniversalClient
	// Log receives warnings (nil: discard).
	Log *slog.Logger
	// Metrics records allocations, bound raises and recoveries (nil: nothing).
	Metrics *telemetry.Sequence
}

// withDefaults fills zero fields and checks the rest; errors name the field.
func (c Config) withDefaults() (Config, error) {
	if c.Sections == 0 {
		c.Sections = DefaultSections
	}
	if c.Step == 0 {
		c.Step = DefaultStep
	}
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.SQLTimeout == 0 {
		c.SQLTimeout = 5 * time.Second
	}
	switch {
	case c.Sections < 1 || c.Sections > 1<<20:
		return c, fmt.Errorf("sequence: sections = %d: want 1..%d", c.Sections, 1<<20)
	case c.Step < 1:
		return c, fmt.Errorf("sequence: step = %d: want >= 1", c.Step)
	case c.SQLTimeout < 0:
		return c, fmt.Errorf("sequence: sql timeout = %v: want > 0", c.SQLTimeout)
	}
	return c, nil
}

// Sequencer is the allocator behind NewEmbedded and NewRedis. It is safe for
// concurrent use; Close stops its background goroutine.
type Sequencer struct {
	cfg     Config
	log     *slog.Logger
	metrics *telemetry.Sequence
	values  valueStore
	bounds  *boundStore
	mem     *memStore // embedded mode: snapshot on Close

	// cached[s] is a committed bound of section s: it may lag behind the
	// table (another replica raised it), never lead it.
	cached []atomic.Int64

	raiseSem chan struct{} // one bound raise at a time in this process
	wantMu   sync.Mutex
	want     map[int]int64 // sections to raise ahead of need -> their bound when asked
	wantC    chan struct{}

	closeMu    sync.RWMutex
	closed     bool
	noSnapshot bool // tests: Close behaves like a crash
	stop       context.CancelFunc
	done       chan struct{}

	sqlWrites  atomic.Int64
	recoveries atomic.Int64
}

var (
	_ Allocator = (*Sequencer)(nil)
	_ Readier   = (*Sequencer)(nil)
	_ io.Closer = (*Sequencer)(nil)
)

// NewEmbedded returns an allocator for `imkube dev`: current values in
// memory, section bounds in deps.DB (dialect "sqlite" or "mysql"); deps.Redis
// is not used. A start after a crash resumes every used section above its
// bound (a gap); a start after a clean Close continues exactly where it
// stopped. Call Close on shutdown.
func NewEmbedded(ctx context.Context, cfg Config, deps Deps) (*Sequencer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	b, err := newBoundStore(ctx, deps.DB, deps.Dialect, cfg.Table, cfg.Sections)
	if err != nil {
		return nil, err
	}
	mem := newMemStore(cfg.Sections)
	q := newSequencer(cfg, deps, mem, b)
	q.mem = mem
	snap, ok, err := b.takeSnapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("sequence: %w", err)
	}
	if ok {
		mem.restore(snap, q.section)
		q.log.Info("sequence values restored from the clean-shutdown snapshot", "keys", len(snap.vals), "sections", len(snap.floors))
	}
	if err := q.warm(ctx); err != nil {
		return nil, err
	}
	// Nothing else shares this memory: recover every section now, in one
	// pass, instead of one by one on first use.
	all := make([]int, 0, cfg.Sections)
	for s := range cfg.Sections {
		if !mem.sections[s].marked {
			all = append(all, s)
		}
	}
	if err := q.recover(ctx, all, 1); err != nil {
		return nil, err
	}
	q.start()
	return q, nil
}

func newSequencer(cfg Config, deps Deps, v valueStore, b *boundStore) *Sequencer {
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sequencer{
		cfg:      cfg,
		log:      log,
		metrics:  deps.Metrics,
		values:   v,
		bounds:   b,
		cached:   make([]atomic.Int64, cfg.Sections),
		raiseSem: make(chan struct{}, 1),
		want:     map[int]int64{},
		wantC:    make(chan struct{}, 1),
	}
}

// warm loads the committed bounds into the cache.
func (q *Sequencer) warm(ctx context.Context) error {
	all, err := q.bounds.loadAll(ctx)
	if err != nil {
		return fmt.Errorf("sequence: %w", err)
	}
	for s, v := range all {
		if s < len(q.cached) {
			q.cached[s].Store(v)
		}
	}
	return nil
}

func (q *Sequencer) start() {
	ctx, cancel := context.WithCancel(context.Background())
	q.stop = cancel
	q.done = make(chan struct{})
	go func() {
		defer close(q.done)
		q.raiseAhead(ctx)
	}()
}

// Close stops the background goroutine and refuses further calls. In the
// embedded mode it also saves the current values, so the next start has no
// gap.
func (q *Sequencer) Close() error {
	q.closeMu.Lock()
	if q.closed {
		q.closeMu.Unlock()
		return nil
	}
	q.closed = true
	q.closeMu.Unlock()
	q.stop()
	<-q.done
	if q.mem == nil || q.noSnapshot {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*q.cfg.SQLTimeout)
	defer cancel()
	snap := q.mem.snapshot()
	if err := q.bounds.saveSnapshot(ctx, snap, q.section); err != nil {
		return fmt.Errorf("sequence: %w (the next start resumes above the bounds)", err)
	}
	q.log.Info("sequence values saved for the next start", "keys", len(snap.vals))
	return nil
}

// Stats are counters of this process, for tests (the same events are
// recorded on Deps.Metrics).
type Stats struct {
	SQLWrites  int64 // bound rows written (inserted or raised)
	Recoveries int64 // sections recovered after a loss of values
}

// Stats returns the counters.
func (q *Sequencer) Stats() Stats {
	return Stats{SQLWrites: q.sqlWrites.Load(), Recoveries: q.recoveries.Load()}
}

// Section returns the section of key.
func (q *Sequencer) Section(key string) int { return q.section(key) }

func (q *Sequencer) section(key string) int { return sectionOf(key, len(q.cached)) }

// sectionOf hashes key into one of n sections with FNV-1a: stable across
// processes and versions, which the guarantee depends on.
func sectionOf(key string, n int) int {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum64() % uint64(n))
}

// Validate checks reqs against the limits; errors wrap ErrBadRequest.
func Validate(reqs []Request) error {
	if len(reqs) == 0 {
		return fmt.Errorf("%w: no keys", ErrBadRequest)
	}
	if len(reqs) > MaxKeys {
		return fmt.Errorf("%w: %d keys in one request, the maximum is %d", ErrBadRequest, len(reqs), MaxKeys)
	}
	for i, r := range reqs {
		switch {
		case r.Key == "":
			return fmt.Errorf("%w: request %d: empty key", ErrBadRequest, i)
		case len(r.Key) > MaxKeyLen:
			return fmt.Errorf("%w: request %d: key is %d bytes, the maximum is %d", ErrBadRequest, i, len(r.Key), MaxKeyLen)
		case r.Count <= 0:
			return fmt.Errorf("%w: request %d (key %q): count %d, want >= 1", ErrBadRequest, i, r.Key, r.Count)
		case r.Count > MaxCount:
			return fmt.Errorf("%w: request %d (key %q): count %d, the maximum is %d", ErrBadRequest, i, r.Key, r.Count, MaxCount)
		}
	}
	return nil
}

// maxAttempts bounds the rounds of one Allocate (each round: try, then raise
// bounds or recover sections as reported).
const maxAttempts = 16

// Allocate implements Allocator.
func (q *Sequencer) Allocate(ctx context.Context, reqs []Request) ([]Range, error) {
	if err := Validate(reqs); err != nil {
		return nil, err
	}
	q.closeMu.RLock()
	defer q.closeMu.RUnlock()
	if q.closed {
		return nil, fmt.Errorf("%w: allocator closed", ErrUnavailable)
	}
	out := make([]Range, len(reqs))
	sections := make([]int, len(reqs))
	for i, r := range reqs {
		sections[i] = q.section(r.Key)
	}
	pending := make([]int, len(reqs))
	for i := range pending {
		pending[i] = i
	}
	items := make([]item, 0, len(reqs))
	res := make([]result, len(reqs))
	for attempt := 1; ; attempt++ {
		items = items[:0]
		for _, i := range pending {
			s := sections[i]
			items = append(items, item{key: reqs[i].Key, section: s, count: reqs[i].Count, bound: q.cached[s].Load()})
		}
		if err := q.values.allocate(ctx, items, res[:len(items)]); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		var need map[int]int64
		var lost []int
		next := make([]int, 0)
		for j, i := range pending {
			r, s := res[j], sections[i]
			switch r.status {
			case statusOK:
				out[i] = Range{Key: reqs[i].Key, First: r.value - reqs[i].Count + 1, Last: r.value}
				q.noteUsed(s, r.value)
			case statusNeedBound:
				if need == nil {
					need = map[int]int64{}
				}
				need[s] = max(need[s], r.value)
				next = append(next, i)
			case statusLost:
				if !contains(lost, s) {
					lost = append(lost, s)
				}
				next = append(next, i)
			}
		}
		if len(next) == 0 {
			q.metrics.Allocated(int(total(reqs)))
			return out, nil
		}
		if attempt == maxAttempts {
			return nil, fmt.Errorf("%w: %d keys still waiting for their section after %d rounds", ErrUnavailable, len(next), attempt)
		}
		if len(lost) > 0 {
			if err := q.recover(ctx, lost, attempt); err != nil {
				return nil, err
			}
		}
		if len(need) > 0 {
			q.metrics.SectionsExhausted(len(need))
			if err := q.ensureBounds(ctx, need); err != nil {
				return nil, err
			}
		}
		pending = next
	}
}

// total is the number of values reqs ask for.
func total(reqs []Request) int64 {
	var n int64
	for _, r := range reqs {
		n += r.Count
	}
	return n
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// noteUsed asks the background goroutine to raise section s ahead of need
// when over 80 % of its last step is used.
func (q *Sequencer) noteUsed(s int, last int64) {
	b := q.cached[s].Load()
	if last <= b-q.cfg.Step/5 {
		return
	}
	q.wantMu.Lock()
	q.want[s] = b
	q.wantMu.Unlock()
	select {
	case q.wantC <- struct{}{}:
	default:
	}
}

// raiseAhead is the background loop: it raises wanted sections by one step.
func (q *Sequencer) raiseAhead(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.wantC:
		}
		rctx, cancel := context.WithTimeout(ctx, q.cfg.SQLTimeout)
		err := q.ensureBounds(rctx, nil)
		cancel()
		if err != nil && ctx.Err() == nil {
			q.log.Warn("sequence: raising bounds ahead of need failed; will retry", "err", err)
			// Back off: allocations keep asking while SQL is down.
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// ensureBounds raises section bounds until cached[s] >= need[s] for every
// section in need; sections wanted by the background loop ride along in the
// same transaction. Errors wrap ErrUnavailable.
func (q *Sequencer) ensureBounds(ctx context.Context, need map[int]int64) error {
	select {
	case q.raiseSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting to raise bounds: %w", ErrUnavailable, ctx.Err())
	}
	defer func() { <-q.raiseSem }()

	target := map[int]int64{}
	for s, n := range need {
		if q.cached[s].Load() < n {
			target[s] = n
		}
	}
	q.wantMu.Lock()
	for s, at := range q.want {
		delete(q.want, s)
		if _, ok := target[s]; ok {
			continue
		}
		// Raise only a bound that did not move since it was asked: one
		// more step than the committed bound this process knows. This keeps
		// raises to one step per step of use.
		if b := q.cached[s].Load(); b == at {
			target[s] = b + 1
		}
	}
	q.wantMu.Unlock()

	for round := 0; len(target) > 0; round++ {
		if round == 8 {
			return fmt.Errorf("%w: bounds of %d sections still contended after %d rounds", ErrUnavailable, len(target), round)
		}
		rs := make([]raise, 0, len(target))
		for s, n := range target {
			old := q.cached[s].Load()
			k := (n - old + q.cfg.Step - 1) / q.cfg.Step
			rs = append(rs, raise{section: s, old: old, new: old + max(k, 1)*q.cfg.Step})
		}
		done, err := q.bounds.raise(ctx, rs)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		var lostRace []int
		for i, r := range rs {
			if done[i] {
				q.sqlWrites.Add(1)
				q.metrics.BoundRaised()
				storeMax(&q.cached[r.section], r.new)
				delete(target, r.section)
			} else {
				lostRace = append(lostRace, r.section)
			}
		}
		if len(lostRace) == 0 {
			break
		}
		// Another replica moved these bounds: learn them, raise only what
		// is still short.
		fresh, err := q.bounds.read(ctx, lostRace)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		for i, s := range lostRace {
			storeMax(&q.cached[s], fresh[i])
			if fresh[i] >= target[s] {
				delete(target, s)
			}
		}
	}
	return nil
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// recover restores the marker of sections whose values were lost, with the
// persisted bound as floor (see the package doc). The bound is read AFTER the
// recovery token is taken, so it covers every value handed out before the
// loss.
//
// attempt (from 1) sets how long to wait when other replicas hold the
// tokens: 2ms, 4ms, ... up to 100ms.
func (q *Sequencer) recover(ctx context.Context, sections []int, attempt int) error {
	tokens, ok, err := q.values.beginRecover(ctx, sections)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var mine []int
	var mineTok []string
	for i, s := range sections {
		if ok[i] {
			mine = append(mine, s)
			mineTok = append(mineTok, tokens[i])
		}
	}
	if len(mine) == 0 {
		// Another replica is recovering them: give it a moment.
		wait := 100 * time.Millisecond
		if attempt < 6 {
			wait = time.Millisecond << attempt
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		case <-t.C:
		}
		return nil
	}
	floors, err := q.bounds.read(ctx, mine)
	if err != nil {
		q.values.abandonRecover(context.WithoutCancel(ctx), mine, mineTok)
		return fmt.Errorf("%w: recover sections: %w", ErrUnavailable, err)
	}
	done, err := q.values.finishRecover(ctx, mine, mineTok, floors)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	n, used := 0, 0
	for i, s := range mine {
		storeMax(&q.cached[s], floors[i])
		if done[i] {
			n++
			if floors[i] > 0 {
				used++
			}
		}
	}
	q.recoveries.Add(int64(n))
	q.metrics.Recovered(n)
	if used > 0 {
		q.log.Warn("sequence: values of sections were lost; their keys resume above the persisted bounds",
			"sections", used, "fresh", n-used)
	}
	return nil
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Ready reports whether the allocator serves: not closed, and the value
// store answers. SQL is not checked: allocation continues within the
// committed bounds while it is away.
func (q *Sequencer) Ready(ctx context.Context) error {
	q.closeMu.RLock()
	closed := q.closed
	q.closeMu.RUnlock()
	if closed {
		return errors.New("sequence: allocator closed")
	}
	if r, ok := q.values.(*redisStore); ok {
		if err := r.rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("sequence: redis: %w", err)
		}
	}
	return nil
}
