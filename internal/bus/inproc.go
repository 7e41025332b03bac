package bus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"
)

// InProcOptions configures NewInProc. Zero values take the defaults.
type InProcOptions struct {
	// Lanes is the number of ordered lanes per stream (default 16): messages
	// are spread over lanes by a hash of their key, each lane is handled by one
	// goroutine in publish order, so different keys progress in parallel.
	Lanes int
	// RetryPause is how long a lane waits before handing a failed message to
	// the handler again (default 200ms).
	RetryPause time.Duration
	// MaxPending bounds the messages waiting in one stream (the upstream stream,
	// each gateway's push stream); a publish beyond it fails with
	// ErrUnavailable. Default 65536; negative means unbounded.
	MaxPending int
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
	return b.consume(ctx, "", h)
}

// ConsumePush handles the pushes of gatewayID until ctx ends or the bus is
// closed; it then returns nil.
func (b *InProc) ConsumePush(ctx context.Context, gatewayID string, h Handler) error {
	if gatewayID == "" {
		return errors.New("bus: push needs a gateway id")
	}
	return b.consume(ctx, gatewayID, h)
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

func (b *InProc) consume(ctx context.Context, gatewayID string, h Handler) error {
	if h == nil {
		return errors.New("bus: nil handler")
	}
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

	var wg sync.WaitGroup
	for _, l := range s.lanes {
		wg.Go(func() { b.runLane(ctx, s.name, l, h) })
	}
	wg.Wait()
	return nil
}

func (b *InProc) runLane(ctx context.Context, name string, l *lane, h Handler) {
	var retry *time.Timer
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		m, ok := l.peek()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-l.ready:
				continue
			}
		}
		if ctx.Err() != nil {
			return
		}
		err := h(ctx, m)
		if err == nil {
			l.pop()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("bus handler failed, retrying", "stream", name, "key", m.Key, "err", err, "pause", b.opts.RetryPause)
		if retry == nil {
			retry = time.NewTimer(b.opts.RetryPause)
		} else {
			retry.Reset(b.opts.RetryPause)
		}
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
		}
	}
}

// stream is one topic (upstream, or one gateway's push stream): lanes of
// pending messages and the token of its single active consumer.
type stream struct {
	name  string
	lanes []*lane
	owner chan struct{}

	mu         sync.Mutex
	pending    int
	maxPending int
	next       uint32 // round robin for messages without a key
}

func newStream(name string, lanes, maxPending int) *stream {
	s := &stream{name: name, owner: make(chan struct{}, 1), maxPending: maxPending}
	for range lanes {
		s.lanes = append(s.lanes, &lane{s: s, ready: make(chan struct{}, 1)})
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
		h := fnv.New32a()
		h.Write([]byte(m.Key))
		i = h.Sum32() % uint32(len(s.lanes))
	}
	s.pending++
	s.mu.Unlock()
	s.lanes[i].push(m)
	return nil
}

// cloneMessage copies the body and header so a publisher may reuse its buffers.
func cloneMessage(m Message) Message {
	out := Message{Key: m.Key, Body: append([]byte(nil), m.Body...)}
	if m.Header != nil {
		out.Header = make(map[string]string, len(m.Header))
		for k, v := range m.Header {
			out.Header[k] = v
		}
	}
	return out
}

// lane is an unbounded FIFO handled by one goroutine; its head stays in place
// until handled.
type lane struct {
	s     *stream
	mu    sync.Mutex
	q     []Message
	head  int
	ready chan struct{} // signalled when a message is appended
}

func (l *lane) push(m Message) {
	l.mu.Lock()
	l.q = append(l.q, m)
	l.mu.Unlock()
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

func (l *lane) peek() (Message, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.head == len(l.q) {
		return Message{}, false
	}
	return l.q[l.head], true
}

func (l *lane) pop() {
	l.mu.Lock()
	l.q[l.head] = Message{}
	l.head++
	if l.head == len(l.q) {
		l.q, l.head = l.q[:0], 0
	} else if l.head > 1024 && l.head*2 > len(l.q) {
		l.q = append(l.q[:0:0], l.q[l.head:]...)
		l.head = 0
	}
	l.mu.Unlock()
	l.s.mu.Lock()
	l.s.pending--
	l.s.mu.Unlock()
}
