// Package redis is the Redis session store.
//
// Layout (all keys under Options.Prefix, default "imkube:"):
//
//	sess:{<user>}  hash  device -> "<gateway>|<expiry ms>"; the key expires with its longest entry
//	gateways       zset  gateway -> liveness expiry (ms, Redis server time)
//
// Expiry times come from the Redis server clock (TIME inside the scripts), so
// gateways with skewed clocks agree. Register and Unregister are one script
// each on the user's key; Heartbeat pipelines the gateway's liveness and the
// re-registration of all its sessions; Lookup is one pipelined round trip (the
// server time, the gateway set, one HGETALL per user) filtered here, which also
// works on Redis Cluster because every script touches a single key.
// After Redis loses its data (restart without persistence), the next
// heartbeat of every gateway restores the registry; scripts are reloaded on
// NOSCRIPT.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/imkube/imkube/internal/sessions"
)

// Options configures New.
type Options struct {
	// Prefix is put before every key (default "imkube:").
	Prefix string
	// HeartbeatBatch bounds the commands of one pipeline in Heartbeat (default 1000).
	HeartbeatBatch int
}

// Store is the Redis sessions.Store.
type Store struct {
	rdb    goredis.UniversalClient
	prefix string
	batch  int
}

var _ sessions.Store = (*Store)(nil)

// New returns a store on rdb (standalone, sentinel or cluster client).
func New(rdb goredis.UniversalClient, opts Options) *Store {
	if opts.Prefix == "" {
		opts.Prefix = "imkube:"
	}
	if opts.HeartbeatBatch <= 0 {
		opts.HeartbeatBatch = 1000
	}
	return &Store{rdb: rdb, prefix: opts.Prefix, batch: opts.HeartbeatBatch}
}

// Server time in ms, shared by the scripts.
const luaNow = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// registerScript: KEYS[1] user hash; ARGV device, gateway, ttl ms. Drops the
// user's expired devices, writes the entry, extends the key's TTL.
var registerScript = goredis.NewScript(luaNow + `
local ttl = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local exp = tonumber(string.match(all[i + 1], '|(%d+)$'))
  if exp == nil or exp <= now then redis.call('HDEL', KEYS[1], all[i]) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. (now + ttl))
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
`)

// unregisterScript: KEYS[1] user hash; ARGV device, gateway. Deletes the
// entry only if it still points at gateway.
var unregisterScript = goredis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.match(v, '^(.*)|%d+$') == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
`)

// gatewayScript: KEYS[1] gateway zset; ARGV gateway, ttl ms, mode. Mode "set"
// (heartbeat) sets the liveness to now+ttl, "extend" (register) only raises
// it. Gateways whose liveness passed are dropped, so the set stays small.
var gatewayScript = goredis.NewScript(luaNow + `
local exp = now + tonumber(ARGV[2])
if ARGV[3] == 'extend' then
  redis.call('ZADD', KEYS[1], 'GT', exp, ARGV[1])
else
  redis.call('ZADD', KEYS[1], exp, ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return 1
`)

var scripts = []*goredis.Script{registerScript, unregisterScript, gatewayScript, watchScript}

func (s *Store) userKey(user string) string { return s.prefix + "sess:{" + user + "}" }
func (s *Store) gatewaysKey() string        { return s.prefix + "gateways" }

func ms(d time.Duration) int64 { return max(1, d.Milliseconds()) }

// Register records the session for ttl and marks its gateway alive for at least ttl.
func (s *Store) Register(ctx context.Context, sess sessions.Session, ttl time.Duration) error {
	if err := sessions.Validate(sess); err != nil || ttl <= 0 {
		return sessions.ErrInvalid
	}
	err := s.pipe(ctx, func(p goredis.Pipeliner) {
		registerScript.EvalSha(ctx, p, []string{s.userKey(sess.User)}, sess.Device, sess.Gateway, ms(ttl))
		gatewayScript.EvalSha(ctx, p, []string{s.gatewaysKey()}, sess.Gateway, ms(ttl), "extend")
	})
	if err != nil {
		return fmt.Errorf("register session %s/%s: %w", sess.User, sess.Device, err)
	}
	return nil
}

// Unregister removes the session if its entry still points at sess.Gateway.
func (s *Store) Unregister(ctx context.Context, sess sessions.Session) error {
	if err := sessions.Validate(sess); err != nil {
		return err
	}
	if err := unregisterScript.Run(ctx, s.rdb, []string{s.userKey(sess.User)}, sess.Device, sess.Gateway).Err(); err != nil {
		return fmt.Errorf("unregister session %s/%s: %w", sess.User, sess.Device, err)
	}
	return nil
}

// Heartbeat sets gatewayID's liveness to ttl and re-registers its live sessions.
func (s *Store) Heartbeat(ctx context.Context, gatewayID string, live []sessions.Session, ttl time.Duration) error {
	if gatewayID == "" || ttl <= 0 {
		return sessions.ErrInvalid
	}
	for _, sess := range live {
		if err := sessions.Validate(sess); err != nil || sess.Gateway != gatewayID {
			return sessions.ErrInvalid
		}
	}
	// Sessions first, liveness last: a gateway is never announced alive with
	// half of its sessions missing after a data loss.
	for i := 0; i < len(live) || i == 0; i += s.batch {
		chunk := live[i:min(i+s.batch, len(live))]
		last := i+s.batch >= len(live)
		err := s.pipe(ctx, func(p goredis.Pipeliner) {
			for _, sess := range chunk {
				registerScript.EvalSha(ctx, p, []string{s.userKey(sess.User)}, sess.Device, sess.Gateway, ms(ttl))
			}
			if last {
				gatewayScript.EvalSha(ctx, p, []string{s.gatewaysKey()}, gatewayID, ms(ttl), "set")
			}
		})
		if err != nil {
			return fmt.Errorf("heartbeat of gateway %s: %w", gatewayID, err)
		}
	}
	return nil
}

// Lookup returns the unexpired sessions on live gateways of each user, sorted
// by device, in one pipelined round trip.
func (s *Store) Lookup(ctx context.Context, users []string) (map[string][]sessions.Session, error) {
	out := map[string][]sessions.Session{}
	if len(users) == 0 {
		return out, nil
	}
	seen := make(map[string]bool, len(users))
	uniq := users[:0:0]
	for _, u := range users {
		if !seen[u] {
			seen[u] = true
			uniq = append(uniq, u)
		}
	}
	p := s.rdb.Pipeline()
	timeCmd := p.Time(ctx)
	gwCmd := p.ZRangeWithScores(ctx, s.gatewaysKey(), 0, -1)
	userCmds := make([]*goredis.MapStringStringCmd, len(uniq))
	for i, u := range uniq {
		userCmds[i] = p.HGetAll(ctx, s.userKey(u))
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("look up sessions: %w", err)
	}
	now := timeCmd.Val().UnixMilli()
	alive := map[string]bool{}
	for _, z := range gwCmd.Val() {
		if int64(z.Score) > now {
			alive[fmt.Sprint(z.Member)] = true
		}
	}
	for i, u := range uniq {
		var list []sessions.Session
		for device, v := range userCmds[i].Val() {
			gw, exp, ok := parseEntry(v)
			if !ok || exp <= now || !alive[gw] {
				continue
			}
			list = append(list, sessions.Session{User: u, Device: device, Gateway: gw})
		}
		if len(list) > 0 {
			sessions.SortSessions(list)
			out[u] = list
		}
	}
	return out, nil
}

// Gateways returns the gateways whose liveness has not expired.
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

func parseEntry(v string) (gateway string, expiresMs int64, ok bool) {
	i := strings.LastIndexByte(v, '|')
	if i < 0 {
		return "", 0, false
	}
	exp, err := strconv.ParseInt(v[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return v[:i], exp, true
}

// pipe runs fill's EVALSHA commands in one pipeline; when Redis lost its script
// cache (restart, failover) it loads the scripts and runs the pipeline again.
func (s *Store) pipe(ctx context.Context, fill func(p goredis.Pipeliner)) error {
	for attempt := 0; ; attempt++ {
		p := s.rdb.Pipeline()
		fill(p)
		_, err := p.Exec(ctx)
		if err == nil || attempt > 0 || !isNoScript(err) {
			return err
		}
		for _, sc := range scripts {
			if err := sc.Load(ctx, s.rdb).Err(); err != nil {
				return fmt.Errorf("load scripts: %w", err)
			}
		}
	}
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }
