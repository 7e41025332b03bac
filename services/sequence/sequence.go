// Package sequence allocates per-key strictly increasing sequence numbers.
//
// Conversation seq numbers use keys "c:<conv>", per-user inbox numbers use
// keys "i:<user>".
//
// # Guarantee
//
// For every key, values strictly increase and are never handed out twice,
// across any number of replicas, even when the store of current values
// (Redis, or process memory in `imkube dev`) loses everything. New keys start
// at 1; gaps appear only after such a loss.
//
// # Design (WeChat seqsvr-style section bounds)
//
// Keys hash (FNV-1a, stable across processes) into sections (default 1024).
// Every section has an upper bound persisted in SQL (table seq_sections). No
// value above a section's bound is ever handed out: the bound is raised by a
// step (default 10,000) and the UPDATE is committed first. A background
// goroutine raises a bound ahead of need once 80 % of its last step is used,
// so the hot path rarely waits on SQL. Raises are conditional updates
// (UPDATE ... SET bound = ? WHERE section = ? AND bound = ?), so replicas
// racing on one section never overwrite each other and every successful write
// moves a bound up by at least one step: at most one SQL write per step per
// section. Each replica checks values against its own cached copy of the
// bounds, which can only lag behind the committed value, never lead it.
//
// Current values live in a valueStore: Redis (one Lua script per batch, one
// hash per section) or memory. Changing the number of sections would move
// keys between sections, so it is recorded in the table and a mismatch
// refuses to start.
//
// # New key or lost key
//
// A missing value can mean "this key is new" (start at 1) or "the store lost
// this key" (resume above every value handed out so far). Without writing
// every key to SQL the two cannot be told apart for a single key, so the
// decision is made per section: each section's hash in Redis carries a
// marker field (the empty field name; keys are never empty) that holds the
// section's floor. The marker lives in the same hash as the values, so it
// disappears together with them (restart without persistence, failover to an
// empty replica, FLUSHALL, eviction of the hash).
//
//   - Marker present: the section's values are intact. A key without a value
//     is new and starts at floor+1 (floor is 0 unless the section was
//     recovered).
//   - Marker missing: the section lost its values, or was never used. The
//     allocator recovers it: it reads the section's persisted bound B from
//     SQL and sets the marker with floor = B. Every value handed out before
//     the loss was <= B, so every key of the section resumes above B. A
//     section that was never used has B = 0 and its keys still start at 1.
//   - Consequence: a brand-new key in a RECOVERED section cannot be told
//     from a lost key, so it also starts above the floor (a gap, which the
//     guarantee allows after a failure). Only per-key persistence could avoid
//     that, at the cost of one SQL write per new key.
//
// Recovery is two-phase so a stale read cannot win: the recovering replica
// first takes a short-lived token in Redis, then reads B, then sets the marker
// only if the token is still its own and the marker still missing. A further
// loss between the steps deletes the token and the recovery starts over.
//
// Limits: a Redis failover to a replica that LAGS (asynchronous replication)
// keeps the markers but rolls some values back; that is not detected. Run the
// values' Redis with persistence or with `WAIT`-acknowledged replicas if that
// matters, and with maxmemory-policy noeviction.
//
// # Embedded mode
//
// NewEmbedded keeps values in memory and bounds in the embedded SQLite
// database: a restart is a loss as above, so values resume above the bounds.
// On a clean Close the current values are saved to SQL and loaded on the next
// start, so a clean restart leaves no gap.
package sequence

import (
	"context"
	"errors"
	"slices"
)

// Request asks for Count consecutive values of Key.
type Request struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
}

// Range is the inclusive range [First, Last] handed out for Key.
type Range struct {
	Key   string `json:"key"`
	First int64  `json:"first"`
	Last  int64  `json:"last"`
}

// Allocator hands out values: for every key, strictly increasing and never
// twice. The result has one Range per Request, in request order.
type Allocator interface {
	Allocate(ctx context.Context, reqs []Request) ([]Range, error)
}

// Chunked returns an Allocator that takes any number of requests and passes
// them to a at most MaxKeys per call, one call after the other, so a caller
// with more keys than one call carries (a message to a write-diffusion group
// of more than MaxKeys-1 members numbers every member's inbox and the
// conversation) is not refused. Values per key stay strictly increasing:
// every call's ranges follow the ranges of the calls before it. A failed call
// fails the whole allocation (what earlier calls handed out is not used: gaps
// are allowed, reuse is not).
func Chunked(a Allocator) Allocator { return chunked{a} }

type chunked struct{ a Allocator }

func (c chunked) Allocate(ctx context.Context, reqs []Request) ([]Range, error) {
	if len(reqs) <= MaxKeys {
		return c.a.Allocate(ctx, reqs)
	}
	out := make([]Range, 0, len(reqs))
	for part := range slices.Chunk(reqs, MaxKeys) {
		r, err := c.a.Allocate(ctx, part)
		if err != nil {
			return nil, err
		}
		out = append(out, r...)
	}
	return out, nil
}

// Readier is implemented by allocators that can tell whether they serve
// (the *Sequencer does: not closed, Redis answers). The process mounts it
// as its readiness probe.
type Readier interface {
	Ready(ctx context.Context) error
}

// Errors. Test with errors.Is.
var (
	// ErrBadRequest: the request is invalid (empty key, count <= 0 or over
	// the maximum, too many keys). Retrying does not help.
	ErrBadRequest = errors.New("bad sequence request")
	// ErrUnavailable: a dependency (Redis, SQL, the sequence service) did not
	// answer, or bounds could not be raised. Nothing was handed out for the
	// failed requests; retry later.
	ErrUnavailable = errors.New("sequence allocation unavailable, retry later")
)

// Limits of one Allocate call.
const (
	// MaxCount is the largest Count of one Request.
	MaxCount = 100_000
	// MaxKeys is the largest number of Requests in one call.
	MaxKeys = 10_000
)
