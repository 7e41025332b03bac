package sequence

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/imkube/imkube/internal/testenv"
)

// testDatabase creates a database of its own for t (the DSN user may create
// imkube_% databases) and returns its config; it is dropped at the end.
func testDatabase(t *testing.T) *mysql.Config {
	t.Helper()
	dsn := testenv.Require(t, "IMKUBE_MYSQL_DSN")
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("IMKUBE_MYSQL_DSN: %v", err)
	}
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := "imkube_seqtest_" + newToken()[:12]
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		admin.Close()
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec("DROP DATABASE IF EXISTS " + name)
		admin.Close()
	})
	cfg = cfg.Clone()
	cfg.DBName = name
	return cfg
}

// writeCounter counts the bound rows written through its connections, per
// section: INSERT and UPDATE statements on the bounds table that changed a
// row. It wraps the real driver, so it counts what reaches MySQL, not what
// the allocator believes it did.
type writeCounter struct {
	mu        sync.Mutex
	bySection map[int64]int
}

func (w *writeCounter) total() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.bySection {
		n += c
	}
	return n
}

func (w *writeCounter) section(s int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bySection[int64(s)]
}

func (w *writeCounter) record(query string, args []driver.NamedValue, res driver.Result) {
	n, err := res.RowsAffected()
	if err != nil || n == 0 {
		return
	}
	var sec any
	switch {
	case strings.HasPrefix(query, "UPDATE ") && strings.Contains(query, "SET bound") && len(args) == 3:
		sec = args[1].Value
	case strings.HasPrefix(query, "INSERT IGNORE INTO ") && len(args) == 2:
		sec = args[0].Value
	default:
		return
	}
	s, ok := sec.(int64)
	if !ok {
		if i, ok2 := sec.(int); ok2 {
			s, ok = int64(i), true
		}
	}
	if !ok || s < 0 {
		return
	}
	w.mu.Lock()
	if w.bySection == nil {
		w.bySection = map[int64]int{}
	}
	w.bySection[s]++
	w.mu.Unlock()
}

// openCounted opens cfg at addr (e.g. through a proxy) with its own pool,
// counting writes into w.
func openCounted(t *testing.T, cfg *mysql.Config, addr string, w *writeCounter) *sql.DB {
	t.Helper()
	cfg = cfg.Clone()
	if addr != "" {
		cfg.Addr = addr
	}
	cfg.Timeout = 2e9
	cfg.ReadTimeout = 5e9
	cfg.WriteTimeout = 5e9
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(countingConnector{conn, w})
	db.SetMaxOpenConns(8)
	t.Cleanup(func() { db.Close() })
	return db
}

type countingConnector struct {
	driver.Connector
	w *writeCounter
}

func (c countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{conn: conn, w: c.w}, nil
}

// countingConn does not implement ExecerContext, so database/sql prepares
// every statement and the countingStmt sees it.
type countingConn struct {
	conn driver.Conn
	w    *writeCounter
}

func (c *countingConn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c *countingConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	st, err := c.conn.(driver.ConnPrepareContext).PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	return &countingStmt{st: st, q: q, w: c.w}, nil
}

func (c *countingConn) Close() error { return c.conn.Close() }

func (c *countingConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *countingConn) BeginTx(ctx context.Context, o driver.TxOptions) (driver.Tx, error) {
	return c.conn.(driver.ConnBeginTx).BeginTx(ctx, o)
}

func (c *countingConn) ResetSession(ctx context.Context) error {
	return c.conn.(driver.SessionResetter).ResetSession(ctx)
}

func (c *countingConn) IsValid() bool { return c.conn.(driver.Validator).IsValid() }

type countingStmt struct {
	st driver.Stmt
	q  string
	w  *writeCounter
}

func (s *countingStmt) Close() error  { return s.st.Close() }
func (s *countingStmt) NumInput() int { return s.st.NumInput() }

func (s *countingStmt) Exec(args []driver.Value) (driver.Result, error) {
	return nil, errors.New("countingStmt: Exec without context is not used")
}

func (s *countingStmt) Query(args []driver.Value) (driver.Rows, error) {
	return nil, errors.New("countingStmt: Query without context is not used")
}

func (s *countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	res, err := s.st.(driver.StmtExecContext).ExecContext(ctx, args)
	if err == nil {
		s.w.record(s.q, args, res)
	}
	return res, err
}

func (s *countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.st.(driver.StmtQueryContext).QueryContext(ctx, args)
}

// tcpProxy forwards 127.0.0.1:<port> to target until Cut, which closes every
// connection and refuses new ones until Restore: MySQL "stops" for the
// clients behind it, without touching the shared server.
type tcpProxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *tcpProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

func (p *tcpProxy) close() {
	p.cut()
	p.ln.Close()
	p.wg.Wait()
}

// testRedis returns a client of the shared Redis (hack/deps.sh) and a key
// prefix unique to the test.
func testRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	addr := testenv.Require(t, "IMKUBE_REDIS_ADDR")
	c := redis.NewClient(&redis.Options{Addr: strings.Split(addr, ",")[0]})
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis at %s: %v", addr, err)
	}
	prefix := fmt.Sprintf("seqtest:%s:", newToken()[:8])
	t.Cleanup(func() {
		ctx := context.Background()
		keys, err := c.Keys(ctx, prefix+"*").Result() // a handful of keys
		if err == nil && len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	return c, prefix
}

// privateRedis starts a redis-server of the test's own (the binary that
// hack/deps.sh installed) on a unix socket, without persistence, so the test
// can lose everything (FLUSHALL and SCRIPT FLUSH, or a real restart) without
// disturbing other packages' tests.
type privRedis struct {
	t    *testing.T
	bin  string
	dir  string
	sock string
	cmd  *exec.Cmd
}

func privateRedis(t *testing.T) *privRedis {
	t.Helper()
	testenv.Require(t, "IMKUBE_REDIS_ADDR") // hack/deps.sh ran and installed redis-server
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found: run hack/deps.sh up: %v", err)
	}
	dir := t.TempDir()
	p := &privRedis{t: t, bin: bin, dir: dir, sock: filepath.Join(dir, "redis.sock")}
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	return p
}

func (p *privRedis) start() error {
	p.cmd = exec.Command(p.bin, "--port", "0", "--unixsocket", p.sock, "--save", "", "--appendonly", "no",
		"--dir", p.dir, "--maxmemory-policy", "noeviction")
	if err := p.cmd.Start(); err != nil {
		return err
	}
	probe := redis.NewClient(&redis.Options{Network: "unix", Addr: p.sock})
	defer probe.Close()
	for i := 0; ; i++ {
		if _, err := os.Stat(p.sock); err == nil && probe.Ping(context.Background()).Err() == nil {
			return nil
		}
		if i == 100 {
			return fmt.Errorf("private redis-server did not answer on %s", p.sock)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *privRedis) kill() {
	if p.cmd != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

// restart kills redis-server (SIGKILL) and starts it again, empty.
func (p *privRedis) restart() error {
	p.kill()
	_ = os.Remove(p.sock)
	return p.start()
}

// client returns one more client (one per replica).
func (p *privRedis) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: p.sock, PoolSize: 32})
	p.t.Cleanup(func() { c.Close() })
	return c
}

// loseRedisData makes Redis forget everything, as a restart without
// persistence does: data and cached scripts.
func loseRedisData(ctx context.Context, rdb *redis.Client) error {
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return err
	}
	return rdb.ScriptFlush(ctx).Err()
}
