package sequence

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Redis layout, per section s (the hash tag keeps a section in one cluster
// slot):
//
//	<prefix>{s}    hash: field "" = marker and floor, field <key> = current value
//	<prefix>{s}:r  string: recovery token, with a TTL
//
// The marker is a field of the same hash as the values, so whatever removes
// the values (restart without persistence, failover to an empty replica,
// FLUSHALL/FLUSHDB, eviction) removes the marker with them.

// allocScript allocates a batch. KEYS[g] is the hash of section group g;
// ARGV holds, per group: bound, n, then n pairs (key, count). It returns one
// integer per item: last value (> 0) on success, -need when the section's
// bound is too low, 0 when the section's marker is missing.
var allocScript = redis.NewScript(`
local out = {}
local a = 1
for g = 1, #KEYS do
  local h = KEYS[g]
  local bound = tonumber(ARGV[a])
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  local floor = redis.call('HGET', h, '')
  if not floor then
    for i = 1, n do out[#out + 1] = 0 end
    a = a + 2 * n
  else
    floor = tonumber(floor)
    local blocked = false
    for i = 1, n do
      local f = ARGV[a]
      local c = tonumber(ARGV[a + 1])
      a = a + 2
      if floor == 0 and not blocked then
        -- Common case (section never lost): one HINCRBY, undone when the
        -- result is over the bound (all within this atomic script).
        local last = redis.call('HINCRBY', h, f, c)
        if last > bound then
          redis.call('HINCRBY', h, f, -c)
          blocked = true
          out[#out + 1] = -last
        else
          out[#out + 1] = last
        end
      else
        local cur = redis.call('HGET', h, f)
        if cur then
          cur = tonumber(cur)
          if cur < floor then cur = floor end
        else
          cur = floor
        end
        local last = cur + c
        if blocked or last > bound then
          blocked = true
          out[#out + 1] = -last
        else
          redis.call('HSET', h, f, string.format('%d', last))
          out[#out + 1] = last
        end
      end
    end
  end
end
return out
`)

// beginRecoverScript: KEYS = hash1, token1, hash2, token2, ...; ARGV[1] = TTL
// in ms, ARGV[1+i] = token i. Returns 1 per section whose token it took.
var beginRecoverScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS / 2 do
  local h, t = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('HEXISTS', h, '') == 1 then
    out[i] = 0
  elseif redis.call('SET', t, ARGV[1 + i], 'NX', 'PX', ARGV[1]) then
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
`)

// finishRecoverScript: KEYS as above; ARGV = token1, floor1, token2, ...
// Sets the marker when the token is still held and the marker still missing.
var finishRecoverScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS / 2 do
  local h, t = KEYS[2 * i - 1], KEYS[2 * i]
  out[i] = 0
  if redis.call('GET', t) == ARGV[2 * i - 1] then
    redis.call('DEL', t)
    if redis.call('HEXISTS', h, '') == 0 then
      redis.call('HSET', h, '', ARGV[2 * i])
      out[i] = 1
    end
  end
end
return out
`)

// abandonRecoverScript: KEYS as above; ARGV = tokens. Drops tokens still held.
var abandonRecoverScript = redis.NewScript(`
for i = 1, #KEYS / 2 do
  if redis.call('GET', KEYS[2 * i]) == ARGV[i] then redis.call('DEL', KEYS[2 * i]) end
end
return 0
`)

// recoverTTLms bounds how long a crashed replica's recovery blocks others.
const recoverTTLms = 3000

type redisStore struct {
	rdb     redis.UniversalClient
	prefix  string
	cluster bool // one script call per section (pipelined): keys of a call share a slot
}

var _ valueStore = (*redisStore)(nil)

// NewRedis returns an allocator for the distributed mode: current values in
// deps.Redis (standalone, sentinel or cluster client), section bounds in
// deps.DB (dialect "mysql", or "sqlite" for tests). Every replica shares
// both. Call Close on shutdown.
func NewRedis(ctx context.Context, cfg Config, deps Deps) (*Sequencer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if deps.Redis == nil {
		return nil, errors.New("sequence: redis client is nil")
	}
	if strings.ContainsAny(cfg.KeyPrefix, "{}") {
		return nil, fmt.Errorf("sequence: key prefix %q: braces are reserved for the hash tag", cfg.KeyPrefix)
	}
	b, err := newBoundStore(ctx, deps.DB, deps.Dialect, cfg.Table, cfg.Sections)
	if err != nil {
		return nil, err
	}
	_, cluster := deps.Redis.(*redis.ClusterClient)
	q := newSequencer(cfg, deps, &redisStore{rdb: deps.Redis, prefix: cfg.KeyPrefix, cluster: cluster}, b)
	if err := q.warm(ctx); err != nil {
		return nil, err
	}
	q.start()
	return q, nil
}

func (r *redisStore) hash(s int) string  { return r.prefix + "{" + strconv.Itoa(s) + "}" }
func (r *redisStore) token(s int) string { return r.prefix + "{" + strconv.Itoa(s) + "}:r" }

// call is one script invocation.
type call struct {
	keys []string
	args []any
}

// run executes calls (one EVALSHA each, pipelined when there are several)
// and returns their integer arrays.
func (r *redisStore) run(ctx context.Context, sc *redis.Script, calls []call) ([][]int64, error) {
	cmds := make([]*redis.Cmd, len(calls))
	if len(calls) == 1 {
		cmds[0] = sc.Run(ctx, r.rdb, calls[0].keys, calls[0].args...)
	} else {
		pipe := r.rdb.Pipeline()
		for i, c := range calls {
			cmds[i] = sc.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx)
		for i, c := range calls {
			if err := cmds[i].Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
				cmds[i] = sc.Eval(ctx, r.rdb, c.keys, c.args...)
			}
		}
	}
	out := make([][]int64, len(calls))
	for i, cmd := range cmds {
		v, err := cmd.Int64Slice()
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		out[i] = v
	}
	return out, nil
}

func (r *redisStore) allocate(ctx context.Context, items []item, out []result) error {
	// Group items by section, keeping their order within a section.
	order := make([]int, 0, len(items)) // item indexes, grouped
	groupOf := map[int]int{}
	var groups [][]int
	for i, it := range items {
		g, ok := groupOf[it.section]
		if !ok {
			g = len(groups)
			groupOf[it.section] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	var calls []call
	cur := call{}
	for _, g := range groups {
		s := items[g[0]].section
		cur.keys = append(cur.keys, r.hash(s))
		cur.args = append(cur.args, items[g[0]].bound, len(g))
		for _, i := range g {
			cur.args = append(cur.args, items[i].key, items[i].count)
			order = append(order, i)
		}
		if r.cluster {
			calls = append(calls, cur)
			cur = call{}
		}
	}
	if !r.cluster {
		calls = append(calls, cur)
	}
	res, err := r.run(ctx, allocScript, calls)
	if err != nil {
		return fmt.Errorf("allocate: %w", err)
	}
	k := 0
	for _, vals := range res {
		for _, v := range vals {
			if k >= len(order) {
				return errors.New("allocate: redis answered too many values")
			}
			i := order[k]
			k++
			switch {
			case v > 0:
				out[i] = result{status: statusOK, value: v}
			case v < 0:
				out[i] = result{status: statusNeedBound, value: -v}
			default:
				out[i] = result{status: statusLost}
			}
		}
	}
	if k != len(order) {
		return fmt.Errorf("allocate: redis answered %d values for %d keys", k, len(order))
	}
	return nil
}

// recoverCalls builds one call per section (cluster) or one for all.
func (r *redisStore) recoverCalls(sections []int, head []any, perSection func(i int) []any) []call {
	var calls []call
	cur := call{args: append([]any(nil), head...)}
	for i, s := range sections {
		cur.keys = append(cur.keys, r.hash(s), r.token(s))
		cur.args = append(cur.args, perSection(i)...)
		if r.cluster {
			calls = append(calls, cur)
			cur = call{args: append([]any(nil), head...)}
		}
	}
	if !r.cluster {
		calls = append(calls, cur)
	}
	return calls
}

func flatten(res [][]int64) []int64 {
	var out []int64
	for _, v := range res {
		out = append(out, v...)
	}
	return out
}

func (r *redisStore) beginRecover(ctx context.Context, sections []int) ([]string, []bool, error) {
	tokens := make([]string, len(sections))
	for i := range tokens {
		tokens[i] = newToken()
	}
	calls := r.recoverCalls(sections, []any{recoverTTLms}, func(i int) []any { return []any{tokens[i]} })
	res, err := r.run(ctx, beginRecoverScript, calls)
	if err != nil {
		return nil, nil, fmt.Errorf("begin recovery: %w", err)
	}
	flat := flatten(res)
	if len(flat) != len(sections) {
		return nil, nil, fmt.Errorf("begin recovery: redis answered %d values for %d sections", len(flat), len(sections))
	}
	ok := make([]bool, len(sections))
	for i, v := range flat {
		ok[i] = v == 1
	}
	return tokens, ok, nil
}

func (r *redisStore) finishRecover(ctx context.Context, sections []int, tokens []string, floors []int64) ([]bool, error) {
	calls := r.recoverCalls(sections, nil, func(i int) []any { return []any{tokens[i], floors[i]} })
	res, err := r.run(ctx, finishRecoverScript, calls)
	if err != nil {
		return nil, fmt.Errorf("finish recovery: %w", err)
	}
	flat := flatten(res)
	if len(flat) != len(sections) {
		return nil, fmt.Errorf("finish recovery: redis answered %d values for %d sections", len(flat), len(sections))
	}
	done := make([]bool, len(sections))
	for i, v := range flat {
		done[i] = v == 1
	}
	return done, nil
}

func (r *redisStore) abandonRecover(ctx context.Context, sections []int, tokens []string) {
	calls := r.recoverCalls(sections, nil, func(i int) []any { return []any{tokens[i]} })
	_, _ = r.run(ctx, abandonRecoverScript, calls) // best effort: tokens expire anyway
}
