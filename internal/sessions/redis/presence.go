package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/imkube/imkube/internal/sessions"
)

var _ sessions.Presence = (*Store)(nil)

// seenTTL is how long a last-seen time is kept without a newer one.
const seenTTL = 90 * 24 * time.Hour

// seenKey and watchKey share the user's hash slot with the user's sessions.
func (s *Store) seenKey(user string) string  { return s.prefix + "seen:{" + user + "}" }
func (s *Store) watchKey(user string) string { return s.prefix + "watch:{" + user + "}" }

// setSeenScript: KEYS[1] seen key; ARGV ms, ttl ms. Never moves back.
var setSeenScript = goredis.NewScript(`
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > old then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1
`)

// watchScript: KEYS[1] watch zset of a user; ARGV gateway, ttl ms. The
// score is the entry's expiry (Redis time); expired entries are dropped.
var watchScript = goredis.NewScript(luaNow + `
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
`)

// Watch records gateway as a watcher of users for ttl, pipelined.
func (s *Store) Watch(ctx context.Context, gateway string, users []string, ttl time.Duration) error {
	if gateway == "" || ttl <= 0 {
		return sessions.ErrInvalid
	}
	for i := 0; i < len(users); i += s.batch {
		chunk := users[i:min(i+s.batch, len(users))]
		err := s.pipe(ctx, func(p goredis.Pipeliner) {
			for _, u := range chunk {
				watchScript.EvalSha(ctx, p, []string{s.watchKey(u)}, gateway, ms(ttl))
			}
		})
		if err != nil {
			return fmt.Errorf("watch presence: %w", err)
		}
	}
	return nil
}

// Unwatch removes gateway's entries for users.
func (s *Store) Unwatch(ctx context.Context, gateway string, users []string) error {
	p := s.rdb.Pipeline()
	for _, u := range users {
		p.ZRem(ctx, s.watchKey(u), gateway)
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return fmt.Errorf("unwatch presence: %w", err)
	}
	return nil
}

// Watchers returns the gateways whose entry for user has not expired.
func (s *Store) Watchers(ctx context.Context, user string) ([]string, error) {
	p := s.rdb.Pipeline()
	timeCmd := p.Time(ctx)
	cmd := p.ZRangeWithScores(ctx, s.watchKey(user), 0, -1)
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("presence watchers: %w", err)
	}
	now := timeCmd.Val().UnixMilli()
	var out []string
	for _, z := range cmd.Val() {
		if int64(z.Score) > now {
			out = append(out, fmt.Sprint(z.Member))
		}
	}
	return out, nil
}

// SetLastSeen records ms for user unless a later time is recorded.
func (s *Store) SetLastSeen(ctx context.Context, user string, ms int64) error {
	if err := setSeenScript.Run(ctx, s.rdb, []string{s.seenKey(user)}, ms, seenTTL.Milliseconds()).Err(); err != nil {
		return fmt.Errorf("set last seen of %s: %w", user, err)
	}
	return nil
}

// LastSeen returns the recorded times of users in one pipelined round trip.
func (s *Store) LastSeen(ctx context.Context, users []string) (map[string]int64, error) {
	out := map[string]int64{}
	if len(users) == 0 {
		return out, nil
	}
	p := s.rdb.Pipeline()
	cmds := make([]*goredis.StringCmd, len(users))
	for i, u := range users {
		cmds[i] = p.Get(ctx, s.seenKey(u))
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("look up last seen: %w", err)
	}
	for i, u := range users {
		if v, err := strconv.ParseInt(cmds[i].Val(), 10, 64); err == nil {
			out[u] = v
		}
	}
	return out, nil
}
