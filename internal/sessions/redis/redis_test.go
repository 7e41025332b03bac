package redis_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/imkube/imkube/internal/sessions/redis"
	"github.com/imkube/imkube/internal/sessions/sessionstest"
	"github.com/imkube/imkube/internal/testenv"
)

func TestRedisConformance(t *testing.T) {
	addr := testenv.Require(t, "IMKUBE_REDIS_ADDR")
	rdb := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Redis at %s: %v", addr, err)
	}
	sessionstest.Run(t, func(t *testing.T) sessionstest.Harness {
		// Every subtest gets its own key prefix; its keys are deleted at the end.
		prefix := fmt.Sprintf("imkube-test:sessions:%s:", rand.Text()[:12])
		wipe := func() {
			ctx := context.Background()
			iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
			for iter.Next(ctx) {
				rdb.Del(ctx, iter.Val())
			}
			if err := iter.Err(); err != nil {
				t.Errorf("wipe %s: %v", prefix, err)
			}
		}
		t.Cleanup(wipe)
		return sessionstest.Harness{
			Store:   redis.New(rdb, redis.Options{Prefix: prefix, HeartbeatBatch: 64}),
			Advance: time.Sleep,
			Wipe:    wipe,
			Short:   300 * time.Millisecond,
			Long:    time.Minute,
		}
	})
}
