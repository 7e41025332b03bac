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

// PushPublisher is used by the message service: one push per gateway.
type PushPublisher interface {
	PublishPush(ctx context.Context, gatewayID string, m Message) error
}

// PushConsumer is used by a gateway to receive its own pushes. Consume blocks
// until ctx ends.
type PushConsumer interface {
	ConsumePush(ctx context.Context, gatewayID string, h Handler) error
}
