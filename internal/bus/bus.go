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
	"errors"
)

// TopicUpstream is the topic of client sends, ordered by conversation.
const TopicUpstream = "IM_UPSTREAM"

// ErrUnavailable wraps failures to reach the bus; callers answer retryable errors.
var ErrUnavailable = errors.New("bus unavailable")

// Message is one bus record. Key orders upstream messages (same key, same
// order); Header carries trace context and other metadata.
type Message struct {
	Key    string
	Body   []byte
	Header map[string]string
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
