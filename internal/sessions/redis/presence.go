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

// seenKey shares the user's hash slot with the user's sessions.
func (s *Store) seenKey(user string) string { return s.prefix + "seen:{" + user + "}" }

// setSeenScript: KEYS[1] seen key; ARGV ms, ttl ms. Never moves back.
var setSeenScript = goredis.NewScript(`
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > old then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1
`)

// Gateways returns the gateways whose liveness has not passed (Redis time).
func (s *Store) Gateways(ctx context.Context) ([]string, error) {
	p := s.rdb.Pipeline()
	timeCmd := p.Time(ctx)
	gwCmd := p.ZRangeWithScores(ctx, s.gatewaysKey(), 0, -1)
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("list gateways: %w", err)
	}
	now := timeCmd.Val().UnixMilli()
	var out []string
	for _, z := range gwCmd.Val() {
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
