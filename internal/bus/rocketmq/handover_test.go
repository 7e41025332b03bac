package rocketmq_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/bus/rocketmq"
)

// A consumer that joins the group (a new message pod: scale-up, rolling
// update) takes records of the queues the rebalance gives it within
// seconds. The orderly client used to keep the queues it lost locked on the
// broker until the lock expired (60 s) while it no longer consumed them, and
// the newcomer locked them only after that: a minute in which nobody consumed
// those queues (third_party/README.md). Every record is handled, in order per
// key, by one of the two.
func TestJoiningConsumerTakesQueuesWithoutWaitingForLockExpiry(t *testing.T) {
	r := newRig(t)
	cfg := r.group(t, 4)
	var (
		mu    sync.Mutex
		byKey = map[string][]int{}
		took  = map[string]int{} // records per consumer
	)
	handler := func(name string) bus.Handler {
		return func(_ context.Context, m bus.Message) error {
			var n int
			fmt.Sscanf(string(m.Body), "%d", &n)
			mu.Lock()
			byKey[m.Key] = append(byKey[m.Key], n)
			took[name]++
			mu.Unlock()
			return nil
		}
	}
	consume := func(b *rocketmq.Bus, name string) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- b.ConsumeUpstream(ctx, handler(name)) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	first, err := rocketmq.New(cfg("first"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Close() })
	consume(first, "first")

	// Keys on every queue; publish continuously until the test ends.
	keys := make([]string, 16)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	pubCtx, stopPub := context.WithCancel(context.Background())
	pubDone := make(chan struct{})
	sent := map[string]int{}
	go func() {
		defer close(pubDone)
		for n := 1; pubCtx.Err() == nil; n++ {
			for _, k := range keys {
				if err := first.PublishUpstream(pubCtx, bus.Message{Key: k, Body: []byte(fmt.Sprint(n))}); err != nil {
					if pubCtx.Err() == nil {
						t.Errorf("publish: %v", err)
					}
					return
				}
				sent[k] = n
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	defer func() { stopPub(); <-pubDone }()

	// tookWithin waits until consumer name handled a record, at most d.
	tookWithin := func(name string, d time.Duration) bool {
		deadline := time.Now().Add(d)
		for {
			mu.Lock()
			n := took[name]
			mu.Unlock()
			if n > 0 {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// The first consumer has all queues and consumes.
	if !tookWithin("first", 2*time.Minute) {
		t.Fatal("the first consumer took nothing in 2 minutes")
	}
	second, err := rocketmq.New(cfg("second"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	joined := time.Now()
	consume(second, "second")
	// A rebalance round (the broker notifies the group at once; both
	// clients also rebalance every 20 s) plus the handover: well under the
	// 60 s a lock takes to expire.
	const within = 30 * time.Second
	if !tookWithin("second", within) {
		t.Fatalf("the joining consumer took no record in %s: the queues it was given are still locked by the first", within)
	}
	t.Logf("the joining consumer took its first record %s after it started", time.Since(joined).Round(100*time.Millisecond))
	stopPub()
	<-pubDone
	// Every record arrives, in order per key (a handover may hand a record
	// over twice: at least once).
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mu.Lock()
		complete := true
		for _, k := range keys {
			got := byKey[k]
			if len(got) == 0 || got[len(got)-1] < sent[k] {
				complete = false
			}
		}
		mu.Unlock()
		if complete {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not every record arrived in 2 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, k := range keys {
		next := 1
		for _, n := range byKey[k] {
			if n > next {
				t.Fatalf("key %s: record %d before %d (got %v)", k, n, next, byKey[k])
			}
			if n == next {
				next++
			}
		}
	}
	t.Logf("records taken: first %d, second %d", took["first"], took["second"])
}
