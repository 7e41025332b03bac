package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The side-by-side scenarios of issue 21: `imkube bench conns|p2p|group`
// drive imkube dev and the Centrifugo peer (history on, history off) one
// after the other in the same run, each server its own process pinned to CPU
// 0 with GOMAXPROCS=1 while this load generator runs on CPU 1, and print
// the figures of each with imkube's ratio to the peer.

// versusFlags are the flags every side-by-side scenario takes.
type versusFlags struct {
	only   string
	pin    bool
	peers  bool
	server string
	strict bool
	// cpuprofile: write a CPU profile of the imkube server over the
	// measured phase to this file (pprof format).
	cpuprofile string
	dial       dialFlags
}

func (v *versusFlags) register(fs *flag.FlagSet) {
	v.dial.register(fs)
	fs.StringVar(&v.only, "only", "", "run only the systems whose name contains this (imkube, centrifugo, history)")
	fs.BoolVar(&v.pin, "pin", true, "pin servers to CPU 0 and this generator to CPU 1 (taskset), GOMAXPROCS=1 each")
	fs.BoolVar(&v.peers, "peer", true, "also run the Centrifugo peer when it is installed (hack/centrifugo.sh)")
	fs.BoolVar(&v.strict, "strict", false, "fail when any message was lost, duplicated or reordered")
	fs.StringVar(&v.cpuprofile, "cpuprofile", "", "write a CPU profile of the imkube server over the measured phase to this file (go tool pprof)")
	fs.StringVar(&v.server, "imkube-bin", "", "imkube binary to run as the server (default: this one), e.g. a build of another commit")
}

// setup pins this process to CPU 1 (re-executing itself under taskset once)
// and returns the run's environment and systems. reexec reports that the
// pinned child ran the benchmark: the caller returns its error. conns is the
// most connections the run opens at once: RLIMIT_NOFILE is raised for them
// (the servers inherit it).
func (v *versusFlags) setup(out io.Writer, conns int) (env *runEnv, systems []system, reexec bool, err error) {
	if err := v.dial.validate(); err != nil {
		return nil, nil, false, err
	}
	if err := raiseNoFile(uint64(conns) + 256); err != nil {
		return nil, nil, false, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, nil, false, err
	}
	pinned := os.Getenv("IMKUBE_BENCH_PINNED") != "" // the child below
	pin := v.pin && (pinned || runtime.NumCPU() >= 2)
	if pin && !pinned {
		if _, err := exec.LookPath("taskset"); err != nil {
			fmt.Fprintln(out, "taskset not found: servers and generator are not pinned")
			pin = false
		}
	}
	if pin && !pinned {
		cmd := exec.Command("taskset", append([]string{"-c", "1", self}, os.Args[1:]...)...)
		cmd.Env = append(os.Environ(), "IMKUBE_BENCH_PINNED=1", "GOMAXPROCS=1")
		cmd.Stdout, cmd.Stderr, cmd.Stdin = out, os.Stderr, os.Stdin
		return nil, nil, true, cmd.Run()
	}
	dir, err := os.MkdirTemp("", "imkube-bench-")
	if err != nil {
		return nil, nil, false, err
	}
	env = &runEnv{dir: dir, self: self, pin: pin, cpuprofile: v.cpuprofile, addrs: newSourceAddrs(v.dial.perAddr), dial: v.dial}
	if v.server != "" {
		env.self = v.server
	}
	all := []system{imkubeSystem{}}
	if v.peers {
		if env.centrifugo = centrifugoPath(); env.centrifugo == "" {
			fmt.Fprintf(out, "Centrifugo %s is not installed (hack/centrifugo.sh install): imkube only\n", CentrifugoVersion)
		} else {
			all = append(all, centrifugoSystem{history: true}, centrifugoSystem{history: false})
		}
	}
	for _, s := range all {
		if v.only == "" || containsFold(s.name(), v.only) {
			systems = append(systems, s)
		}
	}
	return env, systems, false, nil
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func header(out io.Writer, scenario, detail string, env *runEnv) {
	load, _ := os.ReadFile("/proc/loadavg")
	pin := "servers pinned to CPU 0 (GOMAXPROCS=1), generator on CPU 1"
	if !env.pin {
		pin = "not pinned"
	}
	fmt.Fprintf(out, "imkube bench %s: %s; %s; %s, load %s\n\n", scenario, detail, pin, runtime.Version(), firstFields(string(load), 3))
}

func firstFields(s string, n int) string {
	f := 0
	for i, c := range s {
		if c == ' ' {
			f++
			if f == n {
				return s[:i]
			}
		}
	}
	return s
}

func userIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(700000000 + i)
	}
	return ids
}

// ---- conns ----

// BenchConns is `imkube bench conns`: memory of idle connections, and the
// time and server CPU it takes to open them.
func BenchConns(ctx context.Context, args []string, out io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("bench conns", flag.ContinueOnError)
	fs.SetOutput(out)
	var v versusFlags
	v.register(fs)
	n := fs.Int("conns", 500, "idle connections (imkube dev's gateway takes at most 100,000: the gateway default, which dev does not change)")
	settle := fs.Duration("settle", 3*time.Second, "wait before each memory reading")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 {
		return errors.New("bench conns: -conns must be >= 1")
	}
	env, systems, reexec, err := v.setup(out, *n)
	if reexec || err != nil {
		return err
	}
	defer os.RemoveAll(env.dir)
	rate := "no rate bound"
	if v.dial.rate > 0 {
		rate = fmt.Sprintf("%d/s at most", v.dial.rate)
	}
	header(out, "conns", fmt.Sprintf("%d idle authenticated connections, each subscribed to its user's messages, from %d source addresses (127.1.0.1 up, %d each), %s",
		*n, (*n+v.dial.perAddr-1)/v.dial.perAddr, v.dial.perAddr, rate), env)
	fmt.Fprintf(out, "limits: %s\n\n", systemLimits())
	users := userIDs(*n)
	type row struct {
		before, after int64
		cpu, wall     time.Duration
		failed        int
	}
	rows := map[string]row{}
	var errs []error
	var tracked []string // nf_conntrack_count with each system's connections open
	fmt.Fprintf(out, "%-22s %8s %6s %12s %12s %12s %10s %11s %11s\n", "system", "conns", "errors", "RSS before", "RSS with", "RSS conns", "per conn",
		"connect s", "CPU s")
	for _, sys := range systems {
		s, err := sys.start(ctx, env, users, nil)
		if err != nil {
			return err
		}
		err = func() error {
			defer s.stop()
			time.Sleep(*settle)
			before, _ := s.rss()
			cpu0, _ := s.cpu()
			start := time.Now()
			conns, failed, firstErr := dialAll(ctx, env, sys, s, users, func(int) func([]byte) { return func([]byte) {} })
			defer closeAll(conns)
			wall := time.Since(start)
			cpu1, _ := s.cpu()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count"); err == nil {
				tracked = append(tracked, fmt.Sprintf("%s %s", sys.name(), strings.TrimSpace(string(b))))
			}
			time.Sleep(*settle)
			after, _ := s.rss()
			r := row{before, after, cpu1 - cpu0, wall, failed}
			rows[sys.name()] = r
			open := *n - failed
			fmt.Fprintf(out, "%-22s %8d %6d %8.1f MiB %8.1f MiB %8.1f MiB %7.1f KB %11.1f %11.1f\n", sys.name(), open, failed, mib(r.before), mib(r.after),
				mib(r.after-r.before), float64(r.after-r.before)/float64(max(open, 1))/1024, r.wall.Seconds(), r.cpu.Seconds())
			if failed > 0 {
				fmt.Fprintf(out, "  %s: %d connections failed, the first: %v\n", sys.name(), failed, firstErr)
				errs = append(errs, fmt.Errorf("%s: %d of %d connections failed: %w", sys.name(), failed, *n, firstErr))
			}
			return nil
		}()
		if err != nil {
			return fmt.Errorf("%s: %w", sys.name(), err)
		}
	}
	if len(tracked) > 0 {
		fmt.Fprintf(out, "nf_conntrack entries with the connections open: %s\n", strings.Join(tracked, ", "))
	}
	if im, ok := rows["imkube dev"]; ok {
		for _, peer := range []string{"centrifugo history", "centrifugo no history"} {
			p, ok := rows[peer]
			if !ok || p.failed > 0 || im.failed > 0 {
				continue
			}
			fmt.Fprintf(out, "imkube / %s: memory per connection %.2fx, RSS before connections %.2fx, CPU to connect %.2fx\n", peer,
				float64(im.after-im.before)/float64(max(p.after-p.before, 1)), float64(im.before)/float64(max(p.before, 1)),
				im.cpu.Seconds()/max(p.cpu.Seconds(), 0.01))
		}
	}
	if v.strict {
		return errors.Join(errs...)
	}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// ---- deliveries ----

// tracker records deliveries: latency, and per stream (a sender and a
// recipient) lost, duplicated and reordered messages.
type tracker struct {
	start   time.Time
	measure atomic.Bool // latencies of the measured phase only
	mu      sync.Mutex
	lat     []time.Duration
	streams map[[2]int]*stream
	count   atomic.Int64 // deliveries in the measured phase
	lastAt  atomic.Int64 // time of the last of them, since start
	bySeq   map[int64][]byte
	// Read diffusion: the gateway coalesces notifies (one per conversation
	// per interval, carrying the highest seq), so a notify of seq N tells
	// its recipient about every seq up to N. Per recipient: the highest seq
	// notified (upTo, when: notAt) and the highest credited (lastN); seqs
	// are credited in order, each once its ack has mapped it to a payload.
	lastN map[int]int64
	upTo  map[int]int64
	notAt map[int]time.Duration
	cmu   sync.Mutex // crediting and its deliveries, in order
}

// notified records a read-diffusion notify of conv seq at dst: every seq up
// to it is delivered to dst, at the notify's arrival; acked maps seq to the
// payload sent (from the sender's ack). Seqs whose ack comes after the
// notify are credited when it comes, with the notify's arrival time.
func (t *tracker) notified(dst int, seq int64) {
	at := time.Since(t.start)
	t.cmu.Lock()
	defer t.cmu.Unlock()
	t.mu.Lock()
	if seq > t.upTo[dst] {
		t.upTo[dst], t.notAt[dst] = seq, at
	}
	ps := t.creditLocked(dst)
	t.mu.Unlock()
	for _, p := range ps {
		t.deliveredAt(dst, p, at)
	}
}

// creditLocked returns the payloads of dst's seqs from lastN+1 up to upTo
// whose acks are known, in order, and marks them credited.
func (t *tracker) creditLocked(dst int) [][]byte {
	var ps [][]byte
	for t.lastN[dst] < t.upTo[dst] {
		p, ok := t.bySeq[t.lastN[dst]+1]
		if !ok {
			break
		}
		ps = append(ps, p)
		t.lastN[dst]++
	}
	return ps
}

func (t *tracker) acked(seq int64, payload []byte) {
	t.cmu.Lock()
	defer t.cmu.Unlock()
	t.mu.Lock()
	t.bySeq[seq] = payload
	type d struct {
		dst int
		ps  [][]byte
		at  time.Duration
	}
	var ds []d
	for dst, up := range t.upTo {
		if t.lastN[dst] == seq-1 && up >= seq {
			ds = append(ds, d{dst, t.creditLocked(dst), t.notAt[dst]})
		}
	}
	t.mu.Unlock()
	for _, x := range ds {
		for _, p := range x.ps {
			t.deliveredAt(x.dst, p, x.at)
		}
	}
}

type stream struct {
	last, got, dup, reordered int64
	seen                      map[int64]struct{}
}

func newTracker() *tracker {
	return &tracker{start: time.Now(), streams: map[[2]int]*stream{}, bySeq: map[int64][]byte{},
		lastN: map[int]int64{}, upTo: map[int]int64{}, notAt: map[int]time.Duration{}}
}

// payload encodes a message of stream src: its number and send time.
func (t *tracker) payload(src int, n int64) []byte {
	return fmt.Appendf(nil, "%d.%d.%d", src, n, time.Since(t.start).Nanoseconds())
}

// delivered records payload p arriving at recipient dst.
func (t *tracker) delivered(dst int, p []byte) { t.deliveredAt(dst, p, time.Since(t.start)) }

func (t *tracker) deliveredAt(dst int, p []byte, now time.Duration) {
	var f [3]int64
	k := 0
	for _, c := range p {
		if c == '.' {
			k++
			if k > 2 {
				return
			}
			continue
		}
		if c < '0' || c > '9' {
			return
		}
		f[k] = f[k]*10 + int64(c-'0')
	}
	measured := t.measure.Load()
	t.mu.Lock()
	key := [2]int{int(f[0]), dst}
	s := t.streams[key]
	if s == nil {
		s = &stream{seen: map[int64]struct{}{}}
		t.streams[key] = s
	}
	if _, ok := s.seen[f[1]]; ok {
		s.dup++
	} else {
		s.seen[f[1]] = struct{}{}
		s.got++
		if f[1] < s.last {
			s.reordered++
		}
		s.last = max(s.last, f[1])
	}
	if measured {
		t.lat = append(t.lat, now-time.Duration(f[2]))
	}
	t.mu.Unlock()
	if measured {
		t.count.Add(1)
		t.lastAt.Store(int64(now))
	}
}

// received returns the unique messages received so far.
// drain waits until total deliveries arrived, or none came for stall (the
// rest then counts as lost), at most limit.
func (t *tracker) drain(total int64, limit, stall time.Duration) {
	for last, lastAt, deadline := int64(-1), time.Now(), time.Now().Add(limit); time.Now().Before(deadline); {
		got := t.received()
		if got >= total {
			return
		}
		if got != last {
			last, lastAt = got, time.Now()
		} else if time.Since(lastAt) > stall {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (t *tracker) received() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for _, s := range t.streams {
		n += s.got
	}
	return n
}

type result struct {
	sent, deliveries, lost, dup, reordered int64
	elapsed, cpu                           time.Duration
	p50, p99, p999, max                    time.Duration
}

func (r result) perCPU() float64 { return float64(r.deliveries) / max(r.cpu.Seconds(), 0.01) }

func (t *tracker) result(sent int64, expected int64) result {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := result{sent: sent}
	var got int64
	for _, s := range t.streams {
		got += s.got
		r.dup += s.dup
		r.reordered += s.reordered
	}
	r.lost = max(expected-got, 0)
	slices.Sort(t.lat)
	pct := func(p float64) time.Duration {
		if len(t.lat) == 0 {
			return 0
		}
		return t.lat[min(len(t.lat)-1, int(p*float64(len(t.lat))))]
	}
	r.p50, r.p99, r.p999 = pct(0.5), pct(0.99), pct(0.999)
	if len(t.lat) > 0 {
		r.max = t.lat[len(t.lat)-1]
	}
	r.deliveries = t.count.Load()
	return r
}

// pace calls send rate times per second for d, in 5 ms steps.
func pace(ctx context.Context, rate int, d time.Duration, send func() error) (int64, error) {
	const step = 5 * time.Millisecond
	tick := time.NewTicker(step)
	defer tick.Stop()
	start := time.Now()
	var n int64
	for time.Since(start) < d {
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-tick.C:
		}
		due := int64(time.Since(start).Seconds() * float64(rate))
		for ; n < due; n++ {
			if err := send(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// measure runs a warm-up and a measured phase of load, waits for the
// deliveries to land, and returns the figures with the server's CPU time of
// the measured phase.
func measure(ctx context.Context, s *server, t *tracker, rate int, warmup, d time.Duration, fanout int64,
	send func() error) (result, error) {
	warm, err := pace(ctx, rate, warmup, send)
	if err != nil {
		return result{}, err
	}
	time.Sleep(200 * time.Millisecond)
	profiled := s.profile(ctx, d)
	cpu0, _ := s.cpu()
	t.measure.Store(true)
	start := time.Now()
	sent, err := pace(ctx, rate, d, send)
	if err != nil {
		return result{}, err
	}
	total := (warm + sent) * fanout
	// Drain: until everything arrived, or nothing more for 3 s (then the
	// rest counts as lost), at most 60 s.
	elapsed := time.Since(start)
	t.drain(total, time.Minute, 3*time.Second)
	// Rates are over the time from the start of the measured phase to its
	// last delivery (the server may lag behind the offered load).
	elapsed = max(elapsed, time.Duration(t.lastAt.Load())-start.Sub(t.start))
	t.measure.Store(false)
	cpu1, _ := s.cpu()
	if err := <-profiled; err != nil {
		return result{}, err
	}
	r := t.result(sent, total)
	r.elapsed, r.cpu = elapsed, cpu1-cpu0
	if r.lost > 0 { // the server's last words say why
		b, _ := os.ReadFile(s.logFile)
		fmt.Fprintf(os.Stderr, "bench: %d messages lost; the server's log ends with:\n%s\n", r.lost, tail(b, 2000))
	}
	return r, nil
}

func printResults(out io.Writer, rows []string, res map[string]result) {
	fmt.Fprintf(out, "%-22s %8s %11s %8s %8s %8s %8s %9s %13s %5s %5s %6s\n", "system", "sent/s", "delivered/s", "p50 ms", "p99 ms",
		"p99.9 ms", "max ms", "CPU s", "deliv/CPU-s", "lost", "dup", "reord")
	for _, name := range rows {
		r := res[name]
		fmt.Fprintf(out, "%-22s %8.0f %11.0f %8.2f %8.2f %8.2f %8.2f %9.2f %13.0f %5d %5d %6d\n", name,
			float64(r.sent)/r.elapsed.Seconds(), float64(r.deliveries)/r.elapsed.Seconds(), ms(r.p50), ms(r.p99), ms(r.p999), ms(r.max),
			r.cpu.Seconds(), r.perCPU(), r.lost, r.dup, r.reordered)
	}
	for _, name := range rows {
		if !strings.HasPrefix(name, "imkube") {
			continue
		}
		im := res[name]
		for _, peer := range []string{"centrifugo history", "centrifugo no history"} {
			p, ok := res[peer]
			if !ok {
				continue
			}
			fmt.Fprintf(out, "%s / %s: deliveries per CPU-second %.2fx, p50 %.2fx, p99 %.2fx\n", name, peer,
				im.perCPU()/max(p.perCPU(), 1), ms(im.p50)/max(ms(p.p50), 0.001), ms(im.p99)/max(ms(p.p99), 0.001))
		}
	}
}

// check fails a -strict run in which a system lost, duplicated or reordered
// a message.
func (v *versusFlags) check(res map[string]result) error {
	if !v.strict {
		return nil
	}
	var errs []error
	for name, r := range res {
		if r.lost+r.dup+r.reordered > 0 {
			errs = append(errs, fmt.Errorf("%s: %d lost, %d duplicated, %d reordered", name, r.lost, r.dup, r.reordered))
		}
	}
	return errors.Join(errs...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ---- p2p ----

// BenchP2P is `imkube bench p2p`: pairs of users, each sender sending to its
// recipient at the same rate.
func BenchP2P(ctx context.Context, args []string, out io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("bench p2p", flag.ContinueOnError)
	fs.SetOutput(out)
	var v versusFlags
	v.register(fs)
	pairs := fs.Int("pairs", 20, "sender/recipient pairs")
	rate := fs.Int("rate", 1000, "messages per second, all pairs together")
	idle := fs.Int("idle", 460, "idle connections besides the pairs")
	warmup := fs.Duration("warmup", 2*time.Second, "load before the measured phase")
	d := fs.Duration("duration", 10*time.Second, "measured phase")
	sweep := fs.Duration("sweep-p99", 0, "then find each system's highest rate (doubling from -sweep-from) with p99 within this (0: no sweep)")
	sweepFrom := fs.Int("sweep-from", 100, "first rate of the sweep (messages/s)")
	sweepMax := fs.Int("sweep-max", 12800, "last rate of the sweep")
	sweepD := fs.Duration("sweep-duration", 5*time.Second, "measured phase of each sweep step")
	if err := fs.Parse(args); err != nil {
		return err
	}
	env, systems, reexec, err := v.setup(out, 2**pairs+*idle)
	if reexec || err != nil {
		return err
	}
	defer os.RemoveAll(env.dir)
	header(out, "p2p", fmt.Sprintf("%d pairs at %d msg/s in all, %d idle connections, %v measured", *pairs, *rate, *idle, *d), env)
	users := userIDs(2**pairs + *idle)
	res := map[string]result{}
	var names []string
	for _, sys := range systems {
		r, err := runP2P(ctx, env, sys, users, *pairs, *rate, *warmup, *d)
		if err != nil {
			return fmt.Errorf("%s: %w", sys.name(), err)
		}
		res[sys.name()] = r
		names = append(names, sys.name())
	}
	printResults(out, names, res)
	if err := v.check(res); err != nil || *sweep <= 0 {
		return err
	}
	fmt.Fprintf(out, "\nhighest rate with p99 <= %v (all sent messages delivered; rates doubled from %d, %v each):\n", *sweep, *sweepFrom, *sweepD)
	best := map[string]int{}
	for _, sys := range systems {
		for r := *sweepFrom; r <= *sweepMax; r *= 2 {
			x, err := runP2P(ctx, env, sys, users, *pairs, r, *warmup, *sweepD)
			if err != nil {
				return fmt.Errorf("%s: %w", sys.name(), err)
			}
			carried := float64(x.sent) / sweepD.Seconds()
			fmt.Fprintf(out, "  %-22s %6d msg/s: p99 %8.2f ms, sent %6.0f/s, lost %d\n", sys.name(), r, ms(x.p99), carried, x.lost)
			if x.p99 > *sweep || carried < 0.95*float64(r) || x.lost > 0 {
				break
			}
			best[sys.name()] = r
		}
	}
	for _, name := range names {
		fmt.Fprintf(out, "%-22s %6d msg/s\n", name, best[name])
	}
	if im, ok := best["imkube dev"]; ok {
		for _, peer := range []string{"centrifugo history", "centrifugo no history"} {
			if p, ok := best[peer]; ok && p > 0 {
				fmt.Fprintf(out, "imkube / %s: highest rate within p99 %v %.2fx\n", peer, *sweep, float64(im)/float64(p))
			}
		}
	}
	return nil
}

func runP2P(ctx context.Context, env *runEnv, sys system, users []string, pairs, rate int, warmup, d time.Duration) (result, error) {
	s, err := sys.start(ctx, env, users, nil)
	if err != nil {
		return result{}, err
	}
	defer s.stop()
	t := newTracker()
	conns, failed, err := dialAll(ctx, env, sys, s, users, func(dst int) func([]byte) { return func(p []byte) { t.delivered(dst, p) } })
	defer closeAll(conns)
	if failed > 0 {
		return result{}, err
	}
	next := make([]int64, pairs)
	k := 0
	send := func() error {
		i := k % pairs
		k++
		next[i]++
		return sys.sendDirect(conns[i], users[pairs+i], t.payload(i, next[i]))
	}
	return measure(ctx, s, t, rate, warmup, d, 1, send)
}
