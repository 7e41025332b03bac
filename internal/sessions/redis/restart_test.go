package redis_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	goredis "github.com/redis/go-redis/v9"

	"github.com/imkube/imkube/internal/sessions"
	"github.com/imkube/imkube/internal/sessions/redis"
	"github.com/imkube/imkube/internal/testenv"
)

// privateRedis starts a redis-server of its own on a unix socket, so the test
// may flush its data and script cache without disturbing other tests.
func privateRedis(t *testing.T) *goredis.Client {
	testenv.Require(t, "IMKUBE_REDIS_ADDR") // hack/deps.sh installed redis-server
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found: run hack/deps.sh up: %v", err)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command(bin, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	rdb := goredis.NewClient(&goredis.Options{Network: "unix", Addr: sock})
	t.Cleanup(func() { _ = rdb.Close() })
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil && rdb.Ping(context.Background()).Err() == nil {
			return rdb
		}
		if i == 100 {
			t.Fatalf("private redis-server did not answer on %s", sock)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRedisRestartWithoutDataReloadsScripts(t *testing.T) {
	rdb := privateRedis(t)
	ctx := context.Background()
	store := redis.New(rdb, redis.Options{})
	live := []sessions.Session{{User: "alice", Device: "phone", Gateway: "gw-1"}}
	if err := store.Heartbeat(ctx, "gw-1", live, time.Minute); err != nil {
		t.Fatal(err)
	}
	// A restart without persistence: no data, no cached scripts.
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := store.Lookup(ctx, []string{"alice"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("Lookup after data loss = %v, want nothing", got)
	}
	if err := store.Heartbeat(ctx, "gw-1", live, time.Minute); err != nil {
		t.Fatalf("Heartbeat after script loss: %v", err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	bob := sessions.Session{User: "bob", Device: "web", Gateway: "gw-1"}
	if err := store.Register(ctx, bob, time.Minute); err != nil {
		t.Fatalf("Register after script loss: %v", err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := store.Unregister(ctx, bob); err != nil {
		t.Fatalf("Unregister after script loss: %v", err)
	}
	got, err = store.Lookup(ctx, []string{"alice", "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]sessions.Session{"alice": live}, got); diff != "" {
		t.Errorf("Lookup (-want +got):\n%s", diff)
	}
}
