package sequence

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// counting is an Allocator that refuses what the real ones refuse (Validate:
// more than MaxKeys requests) and hands out per-key counters.
type counting struct {
	next  map[string]int64
	calls int
	fail  int // the call number that fails (0: none)
}

func (c *counting) Allocate(_ context.Context, reqs []Request) ([]Range, error) {
	if err := Validate(reqs); err != nil {
		return nil, err
	}
	c.calls++
	if c.calls == c.fail {
		return nil, fmt.Errorf("%w: down", ErrUnavailable)
	}
	out := make([]Range, len(reqs))
	for i, r := range reqs {
		first := c.next[r.Key] + 1
		c.next[r.Key] += r.Count
		out[i] = Range{Key: r.Key, First: first, Last: c.next[r.Key]}
	}
	return out, nil
}

func TestChunkedAllocatesMoreKeysThanOneCallCarries(t *testing.T) {
	ctx := context.Background()
	// A message to a write-diffusion group of 2.5 x MaxKeys members: one
	// request per inbox and one for the conversation, twice for the same key
	// across the chunk boundary.
	reqs := make([]Request, 0, 2*MaxKeys+MaxKeys/2+2)
	reqs = append(reqs, Request{Key: "c:g", Count: 1})
	for i := range 2*MaxKeys + MaxKeys/2 {
		reqs = append(reqs, Request{Key: fmt.Sprintf("i:u%d", i), Count: 1})
	}
	reqs = append(reqs, Request{Key: "c:g", Count: 3})

	raw := &counting{next: map[string]int64{}}
	if _, err := raw.Allocate(ctx, reqs); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("the wrapped allocator must refuse %d keys in one call, got %v", len(reqs), err)
	}
	got, err := Chunked(raw).Allocate(ctx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(reqs) || raw.calls != 3 {
		t.Fatalf("%d ranges in %d calls, want %d in 3", len(got), raw.calls, len(reqs))
	}
	for i, r := range got {
		if r.Key != reqs[i].Key || r.Last-r.First+1 != reqs[i].Count {
			t.Fatalf("range %d = %+v for request %+v", i, r, reqs[i])
		}
	}
	if first, last := got[0], got[len(got)-1]; first.Last != 1 || last.First != 2 || last.Last != 4 {
		t.Fatalf("c:g got %+v then %+v, want 1..1 then 2..4", first, last)
	}

	// A call that fails fails the allocation.
	down := &counting{next: map[string]int64{}, fail: 2}
	if _, err := Chunked(down).Allocate(ctx, reqs); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("second call down: %v, want ErrUnavailable", err)
	}
	// Small allocations are one call, unchanged.
	one := &counting{next: map[string]int64{}}
	if _, err := Chunked(one).Allocate(ctx, reqs[:2]); err != nil || one.calls != 1 {
		t.Fatalf("2 keys: %v in %d calls", err, one.calls)
	}
}
