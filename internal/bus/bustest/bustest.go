// Package bustest is the conformance suite of the bus adapters: every adapter
// (in-process, RocketMQ) runs the same Run against a fresh bus per subtest.
package bustest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/bus"
)

// Bus is what an adapter under test implements.
type Bus interface {
	bus.UpstreamPublisher
	bus.UpstreamConsumer
	bus.PushPublisher
	bus.PushConsumer
}

// Options tune the suite for an adapter.
type Options struct {
	// Wait bounds how long the suite waits for deliveries (default 30 s; a
	// broker needs longer: consumers are assigned queues by a rebalance).
	Wait time.Duration
	// Keys and PerKey size the ordering test (defaults 20 and 50).
	Keys, PerKey int
}

// Run runs the conformance suite. newBus returns a fresh, isolated bus (its own
// topics and groups) and registers its cleanup with t.Cleanup.
func Run(t *testing.T, newBus func(t *testing.T) Bus, opts Options) {
	if opts.Wait <= 0 {
		opts.Wait = 30 * time.Second
	}
	if opts.Keys <= 0 {
		opts.Keys = 20
	}
	if opts.PerKey <= 0 {
		opts.PerKey = 50
	}
	s := suite{newBus: newBus, opts: opts}
	t.Run("upstream keeps publish order per key under concurrent publishers", s.upstreamOrder)
	t.Run("upstream redelivers a failed message before later ones of its key", s.upstreamRedelivery)
	t.Run("upstream keeps messages published before a consumer starts", s.upstreamBuffered)
	t.Run("push reaches only the gateway it was published to", s.pushIsolation)
	t.Run("push keeps order per key and redelivers on error", s.pushOrderAndRetry)
	t.Run("push published as its consumer starts is delivered", s.pushAtStart)
	t.Run("consumers stop when their context ends and a successor gets the rest", s.cleanStop)
	if _, ok := newBus(t).(bus.BatchUpstreamConsumer); ok {
		t.Run("upstream batches keep order per key and resume at the failed message", s.upstreamBatches)
	}
}

// upstreamBatches: a batch handler gets several messages at once (published
// faster than handled), in order per key; when it fails at one message, the
// ones before it are done (or handed over again: at least once) and the
// failed one comes again before the rest of its key.
func (s suite) upstreamBatches(t *testing.T) {
	b := s.newBus(t).(interface {
		Bus
		bus.BatchUpstreamConsumer
	})
	r := newRecorder()
	var mu sync.Mutex
	attempts, largest := 0, 0
	ready := make(chan struct{}, 1)
	consume(t, func(ctx context.Context) error {
		return b.ConsumeUpstreamBatch(ctx, 16, func(ctx context.Context, msgs []bus.Message) (int, error) {
			if len(msgs) > 16 {
				t.Errorf("batch of %d messages, limit 16", len(msgs))
			}
			mu.Lock()
			largest = max(largest, len(msgs))
			mu.Unlock()
			time.Sleep(5 * time.Millisecond) // let the next ones queue up
			for i, m := range msgs {
				if m.Header[probeHeader] != "" {
					select {
					case ready <- struct{}{}:
					default:
					}
					continue
				}
				n := num(t, m)
				if m.Key == "batch-fail" && n == 30 {
					mu.Lock()
					attempts++
					a := attempts
					mu.Unlock()
					if a <= 2 {
						return i, errors.New("transient failure")
					}
				}
				r.add(m.Key, n)
			}
			return len(msgs), nil
		})
	})
	s.waitReady(t, ready, b.PublishUpstream)
	keys := []string{"batch-fail", "batch-a", "batch-b"}
	publishAll(t, len(keys), 100, func(i int) string { return keys[i] }, b.PublishUpstream)
	s.waitFor(t, r, "batched delivery", allInOrder(t, keys, 100))
	mu.Lock()
	defer mu.Unlock()
	if attempts < 3 {
		t.Errorf("the failing message was handled %d times, want 3 (two failures, then success)", attempts)
	}
	if largest < 2 {
		t.Errorf("largest batch had %d messages: the handler never got more than one at once", largest)
	}
}

type suite struct {
	newBus func(t *testing.T) Bus
	opts   Options
}

// recorder collects handled messages per key.
type recorder struct {
	mu     sync.Mutex
	byKey  map[string][]int
	total  int
	change chan struct{}
}

func newRecorder() *recorder {
	return &recorder{byKey: map[string][]int{}, change: make(chan struct{}, 1)}
}

func (r *recorder) add(key string, n int) {
	r.mu.Lock()
	r.byKey[key] = append(r.byKey[key], n)
	r.total++
	r.mu.Unlock()
	select {
	case r.change <- struct{}{}:
	default:
	}
}

func (r *recorder) snapshot() (map[string][]int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]int, len(r.byKey))
	for k, v := range r.byKey {
		out[k] = append([]int(nil), v...)
	}
	return out, r.total
}

// waitFor polls cond on every change until it holds or the suite's Wait ends.
func (s suite) waitFor(t *testing.T, r *recorder, what string, cond func(map[string][]int) bool) map[string][]int {
	t.Helper()
	deadline := time.NewTimer(s.opts.Wait)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		got, _ := r.snapshot()
		if cond(got) {
			return got
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s: not done after %s; got %v", what, s.opts.Wait, summarize(got))
		case <-r.change:
		case <-tick.C:
		}
	}
}

func summarize(got map[string][]int) string {
	if len(got) > 5 {
		n := 0
		for _, v := range got {
			n += len(v)
		}
		return fmt.Sprintf("%d keys, %d messages", len(got), n)
	}
	return fmt.Sprint(got)
}

// inOrder checks at-least-once, in-order delivery of 0..n-1: a value may repeat
// (redelivery) but never arrive before its predecessor. It returns the number
// of distinct values delivered so far and an error on a reordering.
func inOrder(seq []int) (int, error) {
	next := 0
	for i, v := range seq {
		switch {
		case v == next:
			next++
		case v < next:
			// a redelivery of something already seen
		default:
			return next, fmt.Errorf("position %d: got %d before %d", i, v, next)
		}
	}
	return next, nil
}

// consume runs fn(ctx) in a goroutine until the test ends (or stop is called)
// and checks that it returns once its context ends.
func consume(t *testing.T, fn func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("consumer returned %v after its context ended", err)
				}
			case <-time.After(60 * time.Second):
				t.Errorf("consumer did not return within 60s after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// record is what odd-numbered messages carry as a Value, not encoded by
// the publisher: the bus hands it over as it is or as its JSON.
type record struct {
	N int `json:"n"`
}

func msg(key string, n int) bus.Message {
	m := bus.Message{Key: key, Header: map[string]string{"n": strconv.Itoa(n)}}
	if n%2 == 1 {
		m.Value = &record{N: n}
	} else {
		m.Body = []byte(strconv.Itoa(n))
	}
	return m
}

func num(t *testing.T, m bus.Message) int {
	var n int
	switch v := m.Value.(type) {
	case *record:
		n = v.N
	case nil:
		var err error
		if bytes.HasPrefix(m.Body, []byte("{")) {
			var r record
			err = json.Unmarshal(m.Body, &r)
			n = r.N
		} else {
			n, err = strconv.Atoi(string(m.Body))
		}
		if err != nil {
			t.Errorf("unexpected body %q: %v", m.Body, err)
		}
	default:
		t.Errorf("unexpected value %T", m.Value)
	}
	if m.Header["n"] != strconv.Itoa(n) {
		t.Errorf("header n=%q does not match the record %d (body %q)", m.Header["n"], n, m.Body)
	}
	return n
}

func publishAll(t *testing.T, keys, perKey int, key func(int) string, pub func(context.Context, bus.Message) error) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, keys)
	for k := range keys {
		wg.Go(func() {
			for n := range perKey {
				if err := pub(ctx, msg(key(k), n)); err != nil {
					errs <- fmt.Errorf("publish %s/%d: %w", key(k), n, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func allInOrder(t *testing.T, keys []string, perKey int) func(map[string][]int) bool {
	return func(got map[string][]int) bool {
		done := true
		for _, k := range keys {
			n, err := inOrder(got[k])
			if err != nil {
				t.Fatalf("key %s out of order: %v (sequence %v)", k, err, got[k])
			}
			if n < perKey {
				done = false
			}
		}
		return done
	}
}

// probeHeader marks the suite's readiness probes; handlers skip them.
const probeHeader = "bustest-probe"

// probed wraps h: probes signal ready and are acknowledged, the rest goes to h.
func probed(ready chan<- struct{}, h bus.Handler) bus.Handler {
	return func(ctx context.Context, m bus.Message) error {
		if m.Header[probeHeader] != "" {
			select {
			case ready <- struct{}{}:
			default:
			}
			return nil
		}
		return h(ctx, m)
	}
}

// waitReady publishes probes until the consumer behind ready sees one: a
// broker assigns queues to a new consumer some time after it starts, and a
// push stream only delivers what is published after that.
func (s suite) waitReady(t *testing.T, ready <-chan struct{}, publish func(context.Context, bus.Message) error) {
	t.Helper()
	deadline := time.NewTimer(s.opts.Wait)
	defer deadline.Stop()
	retry := time.NewTicker(500 * time.Millisecond)
	defer retry.Stop()
	for {
		if err := publish(context.Background(), bus.Message{Key: "probe", Header: map[string]string{probeHeader: "1"}}); err != nil {
			t.Fatalf("publish probe: %v", err)
		}
		select {
		case <-ready:
			return
		case <-retry.C:
		case <-deadline.C:
			t.Fatalf("consumer not ready after %s", s.opts.Wait)
		}
	}
}

func (s suite) pushTo(b Bus, gw string) func(context.Context, bus.Message) error {
	return func(ctx context.Context, m bus.Message) error { return b.PublishPush(ctx, gw, m) }
}

func (s suite) upstreamOrder(t *testing.T) {
	b := s.newBus(t)
	r := newRecorder()
	ready := make(chan struct{}, 1)
	consume(t, func(ctx context.Context) error {
		return b.ConsumeUpstream(ctx, probed(ready, func(ctx context.Context, m bus.Message) error {
			r.add(m.Key, num(t, m))
			return nil
		}))
	})
	s.waitReady(t, ready, b.PublishUpstream)
	keys := make([]string, s.opts.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("u:a:%03d", i)
	}
	publishAll(t, len(keys), s.opts.PerKey, func(i int) string { return keys[i] }, b.PublishUpstream)
	s.waitFor(t, r, "ordered delivery", allInOrder(t, keys, s.opts.PerKey))
}

func (s suite) upstreamRedelivery(t *testing.T) {
	b := s.newBus(t)
	r := newRecorder()
	var mu sync.Mutex
	attempts := map[int]int{}
	ready := make(chan struct{}, 1)
	consume(t, func(ctx context.Context) error {
		return b.ConsumeUpstream(ctx, probed(ready, func(ctx context.Context, m bus.Message) error {
			n := num(t, m)
			if m.Key == "fail" {
				mu.Lock()
				attempts[n]++
				a := attempts[n]
				mu.Unlock()
				if n == 1 && a <= 2 {
					return errors.New("transient failure")
				}
			}
			r.add(m.Key, n)
			return nil
		}))
	})
	s.waitReady(t, ready, b.PublishUpstream)
	for n := range 4 {
		if err := b.PublishUpstream(context.Background(), msg("fail", n)); err != nil {
			t.Fatal(err)
		}
		if err := b.PublishUpstream(context.Background(), msg("other", n)); err != nil {
			t.Fatal(err)
		}
	}
	got := s.waitFor(t, r, "redelivery", allInOrder(t, []string{"fail", "other"}, 4))
	mu.Lock()
	defer mu.Unlock()
	if attempts[1] < 3 {
		t.Errorf("message 1 was handled %d times, want at least 3 (two failures, then success)", attempts[1])
	}
	if n, _ := inOrder(got["fail"]); n != 4 {
		t.Errorf("key fail: got %v, want 0..3 in order", got["fail"])
	}
}

func (s suite) upstreamBuffered(t *testing.T) {
	b := s.newBus(t)
	for n := range 5 {
		if err := b.PublishUpstream(context.Background(), msg("early", n)); err != nil {
			t.Fatal(err)
		}
	}
	r := newRecorder()
	consume(t, func(ctx context.Context) error {
		return b.ConsumeUpstream(ctx, probed(make(chan struct{}, 1), func(ctx context.Context, m bus.Message) error {
			r.add(m.Key, num(t, m))
			return nil
		}))
	})
	s.waitFor(t, r, "buffered delivery", allInOrder(t, []string{"early"}, 5))
}

func (s suite) pushIsolation(t *testing.T) {
	b := s.newBus(t)
	gateways := []string{"gw-1", "gw-2", "gw-3"}
	recs := map[string]*recorder{}
	for _, gw := range gateways {
		r := newRecorder()
		recs[gw] = r
		ready := make(chan struct{}, 1)
		consume(t, func(ctx context.Context) error {
			return b.ConsumePush(ctx, gw, probed(ready, func(ctx context.Context, m bus.Message) error {
				if m.Header["gw"] != gw {
					t.Errorf("gateway %s got a push for %q", gw, m.Header["gw"])
				}
				r.add(m.Key, num(t, m))
				return nil
			}))
		})
		s.waitReady(t, ready, s.pushTo(b, gw))
	}
	const perGateway = 20
	for n := range perGateway {
		for _, gw := range gateways {
			m := msg("conv-"+gw, n)
			m.Header["gw"] = gw
			if err := b.PublishPush(context.Background(), gw, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, gw := range gateways {
		got := s.waitFor(t, recs[gw], "push to "+gw, allInOrder(t, []string{"conv-" + gw}, perGateway))
		if len(got) != 1 {
			t.Errorf("gateway %s got keys %v, want only conv-%s", gw, got, gw)
		}
	}
}

func (s suite) pushOrderAndRetry(t *testing.T) {
	b := s.newBus(t)
	r := newRecorder()
	var mu sync.Mutex
	failed := false
	ready := make(chan struct{}, 1)
	consume(t, func(ctx context.Context) error {
		return b.ConsumePush(ctx, "gw-order", probed(ready, func(ctx context.Context, m bus.Message) error {
			n := num(t, m)
			mu.Lock()
			fail := m.Key == "k-0" && n == 3 && !failed
			failed = failed || fail
			mu.Unlock()
			if fail {
				return errors.New("transient failure")
			}
			r.add(m.Key, n)
			return nil
		}))
	})
	s.waitReady(t, ready, s.pushTo(b, "gw-order"))
	keys := []string{"k-0", "k-1", "k-2", "k-3"}
	publishAll(t, len(keys), 20, func(i int) string { return keys[i] }, s.pushTo(b, "gw-order"))
	s.waitFor(t, r, "ordered push", allInOrder(t, keys, 20))
}

func (s suite) pushAtStart(t *testing.T) {
	b := s.newBus(t)
	r := newRecorder()
	consume(t, func(ctx context.Context) error {
		return b.ConsumePush(ctx, "gw-start", func(ctx context.Context, m bus.Message) error {
			r.add(m.Key, num(t, m))
			return nil
		})
	})
	// No readiness probe: a gateway registers sessions right after it starts
	// its consumer, and the pushes routed to it from then on must arrive.
	for n := range 3 {
		if err := b.PublishPush(context.Background(), "gw-start", msg("k", n)); err != nil {
			t.Fatal(err)
		}
	}
	s.waitFor(t, r, "push at start", allInOrder(t, []string{"k"}, 3))
}

func (s suite) cleanStop(t *testing.T) {
	b := s.newBus(t)
	first := newRecorder()
	ready := make(chan struct{}, 1)
	stop := consume(t, func(ctx context.Context) error {
		return b.ConsumeUpstream(ctx, probed(ready, func(ctx context.Context, m bus.Message) error {
			first.add(m.Key, num(t, m))
			return nil
		}))
	})
	s.waitReady(t, ready, b.PublishUpstream)
	if err := b.PublishUpstream(context.Background(), msg("stop", 0)); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, first, "first consumer", allInOrder(t, []string{"stop"}, 1))
	stop() // fails the test if ConsumeUpstream does not return

	for n := 1; n < 4; n++ {
		if err := b.PublishUpstream(context.Background(), msg("stop", n)); err != nil {
			t.Fatal(err)
		}
	}
	second := newRecorder()
	consume(t, func(ctx context.Context) error {
		return b.ConsumeUpstream(ctx, probed(make(chan struct{}, 1), func(ctx context.Context, m bus.Message) error {
			second.add(m.Key, num(t, m))
			return nil
		}))
	})
	got := s.waitFor(t, second, "successor consumer", func(got map[string][]int) bool {
		seq := got["stop"]
		return len(seq) > 0 && seq[len(seq)-1] == 3
	})
	if _, total := first.snapshot(); total != 1 {
		t.Errorf("the stopped consumer handled %d messages, want 1", total)
	}
	// At-least-once: the successor may see message 0 again, then 1, 2, 3 in order.
	if seq := got["stop"]; len(seq) < 3 || seq[len(seq)-3] != 1 || seq[len(seq)-2] != 2 {
		t.Errorf("successor got %v, want ... 1 2 3", seq)
	}
}
