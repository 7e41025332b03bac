package sequence

import "context"

// valueStore holds the current value of every key and, per section, the
// marker that tells whether the section's values are intact (see the package
// doc). Implementations: memStore (process memory) and redisStore.
type valueStore interface {
	// allocate tries every item against item.bound (the caller's committed
	// bound of the item's section) and writes one result per item to out.
	// Items of a section are tried in order; once one of them does not fit
	// under the bound, the later items of that section are not applied
	// either, so values of one key grow in request order.
	allocate(ctx context.Context, items []item, out []result) error
	// beginRecover takes a short-lived recovery token for each section whose
	// marker is missing. ok[i] is false when the marker is present again or
	// another recovery holds the token.
	beginRecover(ctx context.Context, sections []int) (tokens []string, ok []bool, err error)
	// finishRecover sets the marker of sections[i] with floor floors[i] when
	// the marker is still missing and tokens[i] is still held; done[i] tells
	// whether it did.
	finishRecover(ctx context.Context, sections []int, tokens []string, floors []int64) (done []bool, err error)
	// abandonRecover gives tokens back (best effort) after a failed bound read.
	abandonRecover(ctx context.Context, sections []int, tokens []string)
}

// item is one request prepared for a valueStore.
type item struct {
	key     string
	section int
	count   int64
	bound   int64
}

// result of one item.
type result struct {
	status status
	// last value handed out (statusOK) or the bound the item needs
	// (statusNeedBound).
	value int64
}

type status uint8

const (
	statusOK status = iota
	statusNeedBound
	statusLost
)
