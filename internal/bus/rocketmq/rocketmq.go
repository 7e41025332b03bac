// Package rocketmq is the bus on Apache RocketMQ (Remoting protocol, 5.x
// brokers) through github.com/apache/rocketmq-client-go/v2.
//
// Upstream: topic IM_UPSTREAM with a fixed queue count. The producer picks the
// queue by a hash of the message key (the conversation id, sent as sharding
// key), so one conversation is one queue. The message service consumes with one
// orderly push consumer in the clustering group "imkube-message": each queue is
// locked by one replica and handled one message at a time; a handler error
// suspends the queue for RetryPause and redelivers (ConsumeRetryLater would
// block an orderly queue), up to MaxReconsumeTimes, after which the broker moves
// the message to %DLQ%imkube-message. The group starts from the first offset,
// so nothing published before the first message service ever ran is lost.
//
// Push streams, one per gateway: ONE shared topic IM_PUSH, the gateway id as
// the message tag, and per gateway a BROADCASTING consumer group
// "imkube-push-<gateway id>" subscribed to its own tag (the broker filters by
// tag hash in the consume queue, so a gateway only receives its pushes). A
// new push consumer starts PushReplay (10 s) before ConsumePush was called, so
// no push published after that call is missed while the consumer gets its
// queues; a gateway restarted under the same name may see up to PushReplay of
// old pushes again (clients drop duplicates by mid).
// Chosen over a topic per gateway because topics keep a fixed queue count and
// are created once (hack/deps.sh, the operator) with autoCreateTopicEnable off,
// gateways need no admin rights, and there is no route refresh (30 s) before
// a new gateway's first push. Broadcasting keeps the group's offsets in the
// gateway (nothing per gateway in the broker's consumer offsets), needs no
// queue locks (no rebalance wait) and a new gateway does not replay old
// pushes beyond PushReplay. The broker still records a subscription
// group and a %RETRY% topic per gateway group; Pruner removes those of gateways
// that are gone (docs/distributed.md). A push is the fast path: one that
// fails past MaxReconsumeTimes is dropped and the client pulls the gap.
//
// Message.Header travels as message properties prefixed with "h.", which is
// how trace context crosses the bus. Consumers are created once per Consume
// call: call each Consume once per process (the client leaks goroutines on
// repeated create/shutdown, apache/rocketmq-client-go#1147).
package rocketmq

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/imkube/imkube/internal/bus"
)

// TopicPush is the shared topic of all gateways' push streams.
const TopicPush = "IM_PUSH"

// DefaultStopTimeout is Config.StopTimeout's default.
const DefaultStopTimeout = 20 * time.Second

// Config configures New. Zero values take the defaults.
type Config struct {
	// NameServers are the name server addresses (host:port). Required.
	NameServers []string
	// UpstreamTopic (default bus.TopicUpstream) and PushTopic (default
	// TopicPush) must exist with a fixed queue count.
	UpstreamTopic, PushTopic string
	// UpstreamGroup is the message service's consumer group (default "imkube-message").
	UpstreamGroup string
	// PushGroupPrefix + gateway id is a gateway's consumer group (default "imkube-push-").
	PushGroupPrefix string
	// ProducerGroup (default "imkube-producer").
	ProducerGroup string
	// InstanceName tells apart the RocketMQ clients (client id = IP@name;
	// default: random). Two Bus values in one process, or two processes on
	// one host, need different names. A name that stays the same across
	// restarts of the same replica (the pod name) lets a restarted message
	// service take its queue locks back at once; with a new name it waits for
	// the broker's lock expiry (60 s) of the queues the dead one held.
	InstanceName string
	// RetryPause is how long a queue waits after a handler error (default 1s).
	RetryPause time.Duration
	// MaxReconsumeTimes bounds the redeliveries of one upstream message before
	// it goes to the dead-letter queue (default 3600: an hour of retries at
	// 1s, long enough to ride out a database outage).
	MaxReconsumeTimes int32
	// PushMaxReconsumeTimes bounds the redeliveries of a push (default 10).
	PushMaxReconsumeTimes int32
	// PushReplay is how far before its start a new push consumer begins
	// (default 10s).
	PushReplay time.Duration
	// SendTimeout bounds one publish (default 3s).
	SendTimeout time.Duration
	// StopTimeout bounds a consumer's graceful stop (default 20s): how long
	// the handler calls in progress when the consume context ends may run
	// on before their context is cancelled. The pod's grace period covers
	// it (operator: terminationGracePeriodSeconds).
	StopTimeout time.Duration
	// Logger receives consumer errors (default: discard).
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if len(c.NameServers) == 0 {
		return errors.New("rocketmq: Config.NameServers is empty")
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.UpstreamTopic, bus.TopicUpstream)
	def(&c.PushTopic, TopicPush)
	def(&c.UpstreamGroup, "imkube-message")
	def(&c.PushGroupPrefix, "imkube-push-")
	def(&c.ProducerGroup, "imkube-producer")
	def(&c.InstanceName, "imkube-"+strings.ToLower(rand.Text()[:10]))
	if c.RetryPause <= 0 {
		c.RetryPause = time.Second
	}
	if c.MaxReconsumeTimes <= 0 {
		c.MaxReconsumeTimes = 3600
	}
	if c.PushMaxReconsumeTimes <= 0 {
		c.PushMaxReconsumeTimes = 10
	}
	if c.PushReplay <= 0 {
		c.PushReplay = 10 * time.Second
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 3 * time.Second
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Bus implements the four bus interfaces on RocketMQ.
type Bus struct {
	cfg      Config
	log      *slog.Logger
	producer rocketmq.Producer

	base     context.Context // cancelled by Close
	cancel   context.CancelFunc
	mu       sync.Mutex
	closed   bool
	running  sync.WaitGroup
	upstream rocketmq.PushConsumer // the running upstream consumer, for Lag
}

// UpstreamLag returns how many upstream messages wait in the queues this
// process consumes (false when it consumes none). The consumer-lag HPA sums
// it across message service pods.
func (b *Bus) UpstreamLag() (int64, bool) {
	b.mu.Lock()
	c := b.upstream
	b.mu.Unlock()
	if c == nil {
		return 0, false
	}
	var n int64
	for topic, d := range c.GetOffsetDiffMap() {
		if topic == b.cfg.UpstreamTopic {
			n += d
		}
	}
	return n, true
}

var (
	_ bus.UpstreamPublisher = (*Bus)(nil)
	_ bus.UpstreamConsumer  = (*Bus)(nil)
	_ bus.PushPublisher     = (*Bus)(nil)
	_ bus.PushConsumer      = (*Bus)(nil)
)

// New starts a producer; consumers start in the Consume methods. Close stops all.
func New(cfg Config) (*Bus, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	p, err := rocketmq.NewProducer(
		producer.WithNameServer(cfg.NameServers),
		producer.WithGroupName(cfg.ProducerGroup),
		producer.WithInstanceName(cfg.InstanceName),
		producer.WithQueueSelector(keySelector{random: producer.NewRandomQueueSelector()}),
		producer.WithSendMsgTimeout(cfg.SendTimeout),
		producer.WithRetry(1),
	)
	if err != nil {
		return nil, fmt.Errorf("rocketmq producer: %w", err)
	}
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("start rocketmq producer: %w", err)
	}
	base, cancel := context.WithCancel(context.Background())
	return &Bus{cfg: cfg, log: cfg.Logger, producer: p, base: base, cancel: cancel}, nil
}

// Close stops the consumers, waits for them and shuts the producer down.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.running.Wait()
	if err := b.producer.Shutdown(); err != nil {
		return fmt.Errorf("shut down rocketmq producer: %w", err)
	}
	return nil
}

const (
	headerPrefix = "h."
	// RocketMQ refuses empty bodies: an empty one travels as one byte plus
	// this property.
	emptyProperty = "imkube.empty"
)

func (b *Bus) message(topic, tag string, m bus.Message) (*primitive.Message, error) {
	encoded, err := m.Encoded()
	if err != nil {
		return nil, fmt.Errorf("bus: encode record: %w", err)
	}
	body := encoded
	if len(body) == 0 {
		body = []byte{0}
	}
	msg := primitive.NewMessage(topic, body)
	if len(encoded) == 0 {
		msg.WithProperty(emptyProperty, "1")
	}
	if m.Key != "" {
		msg.WithShardingKey(m.Key)
		msg.WithKeys([]string{m.Key})
	}
	if tag != "" {
		msg.WithTag(tag)
	}
	for k, v := range m.Header {
		msg.WithProperty(headerPrefix+k, v)
	}
	return msg, nil
}

func (b *Bus) publish(ctx context.Context, msg *primitive.Message) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return fmt.Errorf("%w: closed", bus.ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.SendTimeout)
	defer cancel()
	res, err := b.producer.SendSync(ctx, msg)
	if err != nil {
		if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
			return ctx.Err()
		}
		return fmt.Errorf("%w: send to %s: %v", bus.ErrUnavailable, msg.Topic, err)
	}
	if res.Status != primitive.SendOK {
		return fmt.Errorf("%w: send to %s: status %d", bus.ErrUnavailable, msg.Topic, res.Status)
	}
	return nil
}

// PublishUpstream sends m to the upstream topic, on the queue of m.Key.
func (b *Bus) PublishUpstream(ctx context.Context, m bus.Message) error {
	msg, err := b.message(b.cfg.UpstreamTopic, "", m)
	if err != nil {
		return err
	}
	return b.publish(ctx, msg)
}

// PublishPush sends m to the push topic, tagged with gatewayID.
func (b *Bus) PublishPush(ctx context.Context, gatewayID string, m bus.Message) error {
	tag, err := gatewayTag(gatewayID)
	if err != nil {
		return err
	}
	if m.Key == "" {
		m.Key = gatewayID
	}
	msg, err := b.message(b.cfg.PushTopic, tag, m)
	if err != nil {
		return err
	}
	return b.publish(ctx, msg)
}

var validName = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,200}$`)

func gatewayTag(gatewayID string) (string, error) {
	if !validName.MatchString(gatewayID) {
		return "", fmt.Errorf("rocketmq: gateway id %q: want 1-200 of [a-zA-Z0-9_.-]", gatewayID)
	}
	return gatewayID, nil
}

// PushGroup is the consumer group of a gateway's push stream.
func (b *Bus) PushGroup(gatewayID string) string {
	// Group names allow [%|a-zA-Z0-9_-]: dots become underscores.
	return b.cfg.PushGroupPrefix + strings.ReplaceAll(gatewayID, ".", "_")
}

// ConsumeUpstream runs the message service's orderly consumer until ctx ends
// or the bus is closed, then returns nil.
func (b *Bus) ConsumeUpstream(ctx context.Context, h bus.Handler) error {
	if h == nil {
		return errors.New("rocketmq: nil handler")
	}
	return b.consumeUpstream(ctx, 1, single(h))
}

// ConsumeUpstreamBatch is ConsumeUpstream handing h up to limit messages of
// one queue at once (consumer.WithConsumeMessageBatchMaxSize: the messages
// the client holds for the queue; it does not wait for more).
//
// The orderly client redelivers a failed batch as a whole and counts a
// reconsume for every message in it. So that a failing message does not
// push its batch-mates toward the dead-letter queue, only the message that
// failed (msgs[done]) is counted; one that went past MaxReconsumeTimes has
// been handed to the dead-letter queue by the client, which still puts it
// back into the batch: it is skipped (see sentBack).
func (b *Bus) ConsumeUpstreamBatch(ctx context.Context, limit int, h bus.BatchHandler) error {
	if h == nil {
		return errors.New("rocketmq: nil handler")
	}
	return b.consumeUpstream(ctx, max(limit, 1), h)
}

func (b *Bus) consumeUpstream(ctx context.Context, batch int, h bus.BatchHandler) error {
	return b.consume(ctx, batch, h, b.cfg.UpstreamTopic, consumer.MessageSelector{},
		consumer.WithGroupName(b.cfg.UpstreamGroup),
		consumer.WithInstance(b.cfg.InstanceName+"-upstream"),
		consumer.WithConsumerModel(consumer.Clustering),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
		consumer.WithMaxReconsumeTimes(b.cfg.MaxReconsumeTimes),
	)
}

// ConsumePush runs the push consumer of gatewayID until ctx ends or the bus is
// closed, then returns nil. It delivers the pushes published since
// PushReplay before the call.
func (b *Bus) ConsumePush(ctx context.Context, gatewayID string, h bus.Handler) error {
	tag, err := gatewayTag(gatewayID)
	if err != nil {
		return err
	}
	if h == nil {
		return errors.New("rocketmq: nil handler")
	}
	return b.consume(ctx, 1, single(h), b.cfg.PushTopic, consumer.MessageSelector{Type: consumer.TAG, Expression: tag},
		consumer.WithGroupName(b.PushGroup(gatewayID)),
		consumer.WithInstance(b.cfg.InstanceName+"-push-"+gatewayID),
		consumer.WithConsumerModel(consumer.BroadCasting),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromTimestamp),
		// The client parses this as UTC.
		consumer.WithConsumeTimestamp(time.Now().UTC().Add(-b.cfg.PushReplay).Format("20060102150405")),
		consumer.WithMaxReconsumeTimes(b.cfg.PushMaxReconsumeTimes),
	)
}

// single adapts a Handler to a BatchHandler.
func single(h bus.Handler) bus.BatchHandler {
	return func(ctx context.Context, msgs []bus.Message) (int, error) {
		for i, m := range msgs {
			if err := h(ctx, m); err != nil {
				return i, err
			}
		}
		return len(msgs), nil
	}
}

func (b *Bus) consume(ctx context.Context, batch int, h bus.BatchHandler, topic string, sel consumer.MessageSelector, opts ...consumer.Option) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.running.Add(1)
	b.mu.Unlock()
	defer b.running.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(b.base, cancel)
	defer stop()

	opts = append([]consumer.Option{
		consumer.WithNameServer(b.cfg.NameServers),
		consumer.WithConsumerOrder(true),
		consumer.WithConsumeMessageBatchMaxSize(batch),
		consumer.WithSuspendCurrentQueueTimeMillis(b.cfg.RetryPause),
		consumer.WithAutoCommit(true),
	}, opts...)
	c, err := rocketmq.NewPushConsumer(opts...)
	if err != nil {
		return fmt.Errorf("%w: rocketmq consumer of %s: %v", bus.ErrUnavailable, topic, err)
	}
	// Handler calls run on a context the stop does not cancel: a record in
	// progress when ctx ends finishes (stored, acked, pushed) and its offset
	// is committed; only StopTimeout later is its context cancelled.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	var (
		gate     sync.Mutex // orders inflight.Add against the stop's Wait
		stopping bool
		inflight sync.WaitGroup
	)
	dead := &sentBack{counts: map[string]int32{}}
	err = c.Subscribe(topic, sel, func(cctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		gate.Lock()
		if stopping {
			gate.Unlock()
			// Not taken: the record stays uncommitted for the replica
			// that gets the queue next. A short pause frees the queue's
			// consume loop (pulls are suspended, nothing resubmits it).
			if oc, ok := primitive.GetOrderlyCtx(cctx); ok {
				oc.SuspendCurrentQueueTimeMillis = 10
			}
			return consumer.SuspendCurrentQueueAMoment, nil
		}
		inflight.Add(1)
		gate.Unlock()
		defer inflight.Done()
		// The orderly consumer sleeps for the suspend time of the context it
		// passes in, which defaults to -1 (no pause at all, whatever
		// WithSuspendCurrentQueueTimeMillis says): without this, a failing
		// message burns through MaxReconsumeTimes in milliseconds and is
		// moved to the dead-letter queue, breaking order.
		if oc, ok := primitive.GetOrderlyCtx(cctx); ok {
			oc.SuspendCurrentQueueTimeMillis = int(max(b.cfg.RetryPause.Milliseconds(), 10))
		}
		live, in := msgs, make([]bus.Message, 0, len(msgs))
		if batch > 1 {
			live = make([]*primitive.MessageExt, 0, len(msgs))
			for _, msg := range msgs {
				if dead.sentBack(msg) {
					b.log.Error("skipping a message handed to the dead-letter queue", "topic", topic, "key", msg.GetShardingKey(), "reconsumes", msg.ReconsumeTimes)
					continue
				}
				live = append(live, msg)
			}
		}
		for _, msg := range live {
			in = append(in, fromExt(msg))
		}
		if len(in) == 0 {
			return consumer.ConsumeSuccess, nil
		}
		done, err := h(hctx, in)
		if err == nil {
			return consumer.ConsumeSuccess, nil
		}
		done = min(max(done, 0), len(live)-1)
		failed := live[done]
		if hctx.Err() == nil {
			b.log.Warn("bus handler failed, retrying", "topic", topic, "key", failed.GetShardingKey(),
				"reconsumes", failed.ReconsumeTimes, "batch", len(live), "err", err, "pause", b.cfg.RetryPause)
		}
		if len(msgs) > 1 {
			// The client adds one to every message's count: only the
			// failed one keeps it (see ConsumeUpstreamBatch).
			for _, msg := range msgs {
				if msg != failed && msg.ReconsumeTimes <= b.cfg.MaxReconsumeTimes {
					msg.ReconsumeTimes--
				}
			}
			dead.note(failed, b.cfg.MaxReconsumeTimes)
		}
		return consumer.SuspendCurrentQueueAMoment, nil
	})
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", topic, err)
	}
	if err := c.Start(); err != nil {
		_ = c.Shutdown()
		return fmt.Errorf("%w: start rocketmq consumer of %s: %v", bus.ErrUnavailable, topic, err)
	}
	if topic == b.cfg.UpstreamTopic {
		b.mu.Lock()
		b.upstream = c
		b.mu.Unlock()
		defer func() {
			b.mu.Lock()
			b.upstream = nil
			b.mu.Unlock()
		}()
	}
	<-ctx.Done()
	b.stop(c, topic, func() {
		gate.Lock()
		stopping = true
		gate.Unlock()
	}, &inflight, hcancel)
	return nil
}

// stop is a consumer's graceful stop. rocketmq-client-go's Shutdown alone
// loses in-flight work to redelivery: it releases the queue locks and drops
// the process queues at once, without waiting for the consume goroutines,
// and an offset committed after the drop is never written (apache/rocketmq
// #2085 is the same gap in the Java client, fixed there by awaiting the
// consume executor). So, in order: stop pulling, refuse records not yet
// started, wait for the handler calls in progress (bounded by StopTimeout,
// then cancelled), write the offsets they committed to the broker, and only
// then shut the consumer down (which unlocks the queues for the replica that
// takes them over and writes the offsets once more).
func (b *Bus) stop(c rocketmq.PushConsumer, topic string, refuse func(), inflight *sync.WaitGroup, cancel context.CancelFunc) {
	start := time.Now()
	if s, ok := c.(interface{ Suspend() }); ok {
		s.Suspend() // no more pulls, no rebalance
	}
	refuse()
	done := make(chan struct{})
	go func() { inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(b.cfg.StopTimeout):
		b.log.Warn("rocketmq consumer stop: handler calls still running, cancelling them", "topic", topic, "stopTimeout", b.cfg.StopTimeout)
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			b.log.Warn("rocketmq consumer stop: handler calls ignore cancellation, shutting down anyway", "topic", topic)
		}
	}
	// The client commits a record's offset right after the handler call
	// returns, on the consume goroutine: give it that moment.
	time.Sleep(50 * time.Millisecond)
	if p, ok := c.(interface{ PersistConsumerOffset() error }); ok {
		if err := p.PersistConsumerOffset(); err != nil {
			b.log.Warn("rocketmq consumer stop: persist offsets", "topic", topic, "err", err)
		}
	}
	if err := c.Shutdown(); err != nil {
		b.log.Warn("rocketmq consumer shutdown", "topic", topic, "err", err)
	}
	b.log.Info("rocketmq consumer stopped", "topic", topic, "took", time.Since(start).Round(time.Millisecond))
}

// sentBack remembers the messages of batches that the orderly client is
// about to hand to the dead-letter queue: past MaxReconsumeTimes, it sends
// such a message back (keeping its count) but still puts it back into the
// batch with its mates. When it comes again with the same count, it went to
// the dead-letter queue and is skipped; with one more, the send-back failed
// and it is handled again (the client tries again on its next failure).
type sentBack struct {
	mu     sync.Mutex
	counts map[string]int32
}

func (d *sentBack) note(msg *primitive.MessageExt, limit int32) {
	if msg.ReconsumeTimes <= limit {
		return
	}
	d.mu.Lock()
	d.counts[msg.MsgId] = msg.ReconsumeTimes
	d.mu.Unlock()
}

func (d *sentBack) sentBack(msg *primitive.MessageExt) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.counts[msg.MsgId]
	if ok {
		delete(d.counts, msg.MsgId)
	}
	return ok && n == msg.ReconsumeTimes
}

func fromExt(msg *primitive.MessageExt) bus.Message {
	m := bus.Message{Key: msg.GetShardingKey(), Body: msg.Body}
	if msg.GetProperty(emptyProperty) != "" {
		m.Body = nil
	}
	for k, v := range msg.GetProperties() {
		if name, ok := strings.CutPrefix(k, headerPrefix); ok {
			if m.Header == nil {
				m.Header = map[string]string{}
			}
			m.Header[name] = v
		}
	}
	return m
}

// keySelector puts a message with a sharding key on queue
// bus.KeyHash(key) % queues (the order of a key's messages is that of its
// queue), one without a key on a random queue. The client's hash selector
// (FNV-1a % queues) put the conversations of a benchmark's 20 pairs on 2 of
// 8 queues: only two message-service lanes worked.
type keySelector struct{ random producer.QueueSelector }

func (s keySelector) Select(m *primitive.Message, mqs []*primitive.MessageQueue, lastBroker string) *primitive.MessageQueue {
	key := m.GetShardingKey()
	if key == "" || len(mqs) == 0 {
		return s.random.Select(m, mqs, lastBroker)
	}
	return mqs[bus.KeyHash(key)%uint32(len(mqs))]
}
