package platform

import (
	"context"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/sessions"
	redissessions "github.com/imkube/imkube/internal/sessions/redis"
)

// RedisPrefix is put before every Redis key this process writes
// (IMKUBE_REDIS_PREFIX, default "imkube:"), so several platforms or test
// runs can share one Redis.
func RedisPrefix() string { return config.Env("IMKUBE_REDIS_PREFIX", "imkube:") }

// Redis connects to Redis in the configured mode and checks it answers.
func (d *Deps) Redis(ctx context.Context) (goredis.UniversalClient, error) {
	addrs := strings.Split(d.RedisAddr, ",")
	var c goredis.UniversalClient
	switch d.RedisMode {
	case "cluster":
		c = goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs, Password: d.RedisPassword})
	case "sentinel":
		c = goredis.NewFailoverClient(&goredis.FailoverOptions{
			MasterName: config.Env("IMKUBE_REDIS_MASTER", "mymaster"), SentinelAddrs: addrs, Password: d.RedisPassword,
		})
	default:
		c = goredis.NewClient(&goredis.Options{Addr: addrs[0], Password: d.RedisPassword})
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis %s: %w", d.RedisAddr, err)
	}
	return c, nil
}

// Sessions returns the Redis session store on c.
func Sessions(c goredis.UniversalClient) sessions.Store {
	return redissessions.New(c, redissessions.Options{Prefix: RedisPrefix()})
}
