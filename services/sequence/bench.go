package sequence

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	goruntime "runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
)

// BenchMain runs `imkube bench seq`: the baseline (raw Redis INCR from Go,
// unpipelined and pipelined) and the sequence service through HTTP
// (single-key calls coalesced by the Client, and batched calls), all at the
// same concurrency in the same run, and prints a table with throughput,
// p50/p99 latency and ratios against the baseline. It needs Redis and MySQL
// (IMKUBE_REDIS_ADDR, IMKUBE_MYSQL_DSN) and cleans up its keys and table.
func BenchMain(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	fs := flag.NewFlagSet("bench seq", flag.ContinueOnError)
	fs.SetOutput(stdout)
	redisAddr := fs.String("redis-addr", os.Getenv("IMKUBE_REDIS_ADDR"), "Redis address (env IMKUBE_REDIS_ADDR)")
	dsn := fs.String("mysql-dsn", os.Getenv("IMKUBE_MYSQL_DSN"), "MySQL DSN (env IMKUBE_MYSQL_DSN)")
	clients := fs.Int("clients", 64, "concurrent clients in every scenario")
	dur := fs.Duration("duration", 5*time.Second, "measured time per scenario")
	keys := fs.Int("keys", 100_000, "distinct keys")
	batchKeys := fs.Int("batch-keys", 64, "keys per call in the batched scenarios")
	batchCount := fs.Int64("batch-count", 64, "count per key in the batched-ranges scenario")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	only := fs.String("only", "", "run only the scenarios whose name contains this text (the two baselines always run)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return fmt.Errorf("bench seq: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench seq: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if *redisAddr == "" || *dsn == "" {
		return errors.New("bench seq: --redis-addr (IMKUBE_REDIS_ADDR) and --mysql-dsn (IMKUBE_MYSQL_DSN) are required; `hack/deps.sh up` starts both")
	}
	if *clients < 1 || *keys < 1 || *batchKeys < 1 || *batchKeys > MaxKeys || *batchCount < 1 || *batchCount > MaxCount || *dur <= 0 {
		return errors.New("bench seq: clients, keys, batch-keys, batch-count and duration must be positive (batch-keys <= 10000, batch-count <= 100000)")
	}
	b := &seqBench{clients: *clients, dur: *dur, keys: *keys, log: log}
	addr := strings.Split(*redisAddr, ",")[0]
	b.rdb = redis.NewClient(&redis.Options{Addr: addr, PoolSize: *clients + 8})
	defer b.rdb.Close()
	if err := b.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("bench seq: redis at %s: %w", addr, err)
	}
	db, err := openMySQL(ctx, *dsn)
	if err != nil {
		return err
	}
	defer db.Close()

	tag := newToken()[:8]
	benchToken := StaticToken(newToken()) // the service requires the internal token
	prefix := "imkube:bench:" + tag + ":"
	table := "seq_bench_" + tag
	defer b.cleanup(context.WithoutCancel(ctx), db, prefix, table)

	// The service: values in the same Redis, bounds in MySQL, HTTP on
	// loopback, in this process.
	srvRDB := redis.NewClient(&redis.Options{Addr: addr, PoolSize: *clients + 8})
	defer srvRDB.Close()
	a, err := NewRedis(ctx, Config{KeyPrefix: prefix, Table: table}, Deps{DB: db, Dialect: DialectMySQL, Redis: srvRDB, Log: log})
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bench seq: %w", err)
	}
	srv := &http.Server{Handler: NewHandler(a, benchToken, log, nil), ReadHeaderTimeout: 10 * time.Second}
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		_ = srv.Serve(ln)
	}()
	defer func() {
		_ = srv.Close()
		<-srvDone
	}()
	url := "http://" + ln.Addr().String()
	coalescing, err := NewClient(ClientConfig{URL: url, Token: string(benchToken)}, ClientDeps{})
	if err != nil {
		return err
	}
	defer coalescing.Close()
	direct, err := NewClient(ClientConfig{URL: url, Token: string(benchToken), Window: -1, MaxBatch: 1, MaxInflight: *clients}, ClientDeps{})
	if err != nil {
		return err
	}
	defer direct.Close()

	incrKey := func(i int) string { return prefix + "incr:" + strconv.Itoa(i) }
	seqKey := func(i int) string { return "c:bench-" + strconv.Itoa(i) }
	bk, bc := *batchKeys, *batchCount
	scenarios := []struct {
		name   string
		values int64 // values per call
		op     func(ctx context.Context, w, i int) error
	}{
		{"redis INCR, unpipelined (baseline)", 1, func(ctx context.Context, w, i int) error {
			return b.rdb.Incr(ctx, incrKey(b.key(w, i))).Err()
		}},
		{fmt.Sprintf("redis INCR, pipelined x%d", bk), int64(bk), func(ctx context.Context, w, i int) error {
			p := b.rdb.Pipeline()
			for j := range bk {
				p.Incr(ctx, incrKey(b.key(w, i*bk+j)))
			}
			_, err := p.Exec(ctx)
			return err
		}},
		{"sequence, single-key calls, coalesced client", 1, func(ctx context.Context, w, i int) error {
			_, err := coalescing.Allocate(ctx, []Request{{Key: seqKey(b.key(w, i)), Count: 1}})
			return err
		}},
		{"sequence, single-key calls, one HTTP call each", 1, func(ctx context.Context, w, i int) error {
			_, err := direct.Allocate(ctx, []Request{{Key: seqKey(b.key(w, i)), Count: 1}})
			return err
		}},
		{fmt.Sprintf("sequence, batched %d keys x 1", bk), int64(bk), func(ctx context.Context, w, i int) error {
			reqs := make([]Request, bk)
			for j := range reqs {
				reqs[j] = Request{Key: seqKey(b.key(w, i*bk+j)), Count: 1}
			}
			_, err := direct.Allocate(ctx, reqs)
			return err
		}},
		{fmt.Sprintf("sequence, batched %d keys x %d", bk, bc), int64(bk) * bc, func(ctx context.Context, w, i int) error {
			reqs := make([]Request, bk)
			for j := range reqs {
				reqs[j] = Request{Key: seqKey(b.key(w, i*bk+j)), Count: bc}
			}
			_, err := direct.Allocate(ctx, reqs)
			return err
		}},
	}
	fmt.Fprintf(stdout, "imkube bench seq: %d clients, %s per scenario, %d keys, %d CPUs (%s/%s), %s\n\n",
		b.clients, b.dur, b.keys, goruntime.NumCPU(), goruntime.GOOS, goruntime.GOARCH, goruntime.Version())
	results := make([]benchResult, 0, len(scenarios))
	for i, s := range scenarios {
		if i >= 2 && !strings.Contains(s.name, *only) {
			continue
		}
		// Warm up (connections, scripts, first bounds), then measure.
		if _, err := b.run(ctx, s.op, min(b.dur/5, time.Second)); err != nil {
			return fmt.Errorf("bench seq: %s: %w", s.name, err)
		}
		r, err := b.run(ctx, s.op, b.dur)
		if err != nil {
			return fmt.Errorf("bench seq: %s: %w", s.name, err)
		}
		r.name, r.values = s.name, r.calls*s.values
		results = append(results, r)
	}
	base, pipe := results[0], results[1]
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tcalls/s\tvalues/s\tp50\tp99\tvalues/s vs INCR\tvs pipelined INCR\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t%s\t%.2fx\t%.2fx\t\n", r.name, r.callRate(), r.valueRate(),
			fmtDur(r.p50), fmtDur(r.p99), r.valueRate()/base.valueRate(), r.valueRate()/pipe.valueRate())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nvalues/s counts sequence values (or INCRs) handed out; p50/p99 are per call.")
	return nil
}

type seqBench struct {
	rdb     *redis.Client
	clients int
	dur     time.Duration
	keys    int
	log     *slog.Logger
}

type benchResult struct {
	name          string
	calls, values int64
	elapsed       time.Duration
	p50, p99      time.Duration
}

func (r benchResult) callRate() float64  { return float64(r.calls) / r.elapsed.Seconds() }
func (r benchResult) valueRate() float64 { return float64(r.values) / r.elapsed.Seconds() }

// key spreads worker w's i-th call over the keyspace.
func (b *seqBench) key(w, i int) int { return (w*7919 + i*104729) % b.keys }

// run calls op from every client until d has passed.
func (b *seqBench) run(ctx context.Context, op func(context.Context, int, int) error, d time.Duration) (benchResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lat := make([][]time.Duration, b.clients)
	errs := make(chan error, b.clients)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := range b.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				t0 := time.Now()
				if !t0.Before(deadline) {
					return
				}
				if err := op(ctx, w, i); err != nil {
					errs <- err
					cancel()
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return benchResult{}, err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	r := benchResult{calls: int64(len(all)), elapsed: elapsed}
	if len(all) > 0 {
		r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	}
	return r, nil
}

func (b *seqBench) cleanup(ctx context.Context, db *sql.DB, prefix, table string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var cursor uint64
	for range 100_000 {
		keys, next, err := b.rdb.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			b.log.Warn("bench seq: cleaning Redis", "err", err)
			break
		}
		if len(keys) > 0 {
			b.rdb.Unlink(ctx, keys...)
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	for _, t := range []string{table, table + "_snapshot"} {
		if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+t); err != nil {
			b.log.Warn("bench seq: dropping table", "table", t, "err", err)
		}
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	}
}
