// Package bus carries messages between services: the upstream stream from the
// gateways to the message service (ordered per key = conversation id), and one
// push stream per gateway from the message service back to that gateway.
//
// Adapters: in-process (imkube dev, unit tests) in this package, RocketMQ in
// bus/rocketmq. Both are at-least-once: a handler that returns an error gets the
// same message again later, and consumers deduplicate.
package bus

import (
	"context"
	"encoding/json"
	"errors"
)

// TopicUpstream is the topic of client sends, ordered by conversation.
const TopicUpstream = "IM_UPSTREAM"

// ErrUnavailable wraps failures to reach the bus; callers answer retryable errors.
var ErrUnavailable = errors.New("bus unavailable")

// Message is one bus record. Key orders upstream messages (same key, same
// order); Header carries trace context and other metadata.
type Message struct {
	Key  string
	Body []byte
	// Value is the record not yet encoded (a pointer to the struct Body
	// would hold as JSON), set by a publisher instead of Body. The
	// in-process bus hands it to the consumer as it is, with no encoding
	// (consumers check it before decoding Body and must not change it: a
	// record handed over again is the same value); a bus that crosses
	// processes sends Value as JSON (Encoded). A publisher must not change
	// Value after publishing it.
	Value  any
	Header map[string]string
}

// Decode returns the record of m as a T: a copy of its Value when it was
// published in this process as a *T (the consumer may change the copy; a
// record handed over again is still the one published), else its Body
// decoded from JSON.
func Decode[T any](m Message) (*T, error) {
	var out T
	if v, ok := m.Value.(*T); ok {
		out = *v
	} else if err := json.Unmarshal(m.Body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Encoded returns the bytes of m: Body, or Value as JSON when Body is empty.
func (m Message) Encoded() ([]byte, error) {
	if m.Body != nil || m.Value == nil {
		return m.Body, nil
	}
	return json.Marshal(m.Value)
}

// Handler processes one message. Returning an error means "not processed":
// the message is delivered again after a pause, and later messages with the
// same key wait behind it.
type Handler func(ctx context.Context, m Message) error

// UpstreamPublisher is used by gateways.
type UpstreamPublisher interface {
	PublishUpstream(ctx context.Context, m Message) error
}

// UpstreamConsumer is used by the message service. Consume blocks until ctx
// ends; messages with the same Key are handled one at a time in publish order.
type UpstreamConsumer interface {
	ConsumeUpstream(ctx context.Context, h Handler) error
}

// BatchHandler processes several messages at once, in publish order per key.
// It returns how many leading messages were processed: with a non-nil error,
// msgs[done] failed and it and every message after it are delivered again
// (the ones before it may be too, so handling stays idempotent).
type BatchHandler func(ctx context.Context, msgs []Message) (done int, err error)

// BatchUpstreamConsumer is implemented by upstream consumers that can hand
// the message service up to limit messages of an ordered lane at once (the
// messages waiting at its head; it never waits for more).
type BatchUpstreamConsumer interface {
	ConsumeUpstreamBatch(ctx context.Context, limit int, h BatchHandler) error
}

// PushPublisher is used by the message service: one push per gateway.
type PushPublisher interface {
	PublishPush(ctx context.Context, gatewayID string, m Message) error
}

// PushConsumer is used by a gateway to receive its own pushes. Consume blocks
// until ctx ends.
type PushConsumer interface {
	ConsumePush(ctx context.Context, gatewayID string, h Handler) error
}

// KeyHash spreads keys over queues and lanes: KeyHash(key) % n is the lane
// (queue) of key among n. It is FNV-1a followed by the MurmurHash3
// finaliser: FNV-1a alone leaves its low bits badly mixed, so keys that
// differ in a few digits (u:710000000:710000020, u:710000001:710000021, ...)
// land in a few of 8 queues (20 such conversations: 2 queues), which
// serialises the conversations that share a queue.
func KeyHash(key string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}
