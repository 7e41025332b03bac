package rocketmq_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/bus/rocketmq"
)

// A consumer stopped while a handler call is in progress lets it finish on a
// live context, takes no record after it, and commits its offset before the
// queue goes to the next consumer of the group: that one starts right after
// it, so no record is consumed twice (a rolling update of the message
// service re-consumes nothing).
func TestStopFinishesInFlightRecordsAndCommitsTheirOffsets(t *testing.T) {
	r := newRig(t)
	cfg := r.group(t, 1)
	first, err := rocketmq.New(cfg("first"))
	if err != nil {
		t.Fatal(err)
	}
	const n, inFlight = 20, 5
	for i := 1; i <= n; i++ {
		if err := first.PublishUpstream(context.Background(), bus.Message{Key: "k", Body: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu      sync.Mutex
		handled []string
	)
	started, release := make(chan struct{}), make(chan struct{})
	var handlerErr error
	ctx, stop := context.WithCancel(context.Background())
	consumed := make(chan error, 1)
	go func() {
		consumed <- first.ConsumeUpstream(ctx, func(hctx context.Context, m bus.Message) error {
			mu.Lock()
			handled = append(handled, string(m.Body))
			mu.Unlock()
			if string(m.Body) == strconv.Itoa(inFlight) {
				close(started)
				<-release
				handlerErr = hctx.Err() // an in-flight call finishes on a live context
				return handlerErr
			}
			return nil
		})
	}()
	select {
	case <-started:
	case <-time.After(2 * time.Minute):
		t.Fatal("the first consumer never got record 5")
	}
	stop() // SIGTERM: the consume context ends while record 5 is in progress
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-consumed:
		t.Fatalf("ConsumeUpstream returned (%v) while a handler call was in progress", err)
	default:
	}
	close(release)
	select {
	case err := <-consumed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ConsumeUpstream did not return after the in-flight call finished")
	}
	if handlerErr != nil {
		t.Errorf("the in-flight handler call's context was cancelled by the stop: %v", handlerErr)
	}
	mu.Lock()
	firstGot := slices.Clone(handled)
	mu.Unlock()
	if want := []string{"1", "2", "3", "4", "5"}; !slices.Equal(firstGot, want) {
		t.Fatalf("first consumer handled %v, want %v (nothing after the stop)", firstGot, want)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	// The next consumer of the group continues after record 5.
	second, err := rocketmq.New(cfg("second"))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	var got []string
	all := make(chan struct{})
	ctx2, stop2 := context.WithCancel(context.Background())
	go func() {
		consumed <- second.ConsumeUpstream(ctx2, func(_ context.Context, m bus.Message) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, string(m.Body))
			if string(m.Body) == strconv.Itoa(n) {
				close(all)
			}
			return nil
		})
	}()
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		mu.Lock()
		t.Errorf("second consumer got %v, never record %d", got, n)
		mu.Unlock()
	}
	time.Sleep(time.Second) // anything redelivered would come in order before n anyway
	stop2()
	if err := <-consumed; err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := inFlight + 1; i <= n; i++ {
		want = append(want, strconv.Itoa(i))
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("second consumer got %v, want %v: records before the stop were consumed again", got, want)
	}
}
