// Package sequence allocates per-key strictly increasing sequence numbers.
//
// Conversation seq numbers use keys "c:<conv>", per-user inbox numbers use
// keys "i:<user>".
package sequence

import "context"

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
