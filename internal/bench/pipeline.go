package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/freeport"
	"github.com/imkube/imkube/internal/store"
)

// `imkube bench pipeline` (issue 21): 1:1 messages through imkube in
// distributed mode on this machine, as hack/run-distributed.sh starts it:
// the user, sequence and message services and two gateways, each a process
// of the imkube binary on a free loopback port, on the Redis, MariaDB and
// RocketMQ of hack/deps.sh. Senders connect to the first gateway and their
// recipients to the second, so every message takes gateway -> RocketMQ ->
// message service -> MariaDB -> RocketMQ -> other gateway -> client. The
// services export their traces over OTLP/HTTP to a collector in this
// process (sampled), from which the per-hop latency breakdown is read. The
// Centrifugo peer runs the same pairs (one process) side by side, as p2p.

// pipelineEnv are the variables `eval "$(hack/deps.sh env)"` sets that the
// distributed services need.
var pipelineEnv = []string{"IMKUBE_REDIS_ADDR", "IMKUBE_MYSQL_DSN", "IMKUBE_ROCKETMQ_NAMESRV"}

// The gateway ids of a run are these and the run's nonce (also their
// telemetry instance ids): a gateway id of its own keeps a run from being
// handed the pushes of the one before (a new push consumer replays the
// last 10 s of its gateway's pushes, which would reach the same users).
const (
	pipelineGW1 = "bench-gw1"
	pipelineGW2 = "bench-gw2"
)

// BenchPipeline is `imkube bench pipeline`.
func BenchPipeline(ctx context.Context, args []string, out io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("bench pipeline", flag.ContinueOnError)
	fs.SetOutput(out)
	var v versusFlags
	v.register(fs)
	pairs := fs.Int("pairs", 20, "sender/recipient pairs (senders on gateway 1, recipients on gateway 2)")
	rate := fs.Int("rate", 2000, "messages per second, all pairs together")
	warmup := fs.Duration("warmup", 5*time.Second, "load before the measured phase")
	d := fs.Duration("duration", 60*time.Second, "measured phase")
	sample := fs.Float64("trace-sample", 0.02, "share of sends traced for the per-hop breakdown (0: no traces)")
	keep := fs.Bool("keep-logs", false, "keep the services' logs (the folder is printed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pairs < 1 || *rate < 1 || *d <= 0 || *sample < 0 || *sample > 1 {
		return errors.New("bench pipeline: -pairs and -rate must be >= 1, -duration > 0, -trace-sample in [0, 1]")
	}
	var missing []string
	for _, k := range pipelineEnv {
		if os.Getenv(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("bench pipeline: %s not set: start Redis, MariaDB and RocketMQ with `make deps-up`, then `eval \"$(hack/deps.sh env)\"` (or source $IMKUBE_CACHE/env/deps.env)",
			strings.Join(missing, ", "))
	}
	env, systems, reexec, err := v.setup(out, 2**pairs)
	if reexec || err != nil {
		return err
	}
	if *keep {
		fmt.Fprintf(out, "logs in %s\n", env.dir)
	} else {
		defer os.RemoveAll(env.dir)
	}
	header(out, "pipeline", fmt.Sprintf("%d pairs at %d msg/s in all, %v measured, imkube distributed (user, sequence, message, 2 gateways; RocketMQ, MariaDB, Redis)", *pairs, *rate, *d), env)
	if env.pin {
		fmt.Fprintln(out, "placement: the five imkube processes share CPU 0 (GOMAXPROCS=1 each: two cores cannot give each its own), as does the Centrifugo peer; RocketMQ, MariaDB and Redis are not pinned; the generator is on CPU 1")
	} else {
		fmt.Fprintln(out, "placement: nothing pinned")
	}
	fmt.Fprintln(out)
	users := make([]string, 2**pairs)
	for i := range users {
		users[i] = strconv.Itoa(710000000 + i)
	}
	res := map[string]result{}
	var names []string
	var extra []string
	var hops *hopTable
	for _, sys := range systems {
		var r result
		name := sys.name()
		if _, ok := sys.(imkubeSystem); ok {
			name = "imkube distributed"
			var cpus cpuReport
			r, cpus, hops, err = runPipeline(ctx, env, users, *pairs, *rate, *warmup, *d, *sample, log)
			extra = append(extra, cpus.lines(r.deliveries)...)
		} else {
			r, err = runP2P(ctx, env, sys, users, *pairs, *rate, *warmup, *d)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		res[name] = r
		names = append(names, name)
	}
	printResults(out, names, res)
	if im, ok := res["imkube distributed"]; ok {
		for _, peer := range []string{"centrifugo history", "centrifugo no history"} {
			if p, ok := res[peer]; ok {
				fmt.Fprintf(out, "imkube distributed / %s: deliveries per CPU-second %.2fx, p50 %.2fx, p99 %.2fx\n", peer,
					im.perCPU()/max(p.perCPU(), 1), ms(im.p50)/max(ms(p.p50), 0.001), ms(im.p99)/max(ms(p.p99), 0.001))
			}
		}
	}
	for _, l := range extra {
		fmt.Fprintln(out, l)
	}
	if hops != nil {
		fmt.Fprintln(out)
		hops.print(out)
	}
	if err := v.check(res); err != nil {
		return err
	}
	if v.strict && hops != nil && hops.complete == 0 {
		return errors.New("bench pipeline: no complete trace of a send was collected (IMKUBE_OTLP_ENDPOINT export, the spans of gateway.send, message.process, gateway.push)")
	}
	return nil
}

// pipelineProc is one imkube service process of the run.
type pipelineProc struct {
	name string
	url  string
	cmd  *exec.Cmd
	stop func()
}

// cluster is the distributed imkube of one run.
type cluster struct {
	dir      string
	procs    []*pipelineProc
	gw1, gw2 string // http://127.0.0.1:port
	tokens   map[string]string
	// cpuprofile: CPU profiles of the measured phase go to
	// <cpuprofile>.<process name> ("": none).
	cpuprofile string
}

func (c *cluster) stop() {
	for i := len(c.procs) - 1; i >= 0; i-- { // gateways first
		c.procs[i].stop()
	}
}

// startCluster starts user, sequence, message and two gateways, exporting
// traces to otlp (when set) with the sampling ratio sample.
func startCluster(ctx context.Context, env *runEnv, users []string, nonce, otlp string, sample float64) (c *cluster, err error) {
	dir, err := os.MkdirTemp(env.dir, "pipeline-")
	if err != nil {
		return nil, err
	}
	db, err := store.OpenMySQL(ctx, os.Getenv("IMKUBE_MYSQL_DSN"), store.PoolConfig{MaxOpen: 4})
	if err != nil {
		return nil, fmt.Errorf("bench: MariaDB (IMKUBE_MYSQL_DSN; `make deps-up`): %w", err)
	}
	for _, u := range users {
		err := db.CreateUser(ctx, store.User{ID: u, Username: "pbench" + u, DisplayName: "b", PasswordHash: "x", CreatedAt: 1})
		if err != nil && !errors.Is(err, store.ErrConflict) {
			db.Close()
			return nil, err
		}
	}
	db.Close()
	keyFile := filepath.Join(dir, "jwt.key")
	keys, err := auth.LoadOrCreateKeys(keyFile, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	cc := config.DefaultCluster()
	cc.Limits.SendRatePerSecond, cc.Limits.SendBurst, cc.Limits.ConnectionsPerIPPerSecond = 1000000, 1000000, 1000000
	cj, _ := json.Marshal(cc)
	cfgFile := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgFile, cj, 0o600); err != nil {
		return nil, err
	}
	var ports [5]int
	for i := range ports {
		if ports[i], err = freeport.Port(); err != nil {
			return nil, err
		}
	}
	url := func(p int) string { return fmt.Sprintf("http://127.0.0.1:%d", p) }
	common := append(os.Environ(), "GOMAXPROCS=1",
		"IMKUBE_JWT_KEY_FILE="+keyFile, "IMKUBE_CONFIG_FILE="+cfgFile, "IMKUBE_LOG_LEVEL=warn",
		"IMKUBE_USER_URL="+url(ports[0]), "IMKUBE_SEQUENCE_URL="+url(ports[1]), "IMKUBE_MESSAGE_URL="+url(ports[2]),
		"IMKUBE_SENTINEL_LOG_DIR="+filepath.Join(dir, "sentinel"),
		// Consumer groups of their own: the run neither takes nor leaves
		// work for `make run-distributed` or the test suites.
		"IMKUBE_BUS_GROUP_PREFIX=bench-", "IMKUBE_REDIS_PREFIX=bench:")
	if otlp != "" && sample > 0 {
		common = append(common, "IMKUBE_OTLP_ENDPOINT="+otlp,
			// The OpenTelemetry SDK reads these: the gateway's send span is
			// the root, every later span follows its decision.
			"OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG="+strconv.FormatFloat(sample, 'f', -1, 64),
			"OTEL_BSP_SCHEDULE_DELAY=1000", "OTEL_BSP_MAX_QUEUE_SIZE=20000")
	}
	if env.cpuprofile != "" {
		common = append(common, "IMKUBE_PPROF=true")
	}
	c = &cluster{dir: dir, gw1: url(ports[3]), gw2: url(ports[4]), tokens: map[string]string{}, cpuprofile: env.cpuprofile}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	for i, p := range []struct {
		name, role string
		extra      []string
	}{
		{"user", "user", nil},
		{"sequence", "sequence", nil},
		{"message", "message", nil},
		{"gateway1", "gateway", []string{"IMKUBE_GATEWAY_ID=" + pipelineGW1 + "-" + nonce}},
		{"gateway2", "gateway", []string{"IMKUBE_GATEWAY_ID=" + pipelineGW2 + "-" + nonce}},
	} {
		procEnv := append(append(append([]string(nil), common...), p.extra...), fmt.Sprintf("IMKUBE_INSTANCE_NAME=bench-%s-%d", p.name, os.Getpid()))
		proc, err := startService(ctx, env, dir, p.name, url(ports[i]), procEnv, p.role, "--addr", fmt.Sprintf("127.0.0.1:%d", ports[i]))
		if err != nil {
			return c, err
		}
		c.procs = append(c.procs, proc)
	}
	for _, u := range users {
		c.tokens[u], _, _ = keys.Issue(u)
	}
	return c, nil
}

// startService starts `imkube <role> args...` (pinned to CPU 0 when
// env.pin) and waits for url/readyz.
func startService(ctx context.Context, env *runEnv, dir, name, url string, procEnv []string, role string, args ...string) (*pipelineProc, error) {
	cmd, stop, err := launch(ctx, env, procSpec{
		name: "imkube " + role, bin: env.self, args: append([]string{role}, args...), env: procEnv,
		logFile: filepath.Join(dir, name+".log"), ready: url + "/readyz",
		readyWithin: 120 * time.Second, stopWithin: 15 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	return &pipelineProc{name: name, url: url, cmd: cmd, stop: stop}, nil
}

// runPipeline runs the pairs through a fresh distributed imkube.
func runPipeline(ctx context.Context, env *runEnv, users []string, pairs, rate int, warmup, d time.Duration, sample float64,
	log *slog.Logger) (result, cpuReport, *hopTable, error) {
	var col *collector
	otlp := ""
	if sample > 0 {
		var err error
		if col, err = startCollector(); err != nil {
			return result{}, cpuReport{}, nil, err
		}
		defer col.close()
		otlp = col.url
	}
	nonce := strconv.FormatInt(time.Now().UnixNano()%(1<<40), 36)
	c, err := startCluster(ctx, env, users, nonce, otlp, sample)
	if err != nil {
		return result{}, cpuReport{}, nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			c.stop()
		}
	}()
	t := newTracker()
	var rmu sync.Mutex
	recv := map[[2]int64]time.Duration{} // (src, n) -> arrival since t.start
	conns := make([]*benchConn, 0, len(users))
	defer func() {
		for _, cn := range conns {
			cn.close()
		}
	}()
	for i, u := range users {
		dst := i
		s := &server{url: c.gw1, tokens: c.tokens}
		if i >= pairs {
			s.url = c.gw2
		}
		cn, err := imkubeSystem{}.dial(ctx, env.addrs.next(), s, u, func(p []byte) {
			at := time.Since(t.start)
			if src, n, ok := payloadKey(p); ok {
				rmu.Lock()
				if _, dup := recv[[2]int64{src, n}]; !dup {
					recv[[2]int64{src, n}] = at
				}
				rmu.Unlock()
			}
			t.deliveredAt(dst, p, at)
		})
		if err != nil {
			return result{}, cpuReport{}, nil, err
		}
		conns = append(conns, cn)
	}
	next := make([]int64, pairs)
	send := func(i int) error {
		next[i]++
		p := t.payload(i, next[i])
		return conns[i].write(fmt.Appendf(nil, `{"t":"send","cmid":"P%s-%s","to":{"user":%q},"kind":"text","body":%q}`, nonce, p, users[pairs+i], p))
	}
	// One message per pair first: the consumers of a fresh run may take a
	// rebalance (RocketMQ: up to 20 s) before they own their queues.
	for i := range pairs {
		if err := send(i); err != nil {
			return result{}, cpuReport{}, nil, err
		}
	}
	for deadline := time.Now().Add(90 * time.Second); t.received() < int64(pairs); {
		if time.Now().After(deadline) {
			return result{}, cpuReport{}, nil, fmt.Errorf("bench: %d of %d first messages delivered within 90 s (logs: %s, run with -keep-logs)", t.received(), pairs, c.dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
	k := 0
	r, cpus, window, err := measurePipeline(ctx, c, t, rate, warmup, d, int64(pairs), func() error {
		i := k % pairs
		k++
		return send(i)
	})
	if err != nil {
		return result{}, cpuReport{}, nil, err
	}
	// Stopping the services flushes their remaining spans to the collector.
	c.stop()
	stopped = true
	if col == nil {
		return r, cpus, nil, nil
	}
	rmu.Lock()
	defer rmu.Unlock()
	return r, cpus, col.hops(nonce, t.start, window, recv), nil
}

// payloadKey parses the stream and number of a payload "src.n.ns".
func payloadKey(p []byte) (src, n int64, ok bool) {
	f := strings.SplitN(string(p), ".", 3)
	if len(f) != 3 {
		return 0, 0, false
	}
	a, err1 := strconv.ParseInt(f[0], 10, 64)
	b, err2 := strconv.ParseInt(f[1], 10, 64)
	return a, b, err1 == nil && err2 == nil
}

// measurePipeline is measure for the cluster: the CPU time is that of all
// its processes (and, reported apart, of the dependencies). window is the
// measured phase, since t.start.
func measurePipeline(ctx context.Context, c *cluster, t *tracker, rate int, warmup, d time.Duration, first int64,
	send func() error) (r result, cpus cpuReport, window [2]time.Duration, err error) {
	warm, err := pace(ctx, rate, warmup, send)
	if err != nil {
		return result{}, cpus, window, err
	}
	time.Sleep(200 * time.Millisecond)
	var profiles []<-chan error
	if env := c.cpuprofile; env != "" {
		for _, p := range c.procs {
			s := &server{url: p.url, cpuprofile: env + "." + p.name}
			profiles = append(profiles, s.profile(ctx, d))
		}
	}
	before := c.readCPU()
	t.measure.Store(true)
	start := time.Now()
	window[0] = start.Sub(t.start)
	sent, err := pace(ctx, rate, d, send)
	if err != nil {
		return result{}, cpus, window, err
	}
	window[1] = time.Since(t.start)
	total := first + warm + sent
	elapsed := time.Since(start)
	t.drain(total, 2*time.Minute, 5*time.Second)
	elapsed = max(elapsed, time.Duration(t.lastAt.Load())-start.Sub(t.start))
	t.measure.Store(false)
	after := c.readCPU()
	for _, p := range profiles {
		if err := <-p; err != nil {
			return result{}, cpus, window, err
		}
	}
	r = t.result(sent, total)
	cpus = after.minus(before)
	r.elapsed, r.cpu = elapsed, cpus.imkube()
	return r, cpus, window, nil
}

// cpuReport is CPU time per process name: the imkube services and the
// dependencies found in /proc.
type cpuReport struct {
	names []string
	cpu   map[string]time.Duration
	deps  map[string]bool
}

func (c *cluster) readCPU() cpuReport {
	r := cpuReport{cpu: map[string]time.Duration{}, deps: map[string]bool{}}
	for _, p := range c.procs {
		v, _ := procCPU(p.cmd.Process.Pid)
		r.names = append(r.names, p.name)
		r.cpu[p.name] = v
	}
	deps := dependencyPIDs()
	for _, name := range slices.Sorted(maps.Keys(deps)) {
		pids := deps[name]
		r.names = append(r.names, name)
		r.deps[name] = true
		for _, pid := range pids {
			v, _ := procCPU(pid)
			r.cpu[name] += v
		}
	}
	return r
}

func (a cpuReport) minus(b cpuReport) cpuReport {
	r := cpuReport{names: a.names, cpu: map[string]time.Duration{}, deps: a.deps}
	for _, n := range a.names {
		r.cpu[n] = a.cpu[n] - b.cpu[n]
	}
	return r
}

func (r cpuReport) imkube() time.Duration {
	var s time.Duration
	for _, n := range r.names {
		if !r.deps[n] {
			s += r.cpu[n]
		}
	}
	return s
}

func (r cpuReport) lines(deliveries int64) []string {
	if r.cpu == nil {
		return nil
	}
	var im, dep []string
	var depSum time.Duration
	for _, n := range r.names {
		s := fmt.Sprintf("%s %.2f", n, r.cpu[n].Seconds())
		if r.deps[n] {
			dep = append(dep, s)
			depSum += r.cpu[n]
		} else {
			im = append(im, s)
		}
	}
	out := []string{"imkube distributed, CPU s of the measured phase: " + strings.Join(im, ", ")}
	if len(dep) > 0 {
		all := r.imkube() + depSum
		out = append(out, fmt.Sprintf("dependencies (whole processes, shared with anything else using them): %s; deliveries per CPU-second with them: %.0f",
			strings.Join(dep, ", "), float64(deliveries)/max(all.Seconds(), 0.01)))
	}
	return out
}

// dependencyPIDs finds the processes of hack/deps.sh in /proc: RocketMQ's
// broker and name server, MariaDB, Redis.
func dependencyPIDs() map[string][]int {
	out := map[string][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := string(b)
		switch {
		case strings.Contains(cmd, "BrokerStartup"):
			out["rocketmq broker"] = append(out["rocketmq broker"], pid)
		case strings.Contains(cmd, "NamesrvStartup"):
			out["rocketmq namesrv"] = append(out["rocketmq namesrv"], pid)
		case strings.Contains(cmd, "mariadbd") || strings.Contains(cmd, "mysqld"):
			out["mariadb"] = append(out["mariadb"], pid)
		case strings.Contains(cmd, "redis-server"):
			out["redis"] = append(out["redis"], pid)
		}
	}
	return out
}

func httpOK(url string) (bool, error) {
	resp, err := http.Get(url)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}
