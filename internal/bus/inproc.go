package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// InProcOptions configures NewInProc. Zero values take the defaults.
type InProcOptions struct {
	// Lanes is the number of ordered lanes per stream (default 16): messages
	// are spread over lanes by a hash of their key, each lane is handled by one
	// worker at a time in publish order, so different keys progress in parallel.
	Lanes int
	// RetryPause is how long a lane waits before handing a failed message to
	// the handler again (default 200ms).
	RetryPause time.Duration
	// MaxPending bounds the messages waiting in one stream (the upstream stream,
	// each gateway's push stream); a publish beyond it fails with
	// ErrUnavailable. Default 65536; negative means unbounded.
	MaxPending int
	// Linger is how long a batch consumer (ConsumeUpstreamBatch) waits for
	// more messages when a stream that was idle receives one, before taking
	// the batch: a little latency for fewer, larger batches at moderate
	// load. Zero or negative: no wait (a consumer that finds messages
	// waiting never waits).
	Linger time.Duration
	// BatchWorkers is how many batches a batch consumer handles at once
	// (default 2). A batch takes the messages waiting at the heads of all
	// lanes no other batch holds, up to the consumer's limit: at moderate
	// load most lanes hold one message, and a batch per lane would be a
	// batch of one.
	BatchWorkers int
	// Logger receives handler failures (default: discard).
	Logger *slog.Logger
}

// InProc is the in-process bus used by `imkube dev` and unit tests. It
// implements all four bus interfaces with the RocketMQ adapter's semantics:
// messages wait until consumed (publishing needs no consumer), same key = same
// lane = publish order, a handler error redelivers the message after
// RetryPause while later messages of its lane wait, and a message leaves its
// stream only once a handler returned nil (at-least-once across consumer
// restarts). One consumer per stream is active at a time; a second Consume of
// the same stream waits until the first one stops, then takes over.
type InProc struct {
	opts InProcOptions
	log  *slog.Logger

	base   context.Context // cancelled by Close
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	upstream *stream
	push     map[string]*stream
	running  sync.WaitGroup // Consume calls in progress
}

var (
	_ UpstreamPublisher = (*InProc)(nil)
	_ UpstreamConsumer  = (*InProc)(nil)
	_ PushPublisher     = (*InProc)(nil)
	_ PushConsumer      = (*InProc)(nil)

	_ BatchUpstreamConsumer = (*InProc)(nil)
)

// ErrClosed is returned by the publish methods of a closed bus (it wraps
// ErrUnavailable, so callers answer a retryable error).
var ErrClosed = fmt.Errorf("%w: closed", ErrUnavailable)

// NewInProc returns an in-process bus; Close stops it.
func NewInProc(opts InProcOptions) *InProc {
	if opts.Lanes <= 0 {
		opts.Lanes = 16
	}
	if opts.RetryPause <= 0 {
		opts.RetryPause = 200 * time.Millisecond
	}
	if opts.MaxPending == 0 {
		opts.MaxPending = 1 << 16
	}
	if opts.BatchWorkers <= 0 {
		opts.BatchWorkers = 2
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base, cancel := context.WithCancel(context.Background())
	b := &InProc{opts: opts, log: log, base: base, cancel: cancel, push: map[string]*stream{}}
	b.upstream = newStream(TopicUpstream, opts.Lanes, opts.MaxPending)
	return b
}

// Close stops all consumers, waits for them to return and makes publishing
// fail with ErrClosed. Messages not yet consumed are dropped.
func (b *InProc) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.running.Wait()
	return nil
}

// PublishUpstream queues m on the upstream stream.
func (b *InProc) PublishUpstream(ctx context.Context, m Message) error {
	s, err := b.stream("")
	if err != nil {
		return err
	}
	return s.publish(ctx, m)
}

// PublishPush queues m on the push stream of gatewayID.
func (b *InProc) PublishPush(ctx context.Context, gatewayID string, m Message) error {
	if gatewayID == "" {
		return errors.New("bus: push needs a gateway id")
	}
	s, err := b.stream(gatewayID)
	if err != nil {
		return err
	}
	return s.publish(ctx, m)
}

// ConsumeUpstream handles upstream messages until ctx ends or the bus is
// closed; it then returns nil.
func (b *InProc) ConsumeUpstream(ctx context.Context, h Handler) error {
	if h == nil {
		return errors.New("bus: nil handler")
	}
	return b.consume(ctx, "", 1, single(h))
}

// ConsumeUpstreamBatch is ConsumeUpstream handing h up to limit messages at
// once: those waiting at the heads of the lanes no other batch holds (in
// publish order per lane; a lane is held by one batch at a time, so a key's
// messages are never handled concurrently or out of order).
func (b *InProc) ConsumeUpstreamBatch(ctx context.Context, limit int, h BatchHandler) error {
	if h == nil {
		return errors.New("bus: nil handler")
	}
	return b.consume(ctx, "", max(limit, 1), h)
}

// single adapts a Handler to a BatchHandler of one message.
func single(h Handler) BatchHandler {
	return func(ctx context.Context, msgs []Message) (int, error) {
		for i, m := range msgs {
			if err := h(ctx, m); err != nil {
				return i, err
			}
		}
		return len(msgs), nil
	}
}

// ConsumePush handles the pushes of gatewayID until ctx ends or the bus is
// closed; it then returns nil.
func (b *InProc) ConsumePush(ctx context.Context, gatewayID string, h Handler) error {
	if gatewayID == "" {
		return errors.New("bus: push needs a gateway id")
	}
	if h == nil {
		return errors.New("bus: nil handler")
	}
	return b.consume(ctx, gatewayID, 1, single(h))
}

// stream returns the upstream stream ("") or the push stream of a gateway.
func (b *InProc) stream(gatewayID string) (*stream, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if gatewayID == "" {
		return b.upstream, nil
	}
	s := b.push[gatewayID]
	if s == nil {
		s = newStream("push/"+gatewayID, b.opts.Lanes, b.opts.MaxPending)
		b.push[gatewayID] = s
	}
	return s, nil
}

func (b *InProc) consume(ctx context.Context, gatewayID string, batch int, h BatchHandler) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.running.Add(1)
	b.mu.Unlock()
	defer b.running.Done()
	s, err := b.stream(gatewayID)
	if err != nil {
		return nil // closed meanwhile
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(b.base, cancel)
	defer stop()

	// One active consumer per stream: wait for the owner token.
	select {
	case s.owner <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	defer func() { <-s.owner }()

	// Workers take the heads of the lanes no other worker holds. One
	// message at a time (ConsumeUpstream, ConsumePush), a worker per lane:
	// every lane progresses on its own, as a goroutine per lane would.
	workers := b.opts.BatchWorkers
	if batch == 1 {
		workers = len(s.lanes)
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { b.work(ctx, s, batch, h) })
	}
	wg.Wait()
	return nil
}

// held is one lane's part of a batch: msgs[from:from+n].
type held struct {
	l       *lane
	from, n int
}

// work is one worker of a consumer: it takes the heads of the free
// lanes (up to limit messages), hands them to h in one call, and pops what h
// handled; a lane whose message failed pauses RetryPause (its later messages
// wait, the other lanes go on).
func (b *InProc) work(ctx context.Context, s *stream, limit int, h BatchHandler) {
	var wait *time.Timer
	defer func() {
		if wait != nil {
			wait.Stop()
		}
	}()
	sleep := func(d time.Duration, wake <-chan struct{}) bool {
		if wait == nil {
			wait = time.NewTimer(d)
		} else {
			wait.Reset(d)
		}
		select {
		case <-ctx.Done():
			return false
		case <-wake:
		case <-wait.C:
		}
		return true // (since Go 1.23 a Reset timer sends no stale value)
	}
	idle := false // nothing was waiting at the last look
	for {
		if ctx.Err() != nil {
			return
		}
		if idle && b.opts.Linger > 0 && limit > 1 {
			if !sleep(b.opts.Linger, nil) {
				return
			}
		}
		msgs, parts, retryIn := s.take(limit)
		if len(msgs) == 0 {
			idle = true
			if retryIn <= 0 {
				retryIn = time.Hour
			}
			if !sleep(retryIn, s.ready) {
				return
			}
			continue
		}
		idle = false
		done, err := h(ctx, msgs)
		if err == nil {
			done = len(msgs)
		}
		done = min(max(done, 0), len(msgs))
		var failed *lane
		for _, p := range parts {
			n := min(max(done-p.from, 0), p.n)
			p.l.pop(n)
			if err != nil && n < p.n && done >= p.from {
				failed = p.l
			}
		}
		if err != nil && ctx.Err() == nil && failed != nil {
			b.log.Warn("bus handler failed, retrying", "stream", s.name, "key", msgs[done].Key, "err", err, "pause", b.opts.RetryPause)
		}
		s.release(parts, failed, b.opts.RetryPause)
	}
}

// stream is one topic (upstream, or one gateway's push stream): lanes of
// pending messages and the token of its single active consumer.
type stream struct {
	name  string
	lanes []*lane
	owner chan struct{}
	ready chan struct{} // signalled when a message is appended or a lane released

	sched sync.Mutex // the workers' lane claims: lane.held, lane.pausedUntil, rr
	rr    int        // the lane the next batch starts at (round robin)

	mu         sync.Mutex
	pending    int
	maxPending int
	next       uint32 // round robin for messages without a key
}

func newStream(name string, lanes, maxPending int) *stream {
	s := &stream{name: name, owner: make(chan struct{}, 1), ready: make(chan struct{}, 1), maxPending: maxPending}
	for range lanes {
		s.lanes = append(s.lanes, &lane{s: s})
	}
	return s
}

func (s *stream) publish(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m = cloneMessage(m)
	s.mu.Lock()
	if s.maxPending > 0 && s.pending >= s.maxPending {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s has %d messages waiting", ErrUnavailable, s.name, s.maxPending)
	}
	var i uint32
	if m.Key == "" {
		i = s.next % uint32(len(s.lanes))
		s.next++
	} else {
		i = KeyHash(m.Key) % uint32(len(s.lanes))
	}
	s.pending++
	s.mu.Unlock()
	s.lanes[i].push(m)
	return nil
}

// cloneMessage copies the body and header so a publisher may reuse its
// buffers; a Value is handed over as it is (publishers do not change it).
func cloneMessage(m Message) Message {
	out := Message{Key: m.Key, Value: m.Value}
	if m.Body != nil || m.Value == nil {
		out.Body = append([]byte(nil), m.Body...)
	}
	if m.Header != nil {
		out.Header = make(map[string]string, len(m.Header))
		for k, v := range m.Header {
			out.Header[k] = v
		}
	}
	return out
}

// lane is an unbounded FIFO held by one worker at a time; its head stays in
// place until handled.
type lane struct {
	s    *stream
	mu   sync.Mutex
	q    []Message
	head int

	held        bool      // a worker holds the lane (stream.sched)
	pausedUntil time.Time // a failed message waits until then (stream.sched)
}

func (l *lane) push(m Message) {
	l.mu.Lock()
	l.q = append(l.q, m)
	l.mu.Unlock()
	select {
	case l.s.ready <- struct{}{}:
	default:
	}
}

// take claims the heads of the free lanes, round robin from where the last
// batch started, up to limit messages. With none to take it returns how long
// until a paused lane that holds messages may be taken again (0: none).
func (s *stream) take(limit int) (msgs []Message, parts []held, retryIn time.Duration) {
	s.sched.Lock()
	defer s.sched.Unlock()
	now := time.Now()
	n := len(s.lanes)
	start := s.rr
	for k := 0; k < n && len(msgs) < limit; k++ {
		l := s.lanes[(start+k)%n]
		if l.held {
			continue
		}
		if l.pausedUntil.After(now) {
			if l.waiting() {
				if d := l.pausedUntil.Sub(now); retryIn == 0 || d < retryIn {
					retryIn = d
				}
			}
			continue
		}
		got := l.peek(limit - len(msgs))
		if len(got) == 0 {
			continue
		}
		l.held = true
		parts = append(parts, held{l: l, from: len(msgs), n: len(got)})
		msgs = append(msgs, got...)
		s.rr = (start + k + 1) % n
	}
	return msgs, parts, retryIn
}

// release frees the lanes of a batch (failed, if any, pauses for pause) and
// wakes a waiting worker: a released lane may hold messages that arrived
// while it was held.
func (s *stream) release(parts []held, failed *lane, pause time.Duration) {
	s.sched.Lock()
	for _, p := range parts {
		p.l.held = false
	}
	if failed != nil {
		failed.pausedUntil = time.Now().Add(pause)
	}
	s.sched.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// waiting reports whether the lane holds messages.
func (l *lane) waiting() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head < len(l.q)
}

// peek returns up to n messages from the head (a copy of the slice).
func (l *lane) peek(n int) []Message {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.head == len(l.q) {
		return nil
	}
	return append([]Message(nil), l.q[l.head:min(l.head+n, len(l.q))]...)
}

// pop removes n messages from the head.
func (l *lane) pop(n int) {
	if n == 0 {
		return
	}
	l.mu.Lock()
	clear(l.q[l.head : l.head+n])
	l.head += n
	if l.head == len(l.q) {
		l.q, l.head = l.q[:0], 0
	} else if l.head > 1024 && l.head*2 > len(l.q) {
		l.q = append(l.q[:0:0], l.q[l.head:]...)
		l.head = 0
	}
	l.mu.Unlock()
	l.s.mu.Lock()
	l.s.pending -= n
	l.s.mu.Unlock()
}
